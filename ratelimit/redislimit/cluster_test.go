package redislimit_test

import (
	"context"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/journalsvc/journal/internal/testenv"
	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/ratelimittest"
	"github.com/journalsvc/journal/ratelimit/redislimit"
)

// clusterLimiter returns a limiter on its own client of cl, with leases of
// lease (0: exact).
func clusterLimiter(tb testing.TB, cl *testenv.Cluster, lease time.Duration) *redislimit.Limiter {
	tb.Helper()
	return newLimiter(tb, newClient(tb, cl.Addrs()...), redislimit.Options{Timeout: time.Second, HeartbeatInterval: -1, Lease: lease})
}

// TestCluster runs multi-policy decisions on a 3-master Redis Cluster: the
// keys of one decision share the subject's hash tag, so the script never
// meets CROSSSLOT, and subjects spread over every master. The limit stays
// exact across two instances.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node Redis Cluster")
	}
	cl := testenv.RedisCluster(t)
	a, b := clusterLimiter(t, cl, 0), clusterLimiter(t, cl, 0)
	ip := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 20, Per: time.Hour}}
	hour := ratelimit.Policy{Name: "ip-hour", Rate: ratelimit.Rate{N: 1000, Per: time.Hour}, Algorithm: ratelimit.Sliding}
	day := ratelimit.Policy{Name: "ip-day", Rate: ratelimit.Rate{N: 1000, Per: 24 * time.Hour}, Algorithm: ratelimit.Fixed}
	masters := map[string]bool{}
	for s := 0; s < 12; s++ {
		subject := "ip:192.0.2." + strconv.Itoa(s)
		masters[cl.MasterFor(t, ratelimit.Key("journal:", subject, "ip")).Addr()] = true
		var ok atomic.Int64
		var wg sync.WaitGroup
		for i := 0; i < 60; i++ {
			wg.Add(1)
			go func(l *redislimit.Limiter) {
				defer wg.Done()
				d, err := ratelimittest.Call(l.Decide, context.Background(), subject,
					ratelimit.Item{Policy: ip}, ratelimit.Item{Policy: hour}, ratelimit.Item{Policy: day})
				if err != nil || d.Degraded() {
					t.Errorf("Decide on the cluster: %+v, %v", d, err)
					return
				}
				if d.Allowed {
					ok.Add(1)
				}
			}([]*redislimit.Limiter{a, b}[i%2])
		}
		wg.Wait()
		if got := ok.Load(); got != 20 {
			t.Errorf("subject %s: admitted %d of 60, want 20", subject, got)
		}
	}
	if len(masters) < 2 {
		t.Errorf("12 subjects landed on %d masters; the test should cover several", len(masters))
	}
}

// TestClusterLeases: leased quotas on a Redis Cluster, every algorithm. Two
// instances spend 192 of a limit of 300 from 32 goroutines: every request is
// admitted, most from leases, none degraded; once both have closed (giving
// back what they held), a window policy's remaining quota is exactly 108.
// Then two new instances flood the subject: the total admitted stays within
// the algorithm's bound.
func TestClusterLeases(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node Redis Cluster")
	}
	cl := testenv.RedisCluster(t)
	newLim := func(lease time.Duration) *redislimit.Limiter { return clusterLimiter(t, cl, lease) }
	// flood decides subject n times from 32 goroutines over two new
	// instances with 1 s leases and closes them; it returns the admitted
	// count and the decisions answered from leases.
	flood := func(t *testing.T, subject string, p ratelimit.Policy, n int) (admitted int64, hits uint64) {
		a, b := newLim(time.Second), newLim(time.Second)
		var ok atomic.Int64
		var wg sync.WaitGroup
		for g := range 32 {
			wg.Go(func() {
				l := []*redislimit.Limiter{a, b}[g%2]
				for range n / 32 {
					d, err := ratelimittest.Call(l.Decide, context.Background(), subject, ratelimit.Item{Policy: p})
					if err != nil || d.Degraded() {
						t.Errorf("Decide on the cluster: %+v, %v", d, err)
						return
					}
					if d.Allowed {
						ok.Add(1)
					}
				}
			})
		}
		wg.Wait()
		hits = a.Stats().LeaseHits + b.Stats().LeaseHits
		a.Close()
		b.Close()
		return ok.Load(), hits
	}
	for _, alg := range []ratelimit.Algorithm{ratelimit.GCRA, ratelimit.Sliding, ratelimit.Fixed} {
		t.Run(alg.String(), func(t *testing.T) {
			// GCRA: 5 units a second, so a 1 s lease holds 5. Windows: an
			// hour, so the test never meets a window's end.
			p := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 300, Per: time.Minute}, Algorithm: alg, Lease: true}
			if alg != ratelimit.GCRA {
				p.Rate.Per = time.Hour
			}
			subject := "ip:198.51.100." + strconv.Itoa(int(alg))
			start := time.Now()
			first, hits := flood(t, subject, p, 192)
			t.Logf("%v: admitted %d of 192, %d from leases", alg, first, hits)
			if first != 192 || hits == 0 {
				t.Errorf("admitted %d of 192 with %d from leases, want all, some from leases", first, hits)
			}
			if alg != ratelimit.GCRA { // time returns GCRA's unspent units; windows take them back
				d, err := ratelimittest.Call(newLim(0).Peek, context.Background(), subject, ratelimit.Item{Policy: p})
				if err != nil || !d.Allowed {
					t.Fatalf("Peek: %+v, %v", d, err)
				}
				if got := d.Results[0].Remaining + 1; got != p.Rate.N-first {
					t.Errorf("after both instances closed, remaining %d, want exactly %d", got, p.Rate.N-first)
				}
			}
			second, _ := flood(t, subject, p, 1280)
			bound := p.Rate.N
			if alg == ratelimit.GCRA {
				bound += int64(math.Ceil(time.Since(start).Seconds() * float64(p.Rate.N) / p.Rate.Per.Seconds()))
			}
			t.Logf("%v: then admitted %d of 1280; %d in all, bound %d", alg, second, first+second, bound)
			if first+second > bound {
				t.Errorf("admitted %d in all, want at most %d", first+second, bound)
			}
		})
	}
}
