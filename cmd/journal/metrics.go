package main

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/httplimit"
	"github.com/journalsvc/journal/ratelimit/redislimit"
)

// metrics are the service's own collectors beyond httpapi's request metrics
// (docs/design.md, "Lifecycle and operations"), registered in the registry /metrics serves.
type metrics struct {
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
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "journal_ratelimit_decisions_total",
			Help: "Rate-limit results by policy, result (allowed, denied, unavailable) and mode (enforced, shadow, degraded).",
		}, []string{"policy", "result", "mode"}),
		cacheResults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "journal_cache_results_total",
			Help: "Cache lookups by tier (memory, near, redis) and result (hit, negative, miss, error).",
		}, []string{"tier", "result"}),
		invalidations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "journal_cache_near_invalidations_total",
			Help: "Near-cache keys invalidated by Redis (server-assisted client-side caching).",
		}),
		flushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "journal_cache_near_flushes_total",
			Help: "Whole near caches dropped (connection lost or FLUSHALL).",
		}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "journal_cache_outbox_applied_total",
			Help: "Outbox changes applied to the cache (after writes and by the replayer).",
		}),
		invalidationLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "journal_cache_invalidation_lag_seconds",
			Help:    "Time from a write on one instance until an instance's near cache is invalidated (a canary written every 2s by every instance; across hosts it includes their clock offset).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		purged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "journal_purged_rows_total",
			Help: "Expired or revoked tokens and expired idempotency records deleted by the background purge.",
		}),
		cacheTrusted: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "journal_cache_trusted",
			Help: "1 while the entry cache is trusted; 0 while reads go to the database (Redis failing or outbox not yet replayed).",
		}),
	}
	reg.MustRegister(m.decisions, m.cacheResults, m.invalidations, m.flushes, m.applied, m.cacheTrusted, m.invalidationLag, m.purged)
	return m
}

// onDecision counts each policy's result of a rate-limit decision.
func (m *metrics) onDecision(_ *http.Request, o httplimit.Outcome, items []ratelimit.Item, d *ratelimit.Decision, err error) {
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
		m.decisions.WithLabelValues(items[i].Policy.Name, result, mode).Inc()
	}
}

func (m *metrics) onCacheResult(tier, result string) {
	m.cacheResults.WithLabelValues(tier, result).Inc()
}

func (m *metrics) onInvalidations(keys int) {
	if keys == 0 {
		m.flushes.Inc()
		return
	}
	m.invalidations.Add(float64(keys))
}

func (m *metrics) onTrust(trusted bool) {
	if trusted {
		m.cacheTrusted.Set(1)
	} else {
		m.cacheTrusted.Set(0)
	}
}

// gaugeFuncs registers gauges read at scrape time.
func gaugeFuncs(reg prometheus.Registerer, pending func(context.Context) (int64, error)) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "journal_outbox_pending",
		Help: "Committed writes whose cache invalidation has not been applied yet.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n, err := pending(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	}))
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
