// Package metrics holds the journal service's own Prometheus collectors,
// beyond the request metrics of httpapi (docs/design.md, "Lifecycle and
// operations"). The components report what happens through hooks, so that
// they carry no Prometheus dependency; the methods of [Service] are those
// hooks, and [RegisterOutbox] and [RegisterRedisLimiter] add collectors read
// at scrape time. Nothing is global: every collector goes into the registry
// passed in, the one /metrics serves ([NewRegistry]).
package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/journalsvc/journal/internal/metrics/childcache"
	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/httplimit"
	"github.com/journalsvc/journal/ratelimit/redislimit"
)

// NewRegistry returns a registry that holds the Go runtime's and the
// process's collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister( // cannot fail: the registry is new and the two differ
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Service holds the collectors that the components' hooks feed. Its methods
// are safe for concurrent use.
type Service struct {
	decisions     *prometheus.CounterVec // policy, result, mode
	cacheResults  *prometheus.CounterVec // tier, result
	invalidations prometheus.Counter     // near-cache keys invalidated by Redis pushes
	flushes       prometheus.Counter     // whole near caches dropped
	applied       prometheus.Counter     // outbox changes applied to the cache
	cacheTrusted  prometheus.Gauge
	purged        prometheus.Counter // rows deleted by the purge
	// invalidationLag is the time from a write on one instance until another
	// instance's near cache learns of it (rediscache.LagProbe).
	invalidationLag prometheus.Histogram
	// The children of decisions and cacheResults by their label values:
	// every request counts two decisions and two cache reads.
	decisionCounters childcache.Cache[[3]string, prometheus.Counter]
	cacheCounters    childcache.Cache[[2]string, prometheus.Counter]
}

// New registers the collectors of a Service in reg. It fails if reg already
// holds collectors of the same names.
func New(reg prometheus.Registerer) (*Service, error) {
	m := &Service{
		decisions: counterVec("journal_ratelimit_decisions_total",
			"Rate-limit results by policy, result (allowed, denied, unavailable) and mode (enforced, shadow, degraded).",
			"policy", "result", "mode"),
		cacheResults: counterVec("journal_cache_results_total",
			"Cache lookups by tier (memory, near, redis) and result (hit, negative, miss, error).",
			"tier", "result"),
		invalidations: counter("journal_cache_near_invalidations_total", "Near-cache keys invalidated by Redis (server-assisted client-side caching)."),
		flushes:       counter("journal_cache_near_flushes_total", "Whole near caches dropped (connection lost or FLUSHALL)."),
		applied:       counter("journal_cache_outbox_applied_total", "Outbox changes applied to the cache (after writes and by the replayer)."),
		purged:        counter("journal_purged_rows_total", "Expired or revoked tokens and expired idempotency records deleted by the background purge."),
		invalidationLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "journal_cache_invalidation_lag_seconds",
			Help:    "Time from a write on one instance until an instance's near cache is invalidated (a canary written every 2s by every instance; across hosts it includes their clock offset).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		cacheTrusted: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "journal_cache_trusted",
			Help: "1 while the entry cache is trusted; 0 while reads go to the database (Redis failing or outbox not yet replayed).",
		}),
	}
	for _, c := range []prometheus.Collector{m.decisions, m.cacheResults, m.invalidations, m.flushes, m.applied, m.cacheTrusted, m.invalidationLag, m.purged} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// counter and counterVec spell out the options of the Service's counters,
// which are only a name, a help text and, for a vector, its label names.
func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

// OnDecision counts each policy's result of a rate-limit decision, or one
// "unavailable" result without a policy when the limiter could not decide
// (httplimit.Options.OnDecision).
func (m *Service) OnDecision(_ *http.Request, _ httplimit.Outcome, items []ratelimit.Item, d *ratelimit.Decision, err error) {
	if err != nil {
		m.decisions.WithLabelValues("", "unavailable", "enforced").Inc()
		return
	}
	for i, r := range d.Results {
		result, mode := "allowed", "enforced"
		if !r.Allowed {
			result = "denied"
		}
		switch {
		case items[i].Policy.Shadow:
			mode = "shadow"
		case r.Degraded:
			mode = "degraded"
		}
		m.decisionCounters.Get([3]string{items[i].Policy.Name, result, mode}, m.decisionCounter).Inc()
	}
}

func (m *Service) decisionCounter(l [3]string) prometheus.Counter {
	return m.decisions.WithLabelValues(l[0], l[1], l[2])
}

// OnCacheResult counts a cache lookup by tier and result
// (cache.Options.OnResult).
func (m *Service) OnCacheResult(tier, result string) {
	m.cacheCounters.Get([2]string{tier, result}, m.cacheCounter).Inc()
}

func (m *Service) cacheCounter(l [2]string) prometheus.Counter {
	return m.cacheResults.WithLabelValues(l[0], l[1])
}

// OnInvalidations counts the near-cache keys Redis invalidated; 0 keys means
// the whole near cache was dropped (rediscache.ClientConfig.OnInvalidations).
func (m *Service) OnInvalidations(keys int) {
	if keys == 0 {
		m.flushes.Inc()
		return
	}
	m.invalidations.Add(float64(keys))
}

// OnTrust records whether the entry cache is trusted
// (entrycache.Options.OnTrust).
func (m *Service) OnTrust(trusted bool) {
	if trusted {
		m.cacheTrusted.Set(1)
	} else {
		m.cacheTrusted.Set(0)
	}
}

// OnOutboxApplied counts n outbox changes applied to the cache
// (entrycache.Options.OnInvalidate).
func (m *Service) OnOutboxApplied(n int) { m.applied.Add(float64(n)) }

// OnPurge counts n rows deleted by the background purge
// (purge.Options.OnPurge).
func (m *Service) OnPurge(n int) { m.purged.Add(float64(n)) }

// OnInvalidationLag observes the time a write took to invalidate a near
// cache (redisconn.Options.OnLag).
func (m *Service) OnInvalidationLag(d time.Duration) { m.invalidationLag.Observe(d.Seconds()) }

// outboxReadTimeout bounds the query of the outbox gauge, so that a scrape
// does not hang on a database that does not answer.
const outboxReadTimeout = time.Second

// RegisterOutbox registers the gauge of committed writes whose cache
// invalidation is not applied yet, read from pending at each scrape; it is
// -1 while pending fails.
func RegisterOutbox(reg prometheus.Registerer, pending func(context.Context) (int64, error)) error {
	return reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "journal_outbox_pending",
		Help: "Committed writes whose cache invalidation has not been applied yet.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), outboxReadTimeout)
		defer cancel()
		n, err := pending(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	}))
}

// RegisterRedisLimiter registers the collector of the Redis rate limiter's
// statistics, read from stats at each scrape: its Redis calls and errors,
// deny-cache hits, breaker and live instances. While stats reports false
// (not connected yet) the breaker counts as open and the instance as alone.
func RegisterRedisLimiter(reg prometheus.Registerer, stats func() (redislimit.Stats, bool)) error {
	return reg.Register(limiterCollector{stats: stats})
}

// limiterCollector exports the Redis limiter's Stats when scraped.
type limiterCollector struct {
	stats func() (redislimit.Stats, bool)
}

var (
	limiterCallsDesc = prometheus.NewDesc("journal_redis_call_duration_seconds",
		"Duration of calls to Redis by component.", nil, prometheus.Labels{"component": "ratelimit"})
	limiterErrorsDesc = prometheus.NewDesc("journal_redis_errors_total",
		"Failed calls to Redis (timeouts included) by component.", nil, prometheus.Labels{"component": "ratelimit"})
	limiterDenyHitsDesc = prometheus.NewDesc("journal_ratelimit_deny_cache_hits_total",
		"Rate-limit decisions answered by the local deny cache, without a Redis call.", nil, nil)
	limiterBreakerDesc = prometheus.NewDesc("journal_ratelimit_breaker_open",
		"1 while the rate limiter's Redis circuit breaker is open.", nil, nil)
	limiterLiveDesc = prometheus.NewDesc("journal_live_instances",
		"Live instances seen in Redis heartbeats (the local fallback's divisor).", nil, nil)
)

func (limiterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{limiterCallsDesc, limiterErrorsDesc, limiterDenyHitsDesc, limiterBreakerDesc, limiterLiveDesc} {
		ch <- d
	}
}

func (c limiterCollector) Collect(ch chan<- prometheus.Metric) {
	s, ok := c.stats()
	if !ok { // not connected yet: the breaker counts as open
		s.BreakerOpen, s.LiveInstances = true, 1
	}
	buckets := make(map[float64]uint64, len(redislimit.LatencyBounds))
	var cum uint64
	for i, b := range redislimit.LatencyBounds {
		cum += s.CallLatency[i]
		buckets[b.Seconds()] = cum
	}
	ch <- prometheus.MustNewConstHistogram(limiterCallsDesc, s.RedisCalls, s.CallLatencySum.Seconds(), buckets)
	ch <- prometheus.MustNewConstMetric(limiterErrorsDesc, prometheus.CounterValue, float64(s.RedisErrors))
	ch <- prometheus.MustNewConstMetric(limiterDenyHitsDesc, prometheus.CounterValue, float64(s.DenyCacheHits))
	open := 0.0
	if s.BreakerOpen {
		open = 1
	}
	ch <- prometheus.MustNewConstMetric(limiterBreakerDesc, prometheus.GaugeValue, open)
	ch <- prometheus.MustNewConstMetric(limiterLiveDesc, prometheus.GaugeValue, float64(s.LiveInstances))
}
