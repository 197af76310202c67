package metrics

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/httplimit"
	"github.com/journalsvc/journal/ratelimit/redislimit"
)

// value returns what reg exposes for the sample of the family name whose
// labels are exactly labels ("name=value", in the order of the family's
// label names): a counter's or gauge's value, a histogram's sample count.
// It fails the test when there is no such sample.
func value(tb testing.TB, reg prometheus.Gatherer, name string, labels ...string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var got []string
			for _, l := range m.GetLabel() {
				got = append(got, l.GetName()+"="+l.GetValue())
			}
			if strings.Join(got, ",") != strings.Join(labels, ",") {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	tb.Fatalf("no sample %s{%s}", name, strings.Join(labels, ","))
	return 0
}

func TestNewRegistersOnce(t *testing.T) {
	reg := NewRegistry()
	if _, err := New(reg); err != nil {
		t.Fatalf("New: %v", err)
	}
	if _, err := New(reg); err == nil {
		t.Error("New on a registry that holds its collectors: no error")
	}
}

// TestHooks checks that each hook moves the metric it feeds.
func TestHooks(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	items := []ratelimit.Item{{Policy: ratelimit.Policy{Name: "ip"}}, {Policy: ratelimit.Policy{Name: "ip-hour", Shadow: true}}}
	m.OnDecision(nil, httplimit.OutcomeAllowed, items, &ratelimit.Decision{Results: []ratelimit.Result{{Allowed: true}, {Allowed: false}}}, nil)
	m.OnDecision(nil, httplimit.OutcomeAllowed, items, &ratelimit.Decision{Results: []ratelimit.Result{{Allowed: false, Degraded: true}, {Allowed: true}}}, nil)
	m.OnDecision(nil, httplimit.OutcomeAllowed, items, &ratelimit.Decision{}, ratelimit.ErrUnavailable)
	m.OnCacheResult("near", "hit")
	m.OnCacheResult("near", "hit")
	m.OnInvalidations(3)
	m.OnInvalidations(0)
	m.OnTrust(true)
	m.OnOutboxApplied(4)
	m.OnPurge(5)
	m.OnInvalidationLag(time.Millisecond)
	const decisions = "journal_ratelimit_decisions_total"
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{decisions, []string{"mode=enforced", "policy=ip", "result=allowed"}, 1},
		{decisions, []string{"mode=shadow", "policy=ip-hour", "result=denied"}, 1},
		{decisions, []string{"mode=degraded", "policy=ip", "result=denied"}, 1},
		{decisions, []string{"mode=shadow", "policy=ip-hour", "result=allowed"}, 1},
		{decisions, []string{"mode=enforced", "policy=", "result=unavailable"}, 1},
		{"journal_cache_results_total", []string{"result=hit", "tier=near"}, 2},
		{"journal_cache_near_invalidations_total", nil, 3},
		{"journal_cache_near_flushes_total", nil, 1},
		{"journal_cache_trusted", nil, 1},
		{"journal_cache_outbox_applied_total", nil, 4},
		{"journal_purged_rows_total", nil, 5},
		{"journal_cache_invalidation_lag_seconds", nil, 1},
	} {
		if got := value(t, reg, tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s{%s} = %v, want %v", tt.name, strings.Join(tt.labels, ","), got, tt.want)
		}
	}
	m.OnTrust(false)
	if got := value(t, reg, "journal_cache_trusted"); got != 0 {
		t.Errorf("journal_cache_trusted after OnTrust(false) = %v, want 0", got)
	}
}

func TestRegisterOutbox(t *testing.T) {
	reg := prometheus.NewRegistry()
	var pending int64 = 7
	var failing bool
	err := RegisterOutbox(reg, func(ctx context.Context) (int64, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("pending called without a deadline")
		}
		if failing {
			return 0, errors.New("database down")
		}
		return pending, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := value(t, reg, "journal_outbox_pending"); got != 7 {
		t.Errorf("journal_outbox_pending = %v, want 7", got)
	}
	failing = true
	if got := value(t, reg, "journal_outbox_pending"); got != -1 {
		t.Errorf("journal_outbox_pending while pending fails = %v, want -1", got)
	}
}

func TestRegisterRedisLimiter(t *testing.T) {
	reg := prometheus.NewRegistry()
	var stats redislimit.Stats
	connected := false
	if err := RegisterRedisLimiter(reg, func() (redislimit.Stats, bool) { return stats, connected }); err != nil {
		t.Fatal(err)
	}
	// Not connected yet: the breaker counts as open, the instance as alone.
	if got := value(t, reg, "journal_ratelimit_breaker_open"); got != 1 {
		t.Errorf("journal_ratelimit_breaker_open before connecting = %v, want 1", got)
	}
	if got := value(t, reg, "journal_live_instances"); got != 1 {
		t.Errorf("journal_live_instances before connecting = %v, want 1", got)
	}
	connected = true
	stats = redislimit.Stats{RedisCalls: 9, RedisErrors: 2, DenyCacheHits: 5, LiveInstances: 3}
	stats.CallLatency[0] = 9
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"journal_redis_call_duration_seconds", []string{"component=ratelimit"}, 9},
		{"journal_redis_errors_total", []string{"component=ratelimit"}, 2},
		{"journal_ratelimit_deny_cache_hits_total", nil, 5},
		{"journal_ratelimit_breaker_open", nil, 0},
		{"journal_live_instances", nil, 3},
	} {
		if got := value(t, reg, tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// BenchmarkRequestHooks counts what one authenticated request of the service
// reports: the decisions of its ip and user stages and its two cache reads.
func BenchmarkRequestHooks(b *testing.B) {
	m, err := New(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	ip := []ratelimit.Item{{Policy: ratelimit.Policy{Name: "ip"}}}
	user := []ratelimit.Item{{Policy: ratelimit.Policy{Name: "user"}}}
	d := &ratelimit.Decision{Allowed: true, Results: []ratelimit.Result{{Allowed: true}}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.OnDecision(nil, httplimit.OutcomeAllowed, ip, d, nil)
			m.OnCacheResult("near", "hit")
			m.OnDecision(nil, httplimit.OutcomeAllowed, user, d, nil)
			m.OnCacheResult("near", "hit")
		}
	})
}
