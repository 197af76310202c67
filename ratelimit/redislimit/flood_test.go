package redislimit_test

import (
	"context"
	"errors"
	"flag"
	"math"
	"runtime"
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

var floodFor = flag.Duration("flood", 3*time.Second, "how long TestFloodStaysWithinTheBound floods each key")

// instance is one service instance's limiter as a service composes it: a
// redislimit.Limiter on its own client, warmed up, inside a
// ratelimit.Fallback.
func instance(t *testing.T, addr, prefix string, i int, lease time.Duration) (*redislimit.Limiter, ratelimit.Limiter) {
	t.Helper()
	l := newLimiter(t, newClient(t, addr), redislimit.Options{Prefix: prefix, InstanceID: prefix + strconv.Itoa(i), Lease: lease})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	return l, withFallback(t, l)
}

// TestFloodStaysWithinTheBound: 64 goroutines flood one key through 1 and
// through 3 instances with default options, in exact mode and with leases,
// saturating the process (the deny cache answers most decisions without a
// round trip, so the goroutines never wait); the admitted count stays within
// each algorithm's stated bound, plus one per instance for rounding, and
// reaches the limit unless calls were abandoned.
func TestFloodStaysWithinTheBound(t *testing.T) {
	if testing.Short() {
		t.Skip("floods for a few seconds per case")
	}
	addr := testenv.RedisAddr(t)
	rate := ratelimit.Rate{N: 100, Per: time.Minute}
	for _, alg := range []ratelimit.Algorithm{ratelimit.GCRA, ratelimit.Sliding, ratelimit.Fixed} {
		for _, n := range []int{1, 3} {
			for _, lease := range []time.Duration{0, time.Second} {
				t.Run(alg.String()+"/instances="+strconv.Itoa(n)+"/lease="+lease.String(), func(t *testing.T) {
					prefix := testenv.RandomPrefix()
					var raw []*redislimit.Limiter
					var lims []ratelimit.Limiter
					for i := range n {
						l, f := instance(t, addr, prefix, i, lease)
						raw, lims = append(raw, l), append(lims, f)
					}
					p := ratelimit.Policy{Name: "ip", Rate: rate, Algorithm: alg, Lease: lease > 0}
					var admitted, degraded atomic.Int64
					var mu sync.Mutex
					var windows = map[int64]int64{} // fixed: admissions per aligned window
					var wg sync.WaitGroup
					start := time.Now()
					stop := start.Add(*floodFor)
					for g := range 64 {
						wg.Go(func() {
							l := lims[g%n]
							for time.Now().Before(stop) {
								d, err := ratelimittest.Call(l.Decide, context.Background(), "ip:198.51.100.9", ratelimit.Item{Policy: p})
								if err != nil {
									t.Errorf("Decide: %v", err)
									return
								}
								if d.Allowed {
									admitted.Add(1)
									if d.Degraded() {
										degraded.Add(1)
									}
									w := time.Now().UnixMilli() / rate.Per.Milliseconds()
									mu.Lock()
									windows[w]++
									mu.Unlock()
								}
							}
						})
					}
					wg.Wait()
					elapsed := time.Since(start)
					// GCRA and sliding (a fresh key, so no previous window
					// weighs): B + N*t/D. Fixed: N per aligned window touched
					// (an admission near a boundary may land in the next one).
					bound := rate.N + int64(float64(rate.N)*elapsed.Seconds()/rate.Per.Seconds())
					if alg == ratelimit.Fixed {
						bound = rate.N * int64(len(windows))
					}
					bound += int64(n)
					var st redislimit.Stats
					for _, l := range raw {
						s := l.Stats()
						st.RedisCalls += s.RedisCalls
						st.RedisErrors += s.RedisErrors
						st.Abandoned += s.Abandoned
						st.Late += s.Late
						st.BreakerOpens += s.BreakerOpens
						st.DenyCacheHits += s.DenyCacheHits
						st.LeaseHits += s.LeaseHits
						st.GiveBacks += s.GiveBacks
					}
					t.Logf("%v over %v: admitted %d (%d degraded), bound %d; script calls %d (%d failed), answered late %d, abandoned %d, breaker opened %d, deny-cache hits %d, lease hits %d, give-backs %d",
						alg, elapsed.Round(time.Millisecond), admitted.Load(), degraded.Load(), bound, st.RedisCalls, st.RedisErrors, st.Late, st.Abandoned, st.BreakerOpens, st.DenyCacheHits, st.LeaseHits, st.GiveBacks)
					if got := admitted.Load(); got > bound {
						t.Errorf("admitted %d, want at most %d", got, bound)
					}
					// Under-admission comes only from calls Redis ran for a
					// caller that gave up (it charged them; the caller fell
					// back). Without one, every unit Redis charged, leased
					// ones included, was spent: the flood got at least N.
					if st.Abandoned == 0 && st.RedisErrors == 0 && degraded.Load() == 0 && admitted.Load() < rate.N {
						t.Errorf("admitted %d with no call abandoned, want at least %d: units were charged and never spent", admitted.Load(), rate.N)
					}
				})
			}
		}
	}
}

// TestSaturationGrantsNoFreshQuota: a subject whose quota Redis reported
// spent gets nothing more while the process is saturated and its Redis calls
// miss their deadline: the degraded decisions continue from the state last
// seen from Redis, not from a fresh quota. The deny cache is off and the
// deadline short, so that most decisions go to Redis and many miss it.
func TestSaturationGrantsNoFreshQuota(t *testing.T) {
	if testing.Short() {
		t.Skip("saturates the CPU for a few seconds")
	}
	addr, prefix := testenv.RedisAddr(t), testenv.RandomPrefix()
	l := newLimiter(t, newClient(t, addr), redislimit.Options{
		Prefix: prefix, Timeout: 2 * time.Millisecond, DenyCacheSize: -1, HeartbeatInterval: -1,
	})
	f := withFallback(t, l)
	p := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 5, Per: time.Hour}}
	ctx := context.Background()
	const subject = "ip:198.51.100.10"
	// Another instance spends the quota; this one then sees it spent.
	other := newLimiter(t, newClient(t, addr), redislimit.Options{Prefix: prefix, Timeout: time.Second, HeartbeatInterval: -1})
	for i := range 5 {
		if d, err := ratelimittest.Call(other.Decide, ctx, subject, ratelimit.Item{Policy: p}); err != nil || !d.Allowed {
			t.Fatalf("decision %d: %+v, %v", i, d, err)
		}
	}
	for { // on a busy machine a call may miss 2ms already (degraded)
		d, err := ratelimittest.Call(f.Peek, ctx, subject, ratelimit.Item{Policy: p})
		if err != nil || (!d.Degraded() && d.Allowed) {
			t.Fatalf("peek: %+v, %v; want denied", d, err)
		}
		if !d.Degraded() {
			break
		}
	}
	stop := make(chan struct{})
	var spin sync.WaitGroup
	for range 4 * runtime.GOMAXPROCS(0) {
		spin.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					runtime.Gosched()
				}
			}
		})
	}
	var admitted, degraded, decisions atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(2 * time.Second)
	for range 16 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				d, err := ratelimittest.Call(f.Decide, ctx, subject, ratelimit.Item{Policy: p})
				if err != nil {
					t.Errorf("Decide: %v", err)
					return
				}
				decisions.Add(1)
				if d.Degraded() {
					degraded.Add(1)
				}
				if d.Allowed {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	spin.Wait()
	t.Logf("%d decisions on the spent subject, %d degraded, %d admitted; limiter %+v", decisions.Load(), degraded.Load(), admitted.Load(), l.Stats())
	if admitted.Load() != 0 {
		t.Errorf("a subject with no quota left was admitted %d times under saturation", admitted.Load())
	}
	if degraded.Load() == 0 {
		t.Errorf("no decision missed its 2ms deadline: the test did not reach the degraded path")
	}
}

// TestTimeoutIsSlowUntilTheBreakerOpens: a call that times out while the
// breaker is closed is ErrSlow however long Redis has been silent, and the
// fallback grants no fresh quota for it. A paused Redis runs the queued
// calls once it resumes, and a process starved of CPU reads no reply for as
// long as it is starved: silence alone is no proof that the calls were not
// charged, so only the breaker may move decisions to the share of the
// quota.
func TestTimeoutIsSlowUntilTheBreakerOpens(t *testing.T) {
	srv := testenv.StartRedis(t)
	l := newLimiter(t, newClient(t, srv.Addr()), redislimit.Options{
		Timeout: 50 * time.Millisecond, BreakerFailures: 1000, HeartbeatInterval: -1,
	})
	f := withFallback(t, l)
	p := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 100, Per: time.Minute}, Fail: ratelimit.FailLocal}
	ctx := context.Background()
	if d, err := ratelimittest.Call(f.Decide, ctx, "ip:paused", ratelimit.Item{Policy: p}); err != nil || !d.Allowed || d.Degraded() {
		t.Fatalf("healthy decision: %+v, %v", d, err)
	}
	srv.Pause(t)
	defer srv.Resume(t)
	paused := time.Now()
	// Longer than FlightTimeout: no call has been answered for a while.
	time.Sleep(redislimit.FlightTimeout + 200*time.Millisecond)
	if _, err := ratelimittest.Call(l.Decide, ctx, "ip:paused", ratelimit.Item{Policy: p}); !errors.Is(err, ratelimit.ErrSlow) {
		t.Fatalf("Decide with Redis silent and the breaker closed = %v, want ErrSlow", err)
	}
	admitted := 0
	for range 20 {
		d, err := ratelimittest.Call(f.Decide, ctx, "ip:paused", ratelimit.Item{Policy: p})
		if err != nil {
			t.Fatalf("fallback Decide: %v", err)
		}
		if d.Allowed {
			admitted++
		}
	}
	if l.Stats().BreakerOpen {
		t.Fatal("the breaker opened; the test needs it closed")
	}
	// At most a unit, and what the rate returned meanwhile; a share of the
	// 99 units Redis reported would admit all 20.
	if bound := 1 + int(math.Ceil(float64(p.Rate.N)*time.Since(paused).Seconds()/p.Rate.Per.Seconds())); admitted > bound {
		t.Errorf("admitted %d of 20 while Redis was silent and the breaker closed, want at most %d (the calls may all be charged when Redis resumes)", admitted, bound)
	}
}
