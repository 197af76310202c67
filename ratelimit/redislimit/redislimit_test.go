package redislimit_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/journalsvc/journal/internal/testenv"
	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/ratelimittest"
	"github.com/journalsvc/journal/ratelimit/redislimit"
)

func TestConformance(t *testing.T) {
	c := newClient(t, testenv.RedisAddr(t))
	for _, denyCache := range []bool{false, true} {
		t.Run("denycache="+strconv.FormatBool(denyCache), func(t *testing.T) {
			ratelimittest.Run(t, func(t *testing.T, clock *ratelimittest.Clock) ratelimit.Limiter {
				prefix := testenv.RandomPrefix()
				opts := redislimit.Options{Prefix: prefix, HeartbeatInterval: -1, Timeout: time.Second, Now: clock.Now}
				if !denyCache {
					opts.DenyCacheSize = -1
				}
				l := newFakeTimeLimiter(t, c, opts, clock.Now)
				t.Cleanup(func() {
					if t.Failed() {
						return
					}
					assertAllKeysHaveTTL(t, c, prefix)
					if s := l.Stats(); s.Unavailable != 0 || s.RedisErrors != 0 {
						t.Errorf("stats %+v: a conformance run must not degrade", s)
					}
				})
				return l
			})
		})
	}
}

// TestKeysWithoutTTLAreRepaired writes a key without TTL as an old client
// would, and checks that any decision touching it, even a denied one or a
// peek, gives it a TTL.
func TestKeysWithoutTTLAreRepaired(t *testing.T) {
	c := newClient(t, testenv.RedisAddr(t))
	prefix := testenv.RandomPrefix()
	l := newLimiter(t, c, redislimit.Options{Prefix: prefix, HeartbeatInterval: -1, DenyCacheSize: -1, Timeout: 5 * time.Second})
	ctx := context.Background()
	small := ratelimit.Policy{Name: "small", Rate: ratelimit.Rate{N: 1, Per: time.Hour}}
	other := ratelimit.Policy{Name: "other", Rate: ratelimit.Rate{N: 5, Per: time.Hour}, Algorithm: ratelimit.Fixed}
	subject := "ip:198.51.100.1"
	if d, err := ratelimittest.Call(l.Decide, ctx, subject, ratelimit.Item{Policy: small}); err != nil || !d.Allowed {
		t.Fatalf("Decide = %+v, %v", d, err)
	}
	otherKey := ratelimit.Key(prefix, subject, "other")
	smallKey := ratelimit.Key(prefix, subject, "small")
	for _, k := range []string{otherKey, smallKey} {
		if err := c.Do(ctx, c.B().Persist().Key(k).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	c.Do(ctx, c.B().Set().Key(otherKey).Value("garbage-without-ttl").Build())
	// Denied by small: nothing is written, both keys are repaired.
	d, err := ratelimittest.Call(l.Decide, ctx, subject, ratelimit.Item{Policy: other}, ratelimit.Item{Policy: small})
	if err != nil || d.Allowed {
		t.Fatalf("Decide = %+v, %v; want denied by small", d, err)
	}
	if n := assertAllKeysHaveTTL(t, c, prefix); n != 2 {
		t.Errorf("found %d keys, want 2", n)
	}
}

// TestExactAcrossInstances: 3 limiters with their own clients share one key;
// 1,000 concurrent decisions admit exactly L, for each algorithm.
func TestExactAcrossInstances(t *testing.T) {
	addr := testenv.RedisAddr(t)
	for _, a := range []ratelimit.Algorithm{ratelimit.GCRA, ratelimit.Sliding, ratelimit.Fixed} {
		t.Run(a.String(), func(t *testing.T) {
			const limit = 50
			prefix := testenv.RandomPrefix()
			per := time.Hour
			if a == ratelimit.Fixed {
				per = 24 * time.Hour // aligned to UTC days: a boundary during the test is very unlikely
			}
			p := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: limit, Per: per}, Algorithm: a}
			admitted, denied := runInstances(t, addr, prefix, p, nil)
			if admitted != limit || denied != 1000-limit {
				t.Errorf("admitted %d, denied %d of 1000 across 3 instances; want exactly %d admitted", admitted, denied, limit)
			}
		})
	}
}

// TestClockSkewCannotMatter gives the 3 instances local clocks an hour apart:
// Redis TIME is the only clock of a decision, so the limit stays exact.
func TestClockSkewCannotMatter(t *testing.T) {
	addr := testenv.RedisAddr(t)
	skews := []time.Duration{-time.Hour, 0, 37 * time.Minute}
	for _, a := range []ratelimit.Algorithm{ratelimit.GCRA, ratelimit.Sliding} {
		t.Run(a.String(), func(t *testing.T) {
			p := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 30, Per: time.Hour}, Algorithm: a}
			admitted, _ := runInstances(t, addr, testenv.RandomPrefix(), p, skews)
			if admitted != 30 {
				t.Errorf("admitted %d with skewed instance clocks, want exactly 30", admitted)
			}
		})
	}
}

// runInstances runs 1,000 concurrent decisions on one subject spread over 3
// limiters (separate clients), optionally with skewed local clocks.
func runInstances(t *testing.T, addr, prefix string, p ratelimit.Policy, skews []time.Duration) (admitted, denied int) {
	t.Helper()
	var limiters []*redislimit.Limiter
	for i := 0; i < 3; i++ {
		opts := redislimit.Options{Prefix: prefix, InstanceID: "i" + strconv.Itoa(i), Timeout: 5 * time.Second, HeartbeatInterval: -1}
		if skews != nil {
			skew := skews[i]
			opts.Now = func() time.Time { return time.Now().Add(skew) }
		}
		limiters = append(limiters, newLimiter(t, newClient(t, addr), opts))
	}
	var ok, no, failed atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(l *redislimit.Limiter) {
			defer wg.Done()
			defer func() { <-sem }()
			d, err := ratelimittest.Call(l.Decide, context.Background(), "ip:203.0.113.7", ratelimit.Item{Policy: p})
			switch {
			case err != nil:
				failed.Add(1)
			case d.Degraded():
				failed.Add(1)
			case d.Allowed:
				ok.Add(1)
			default:
				no.Add(1)
			}
		}(limiters[i%3])
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d decisions failed or degraded", failed.Load())
	}
	return int(ok.Load()), int(no.Load())
}

func evalCalls(tb testing.TB, c rueidis.Client) int64 {
	tb.Helper()
	info, err := c.Do(context.Background(), c.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		tb.Fatal(err)
	}
	var n int64
	for _, line := range strings.Split(info, "\n") {
		for _, cmd := range []string{"cmdstat_evalsha:", "cmdstat_eval:"} {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), cmd); ok {
				calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
				v, _ := strconv.ParseInt(calls, 10, 64)
				n += v
			}
		}
	}
	return n
}

// TestFloodedKeyCostsNoRoundTrips floods one key and counts the scripts Redis
// ran (INFO commandstats) on a private server.
func TestFloodedKeyCostsNoRoundTrips(t *testing.T) {
	srv := testenv.StartRedis(t)
	c := newClient(t, srv.Addr())
	l := newLimiter(t, c, redislimit.Options{HeartbeatInterval: -1, Timeout: 5 * time.Second})
	p := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 10, Per: time.Hour}}
	before := evalCalls(t, c)
	admitted := 0
	for i := 0; i < 10_000; i++ {
		d, err := ratelimittest.Call(l.Decide, context.Background(), "ip:192.0.2.1", ratelimit.Item{Policy: p})
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			admitted++
		}
		if !d.Allowed && (d.RetryAfter <= 0 || d.RetryAfter > 6*time.Minute) {
			t.Fatalf("denied with RetryAfter %v, want (0, 6m]", d.RetryAfter)
		}
	}
	scripts := evalCalls(t, c) - before
	t.Logf("10,000 decisions on a flooded key: %d admitted, %d scripts run in Redis, %d deny-cache hits", admitted, scripts, l.Stats().DenyCacheHits)
	if admitted != 10 {
		t.Errorf("admitted %d, want 10", admitted)
	}
	if scripts > 12 {
		t.Errorf("Redis ran %d scripts for 10,000 decisions, want <= 12 (10 admitted + the first denial, + NOSCRIPT)", scripts)
	}
}

// TestResetClearsEveryInstance: a Reset on one instance clears the deny
// cache of another through PUBLISH.
func TestResetClearsEveryInstance(t *testing.T) {
	addr := testenv.RedisAddr(t)
	prefix := testenv.RandomPrefix()
	a := newLimiter(t, newClient(t, addr), redislimit.Options{Prefix: prefix, HeartbeatInterval: -1})
	b := newLimiter(t, newClient(t, addr), redislimit.Options{Prefix: prefix, HeartbeatInterval: -1})
	p := ratelimit.Policy{Name: "login", Rate: ratelimit.Rate{N: 2, Per: time.Hour}, Fail: ratelimit.FailClosed}
	ctx := context.Background()
	subject := "login:198.51.100.9:abc"
	for i := 0; i < 3; i++ {
		ratelimittest.Call(b.Decide, ctx, subject, ratelimit.Item{Policy: p})
	}
	if s := b.Stats(); s.DenyCacheItems != 1 {
		t.Fatalf("b's deny cache holds %d entries, want 1", s.DenyCacheItems)
	}
	// b's subscription starts in the background: repeat the (idempotent)
	// Reset until b has heard one.
	deadline := time.Now().Add(3 * time.Second)
	for b.Stats().DenyCacheItems != 0 {
		if time.Now().After(deadline) {
			t.Fatal("b's deny cache was not cleared within 3s of Resets on a")
		}
		if err := a.Reset(ctx, subject, "login"); err != nil {
			t.Fatalf("Reset: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d, err := ratelimittest.Call(b.Decide, ctx, subject, ratelimit.Item{Policy: p}); err != nil || !d.Allowed {
		t.Errorf("after Reset: %+v, %v; want admitted", d, err)
	}
}

func TestEvictionPolicyIsReported(t *testing.T) {
	for _, tc := range []struct {
		policy    string
		evictable bool
	}{{"allkeys-lru", true}, {"volatile-ttl", true}, {"noeviction", false}} {
		srv := testenv.StartRedis(t, "--maxmemory-policy", tc.policy)
		l := newLimiter(t, newClient(t, srv.Addr()), redislimit.Options{HeartbeatInterval: -1})
		deadline := time.Now().Add(3 * time.Second)
		for {
			got, evictable := l.EvictionPolicy()
			if got != "" {
				if got != tc.policy || evictable != tc.evictable {
					t.Errorf("EvictionPolicy() = %q, %v; want %q, %v", got, evictable, tc.policy, tc.evictable)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("EvictionPolicy() still unknown after 3s")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	if _, err := redislimit.New(nil, redislimit.Options{}); err == nil {
		t.Error("New(nil client) succeeded")
	}
	c := newClient(t, testenv.RedisAddr(t))
	if _, err := redislimit.New(c, redislimit.Options{Prefix: "a{b}:"}); err == nil {
		t.Error("New with a braced prefix succeeded")
	}
}

// faultPolicies are one policy per fail mode.
var (
	openP   = ratelimit.Policy{Name: "open", Rate: ratelimit.Rate{N: 1000, Per: time.Hour}, Fail: ratelimit.FailOpen}
	closedP = ratelimit.Policy{Name: "closed", Rate: ratelimit.Rate{N: 1000, Per: time.Hour}, Fail: ratelimit.FailClosed}
	localP  = ratelimit.Policy{Name: "local", Rate: ratelimit.Rate{N: 30, Per: time.Hour}}
)

type faultRun struct {
	maxWait                time.Duration
	open, closed, local    int // decisions per mode that behaved as configured
	localAdmitted          int
	wrongOpen, wrongClosed int
}

// load runs decisions of the three fail modes from 8 goroutines for d and
// records the longest wait and how each mode answered.
func load(l ratelimit.Limiter, d time.Duration, subject string) faultRun {
	var mu sync.Mutex
	var r faultRun
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				var item ratelimit.Item
				switch (i + g) % 3 {
				case 0:
					item = ratelimit.Item{Policy: openP}
				case 1:
					item = ratelimit.Item{Policy: closedP}
				default:
					item = ratelimit.Item{Policy: localP}
				}
				start := time.Now()
				dec, err := ratelimittest.Call(l.Decide, context.Background(), subject, item)
				waited := time.Since(start)
				mu.Lock()
				r.maxWait = max(r.maxWait, waited)
				switch item.Policy.Fail {
				case ratelimit.FailOpen:
					if err == nil && dec.Allowed && dec.Degraded() {
						r.open++
					} else if err != nil || !dec.Allowed {
						r.wrongOpen++
					}
				case ratelimit.FailClosed:
					if errors.Is(err, ratelimit.ErrUnavailable) {
						r.closed++
					} else if err != nil || dec.Degraded() {
						r.wrongClosed++
					}
				default:
					if err == nil && dec.Degraded() {
						r.local++
						if dec.Allowed {
							r.localAdmitted++
						}
					}
				}
				mu.Unlock()
				time.Sleep(time.Millisecond)
			}
		}(g)
	}
	wg.Wait()
	return r
}

func waitBreaker(t *testing.T, l *redislimit.Limiter, open bool, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for l.Stats().BreakerOpen != open {
		if time.Since(start) > within {
			t.Fatalf("breaker open=%v not reached within %v", open, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// TestFaults pauses (SIGSTOP) and then kills the Redis under load: no
// decision waits much past the timeout, each fail mode behaves as
// configured, the breaker opens and closes soon after Redis returns.
func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection takes a few seconds")
	}
	// 100ms rather than the production 50ms: under -race on 2 busy cores a
	// healthy call now and then exceeds 50ms.
	const timeout = 100 * time.Millisecond
	for _, fault := range []string{"pause", "kill"} {
		t.Run(fault, func(t *testing.T) {
			srv := testenv.StartRedis(t)
			l := newLimiter(t, newClient(t, srv.Addr()), redislimit.Options{
				Timeout: timeout, HeartbeatInterval: -1,
			})
			f := withFallback(t, l)
			subject := "ip:" + fault
			// Healthy phase. On a loaded machine under -race a call may
			// exceed 50ms (and fall back); only most must go to Redis.
			if r := load(f, 200*time.Millisecond, subject); r.wrongOpen+r.wrongClosed != 0 {
				t.Fatalf("healthy Redis: fail modes misbehaved: %+v", r)
			} else if n := r.open + r.closed + r.local; n > 0 {
				t.Logf("healthy phase: %d decisions degraded (machine load)", n)
			}
			waitBreaker(t, l, false, 3*time.Second)
			opensBefore := l.Stats().BreakerOpens
			if fault == "pause" {
				srv.Pause(t)
			} else {
				srv.Kill(t)
			}
			r := load(f, time.Second, subject+"-outage") // a fresh subject: no cached denials
			t.Logf("%s: longest wait %v (timeout %v); open %d, closed %d, local %d (admitted %d)", fault, r.maxWait, timeout, r.open, r.closed, r.local, r.localAdmitted)
			if r.maxWait > 3*timeout {
				t.Errorf("a decision waited %v, want < 3x the %v timeout", r.maxWait, timeout)
			}
			if r.wrongOpen != 0 || r.wrongClosed != 0 {
				t.Errorf("fail modes misbehaved: %d fail-open denials/errors, %d fail-closed non-errors", r.wrongOpen, r.wrongClosed)
			}
			if r.open == 0 || r.closed == 0 || r.local == 0 {
				t.Errorf("every fail mode should have answered degraded: %+v", r)
			}
			if r.localAdmitted > int(localP.Rate.N) {
				t.Errorf("local fallback admitted %d, want <= %d (N_live = 1)", r.localAdmitted, localP.Rate.N)
			}
			if !l.Stats().BreakerOpen {
				t.Fatal("breaker did not open")
			}
			if fault == "pause" {
				srv.Resume(t)
			} else {
				srv.Restart(t)
			}
			took := waitBreaker(t, l, false, 3*time.Second)
			t.Logf("%s: breaker closed %v after Redis returned", fault, took)
			// The first call after a restart also reloads the script
			// (NOSCRIPT, then EVAL): allow a few attempts within 1s.
			var d ratelimit.Decision
			var err error
			for start := time.Now(); time.Since(start) < time.Second; time.Sleep(20 * time.Millisecond) {
				if d, err = ratelimittest.Call(f.Decide, context.Background(), "ip:after", ratelimit.Item{Policy: closedP}); err == nil {
					break
				}
			}
			if err != nil || !d.Allowed || d.Degraded() {
				t.Errorf("after recovery: %+v, %v; want an admitted, non-degraded decision", d, err)
			}
			if opens := l.Stats().BreakerOpens - opensBefore; opens != 1 {
				t.Errorf("during the fault the breaker opened %d times, want 1", opens)
			}
		})
	}
}

// TestLocalFallbackSharesTheLimit: with 3 live instances, an instance that
// loses Redis admits ceil(L/3) on its own.
func TestLocalFallbackSharesTheLimit(t *testing.T) {
	srv := testenv.StartRedis(t)
	var ls []*redislimit.Limiter
	for i := 0; i < 3; i++ {
		ls = append(ls, newLimiter(t, newClient(t, srv.Addr()), redislimit.Options{
			InstanceID: "inst-" + strconv.Itoa(i), HeartbeatInterval: 100 * time.Millisecond,
		}))
	}
	deadline := time.Now().Add(3 * time.Second)
	for ls[0].LiveInstances() != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("LiveInstances() = %d after 3s, want 3", ls[0].LiveInstances())
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Kill(t)
	f := withFallback(t, ls[0])
	p := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 31, Per: time.Hour}}
	admitted := 0
	for i := 0; i < 100; i++ {
		d, err := ratelimittest.Call(f.Decide, context.Background(), "ip:203.0.113.50", ratelimit.Item{Policy: p})
		if err != nil {
			t.Fatal(err)
		}
		if !d.Degraded() {
			t.Fatal("decision without Redis is not marked Degraded")
		}
		if d.Allowed {
			admitted++
		}
	}
	if admitted != 11 {
		t.Errorf("local fallback admitted %d, want ceil(31/3) = 11", admitted)
	}
	if got := ls[0].LiveInstances(); got != 3 {
		t.Errorf("LiveInstances() = %d during the outage, want the 3 remembered", got)
	}
}

func BenchmarkDecide(b *testing.B) {
	c := newClient(b, testenv.RedisAddr(b))
	b.Run("10000keys", func(b *testing.B) {
		l := newLimiter(b, c, redislimit.Options{Prefix: testenv.RandomPrefix(), HeartbeatInterval: -1, Timeout: time.Second})
		p := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 1 << 30, Per: time.Hour}}
		keys := make([]string, 10000)
		for i := range keys {
			keys[i] = "ip:10.1." + strconv.Itoa(i>>8) + "." + strconv.Itoa(i&255)
		}
		var ctr atomic.Int64
		b.SetParallelism(32) // 64 goroutines on 2 CPUs
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := int(ctr.Add(7919))
			for pb.Next() {
				i++
				d, err := ratelimittest.Call(l.Decide, context.Background(), keys[i%len(keys)], ratelimit.Item{Policy: p})
				if err != nil || !d.Allowed {
					b.Errorf("Decide: %+v, %v", d, err)
					return
				}
			}
		})
	})
	b.Run("flooded", func(b *testing.B) {
		l := newLimiter(b, c, redislimit.Options{Prefix: testenv.RandomPrefix(), HeartbeatInterval: -1, Timeout: time.Second})
		p := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 10, Per: time.Hour}}
		b.SetParallelism(32)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				ratelimittest.Call(l.Decide, context.Background(), "ip:flood", ratelimit.Item{Policy: p})
			}
		})
	})
}

// TestForeignValuesAreAFreshState: a key holding a value the script did not
// write (an older version, a typo by hand) is a zero state, never an error.
func TestForeignValuesAreAFreshState(t *testing.T) {
	c := newClient(t, testenv.RedisAddr(t))
	prefix := testenv.RandomPrefix()
	l := newLimiter(t, c, redislimit.Options{Prefix: prefix, HeartbeatInterval: -1, DenyCacheSize: -1, Timeout: 5 * time.Second})
	ctx := context.Background()
	for i, raw := range []string{"g:xyz", "g:1780000000000000", "garbage", "s:1:2:3:4", "f:", "17", "s:x:1:1"} {
		for _, a := range []ratelimit.Algorithm{ratelimit.GCRA, ratelimit.Sliding, ratelimit.Fixed} {
			subject := "s" + strconv.Itoa(i) + a.String()
			p := ratelimit.Policy{Name: "p", Rate: ratelimit.Rate{N: 3, Per: time.Hour}, Algorithm: a}
			c.Do(ctx, c.B().Set().Key(ratelimit.Key(prefix, subject, "p")).Value(raw).Build())
			d, err := ratelimittest.Call(l.Decide, ctx, subject, ratelimit.Item{Policy: p})
			if err != nil || !d.Allowed || d.Results[0].Remaining != 2 || d.Degraded() {
				t.Errorf("%s over %q: %+v, %v; want a fresh admitted state", a, raw, d, err)
			}
		}
	}
	assertAllKeysHaveTTL(t, c, prefix)
}

// TestGCRAValueFormat: a GCRA state is stored as the TAT in decimal digits.
func TestGCRAValueFormat(t *testing.T) {
	c := newClient(t, testenv.RedisAddr(t))
	prefix := testenv.RandomPrefix()
	l := newLimiter(t, c, redislimit.Options{Prefix: prefix, HeartbeatInterval: -1, Timeout: 5 * time.Second})
	ctx := context.Background()
	p := ratelimit.Policy{Name: "p", Rate: ratelimit.Rate{N: 2, Per: time.Hour}}
	if d, err := ratelimittest.Call(l.Decide, ctx, "ip:192.0.2.10", ratelimit.Item{Policy: p}); err != nil || !d.Allowed {
		t.Fatalf("Decide = %+v, %v", d, err)
	}
	raw, err := c.Do(ctx, c.B().Get().Key(ratelimit.Key(prefix, "ip:192.0.2.10", "p")).Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	tat, err := strconv.ParseInt(raw, 10, 64)
	if now := time.Now().UnixMicro(); err != nil || tat < now || tat > now+int64(time.Hour/time.Microsecond) {
		t.Fatalf("stored value %q, want the TAT in decimal digits, about half an hour from now", raw)
	}
}

// TestScriptFlushIsNotAFailure: after SCRIPT FLUSH (or a restart) the
// script is sent again (EVAL on NOSCRIPT) and no decision fails.
func TestScriptFlushIsNotAFailure(t *testing.T) {
	srv := testenv.StartRedis(t)
	c := newClient(t, srv.Addr())
	l := newLimiter(t, c, redislimit.Options{Prefix: testenv.RandomPrefix(), HeartbeatInterval: -1, BreakerFailures: 1, Timeout: 5 * time.Second})
	ctx := context.Background()
	p := ratelimit.Policy{Name: "p", Rate: ratelimit.Rate{N: 100, Per: time.Hour}}
	for i := range 3 {
		if err := c.Do(ctx, c.B().ScriptFlush().Build()).Error(); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 20 { // several flights, several connections
			wg.Go(func() {
				if d, err := ratelimittest.Call(l.Decide, ctx, "ip:192.0.2.30", ratelimit.Item{Policy: p}); err != nil || !d.Allowed || d.Degraded() {
					t.Errorf("round %d: Decide = %+v, %v", i, d, err)
				}
			})
		}
		wg.Wait()
	}
	if st := l.Stats(); st.RedisErrors != 0 || st.BreakerOpens != 0 {
		t.Errorf("stats %+v: want no errors", st)
	}
}

// TestCallerCancellationIsNotAFailure: a cancelled request returns its
// context's error and does not count towards opening the breaker.
func TestCallerCancellationIsNotAFailure(t *testing.T) {
	c := newClient(t, testenv.RedisAddr(t))
	l := newLimiter(t, c, redislimit.Options{Prefix: testenv.RandomPrefix(), HeartbeatInterval: -1, BreakerFailures: 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := ratelimit.Policy{Name: "p", Rate: ratelimit.Rate{N: 3, Per: time.Hour}}
	for i := 0; i < 3; i++ {
		if _, err := ratelimittest.Call(l.Decide, ctx, "ip:192.0.2.200", ratelimit.Item{Policy: p}); !errors.Is(err, context.Canceled) {
			t.Fatalf("Decide with a cancelled context: err = %v, want context.Canceled", err)
		}
	}
	if l.Stats().BreakerOpen {
		t.Error("cancelled requests opened the breaker")
	}
}

// TestDecideByBoundsTheRoundTrip: DecideBy and PeekBy decide as Decide and
// Peek do on a context bounded by the deadline: in time they decide, and a
// deadline that has passed fails a decision that needs Redis as a slow
// Redis would, without counting against it.
func TestDecideByBoundsTheRoundTrip(t *testing.T) {
	c := newClient(t, testenv.RedisAddr(t))
	l := newLimiter(t, c, redislimit.Options{Prefix: testenv.RandomPrefix(), HeartbeatInterval: -1, Timeout: 5 * time.Second, BreakerFailures: 1})
	p := ratelimit.Policy{Name: "p", Rate: ratelimit.Rate{N: 3, Per: time.Hour}}
	by := func(deadline time.Time, peek bool) func(context.Context, *ratelimit.Decision, string, ...ratelimit.Item) error {
		return func(ctx context.Context, d *ratelimit.Decision, subject string, items ...ratelimit.Item) error {
			if peek {
				return l.PeekBy(ctx, deadline, d, subject, items...)
			}
			return l.DecideBy(ctx, deadline, d, subject, items...)
		}
	}
	ctx, subject, item := context.Background(), "ip:192.0.2.201", ratelimit.Item{Policy: p}
	if d, err := ratelimittest.Call(by(time.Now().Add(5*time.Second), false), ctx, subject, item); err != nil || !d.Allowed || d.Results[0].Remaining != 2 {
		t.Fatalf("DecideBy in time = %+v, %v; want admitted with 2 left", d, err)
	}
	if d, err := ratelimittest.Call(by(time.Time{}, true), ctx, subject, item); err != nil || !d.Allowed || d.Results[0].Remaining != 1 {
		t.Fatalf("PeekBy without a deadline = %+v, %v; want admitted with 1 left after it", d, err)
	}
	for _, peek := range []bool{false, true} {
		d, err := ratelimittest.Call(by(time.Now(), peek), ctx, subject, item)
		if !errors.Is(err, ratelimit.ErrUnavailable) || !errors.Is(err, ratelimit.ErrSlow) || len(d.Results) != 0 {
			t.Errorf("peek %v past the deadline = %+v, %v; want no results and an error wrapping ErrUnavailable and ErrSlow", peek, d, err)
		}
	}
	if l.Stats().BreakerOpen {
		t.Error("decisions past their deadline opened the breaker")
	}
}

// TestDenyCacheIsBounded floods many denied subjects through a small deny
// cache.
func TestDenyCacheIsBounded(t *testing.T) {
	c := newClient(t, testenv.RedisAddr(t))
	l := newLimiter(t, c, redislimit.Options{Prefix: testenv.RandomPrefix(), HeartbeatInterval: -1, DenyCacheSize: 64, Timeout: 5 * time.Second})
	p := ratelimit.Policy{Name: "p", Rate: ratelimit.Rate{N: 1, Per: time.Hour}}
	ctx := context.Background()
	for i := 0; i < 300; i++ {
		subject := "ip:198.18.0." + strconv.Itoa(i)
		ratelimittest.Call(l.Decide, ctx, subject, ratelimit.Item{Policy: p})
		if d, err := ratelimittest.Call(l.Decide, ctx, subject, ratelimit.Item{Policy: p}); err != nil || d.Allowed {
			t.Fatalf("second decision of %s: %+v, %v; want denied", subject, d, err)
		}
	}
	if got := l.Stats().DenyCacheItems; got > 64 || got == 0 {
		t.Errorf("deny cache holds %d entries, want 1..64", got)
	}
}

// TestDeadlineHoldsWhileReconnecting: while rueidis redials a hung server
// for another caller with a long deadline (it makes every caller wait for
// that dial), a decision still returns at its own deadline, degraded.
func TestDeadlineHoldsWhileReconnecting(t *testing.T) {
	t.Parallel()
	hd := testenv.NewHangingDialer(t)
	const dial = 2 * time.Second
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: []string{testenv.RedisAddr(t)}, DisableRetry: true, DisableCache: true,
		ConnWriteTimeout: dial, Dialer: net.Dialer{Timeout: dial}, DialCtxFn: hd.Dial,
		PipelineMultiplex: -1, // one connection, as the service's shared client
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	const timeout = 100 * time.Millisecond
	l := newLimiter(t, c, redislimit.Options{Prefix: testenv.RandomPrefix(), Timeout: timeout, HeartbeatInterval: -1})
	p := ratelimit.Policy{Name: "p", Rate: ratelimit.Rate{N: 100, Per: time.Minute}, Fail: ratelimit.FailOpen}
	if d, err := ratelimittest.Call(l.Decide, context.Background(), "ip:192.0.2.7", ratelimit.Item{Policy: p}); err != nil || !d.Allowed {
		t.Fatalf("healthy decision: %+v, %v", d, err)
	}
	// rueidis redials for another caller, with a deadline far beyond ours.
	// Hang also closed the flights' dedicated connection: the first
	// decision fails on it, and the next ones' flights dial a new one into
	// the silent listener.
	hd.HangDuringRedial(c, dial)
	for i := range 3 {
		start := time.Now()
		d, err := ratelimittest.Call(l.Decide, context.Background(), "ip:192.0.2.7", ratelimit.Item{Policy: p})
		took := time.Since(start)
		t.Logf("decision %d during the redial took %v (timeout %v, dial %v)", i, took, timeout, dial)
		if !errors.Is(err, ratelimit.ErrUnavailable) {
			t.Errorf("decision %d during the redial = %+v, %v; want an error wrapping ErrUnavailable", i, d, err)
		}
		if took > 5*timeout {
			t.Errorf("decision %d during the redial took %v, want about the %v timeout, not the %v dial", i, took, timeout, dial)
		}
	}
}

// TestBatchedDecisionsStayIndependent sends many concurrent decisions of
// different shapes (one policy, two policies with one exhausted, peeks, a
// window algorithm) so that they share script calls, and checks each one's
// result and effect as if it had run alone.
func TestBatchedDecisionsStayIndependent(t *testing.T) {
	c := newClient(t, testenv.RedisAddr(t))
	prefix := testenv.RandomPrefix()
	l := newLimiter(t, c, redislimit.Options{Prefix: prefix, HeartbeatInterval: -1, Timeout: 5 * time.Second, DenyCacheSize: -1})
	ctx := context.Background()
	one := ratelimit.Policy{Name: "one", Rate: ratelimit.Rate{N: 1, Per: time.Hour}}
	wide := ratelimit.Policy{Name: "wide", Rate: ratelimit.Rate{N: 100, Per: time.Hour}}
	win := ratelimit.Policy{Name: "win", Rate: ratelimit.Rate{N: 5, Per: time.Hour}, Algorithm: ratelimit.Sliding}
	const subjects = 60
	// Every third subject has spent its "one" already.
	for i := 0; i < subjects; i += 3 {
		if d, err := ratelimittest.Call(l.Decide, ctx, "ip:198.51.100."+strconv.Itoa(i), ratelimit.Item{Policy: one}); err != nil || !d.Allowed {
			t.Fatalf("setup: %+v, %v", d, err)
		}
	}
	callsBefore := l.Stats().RedisCalls
	type outcome struct {
		two, peek, window ratelimit.Decision
		err               error
	}
	out := make([]outcome, subjects)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range subjects {
		subject := "ip:198.51.100." + strconv.Itoa(i)
		wg.Go(func() {
			<-start
			o := &out[i]
			var err1, err2, err3 error
			o.two, err1 = ratelimittest.Call(l.Decide, ctx, subject, ratelimit.Item{Policy: one}, ratelimit.Item{Policy: wide, Cost: 7})
			o.peek, err2 = ratelimittest.Call(l.Peek, ctx, subject+"-peek", ratelimit.Item{Policy: wide})
			o.window, err3 = ratelimittest.Call(l.Decide, ctx, subject, ratelimit.Item{Policy: win, Cost: 2})
			o.err = errors.Join(err1, err2, err3)
		})
	}
	close(start)
	wg.Wait()
	decisions := uint64(3 * subjects)
	calls := l.Stats().RedisCalls - callsBefore
	t.Logf("%d concurrent decisions took %d script calls", decisions, calls)
	if calls >= decisions {
		t.Errorf("%d decisions took %d script calls: nothing was batched", decisions, calls)
	}
	for i, o := range out {
		if o.err != nil {
			t.Fatalf("subject %d: %v", i, o.err)
		}
		spent := i%3 == 0
		if o.two.Allowed == spent {
			t.Errorf("subject %d (spent %v): two-policy decision allowed = %v", i, spent, o.two.Allowed)
		}
		wantWide := int64(93)
		if spent {
			wantWide = 100 // denied by "one": nothing consumed
			if v := o.two.Violated([]ratelimit.Item{{Policy: one}, {Policy: wide}}); len(v) != 1 || v[0].Name != "one" {
				t.Errorf("subject %d: violated %+v, want only %q", i, v, "one")
			}
		}
		if got := o.two.Results[1].Remaining; got != wantWide {
			t.Errorf("subject %d (spent %v): wide remaining %d, want %d", i, spent, got, wantWide)
		}
		if !o.peek.Allowed || o.peek.Results[0].Remaining != 99 {
			t.Errorf("subject %d: peek %+v, want allowed with 99 remaining", i, o.peek)
		}
		if !o.window.Allowed || o.window.Results[0].Remaining != 3 {
			t.Errorf("subject %d: window decision %+v, want allowed with 3 remaining", i, o.window)
		}
	}
	// The peeks consumed nothing.
	for i := range subjects {
		d, err := ratelimittest.Call(l.Peek, ctx, "ip:198.51.100."+strconv.Itoa(i)+"-peek", ratelimit.Item{Policy: wide, Cost: 100})
		if err != nil || !d.Allowed {
			t.Fatalf("subject %d: a peek of the whole quota after the peeks = %+v, %v; want allowed", i, d, err)
		}
	}
	assertAllKeysHaveTTL(t, c, prefix)
}
