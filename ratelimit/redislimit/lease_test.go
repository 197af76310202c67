package redislimit_test

import (
	"context"
	"flag"
	"math/rand/v2"
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

var leaseSeeds = flag.Int("lease-seeds", 40, "how many random schedules TestLeasesNeverExceedTheBound runs")

// TestLeasesAnswerLocally: a hot subject with a high limit is decided
// mostly without a round trip, every decision admitted and not degraded.
func TestLeasesAnswerLocally(t *testing.T) {
	c := newClient(t, testenv.RedisAddr(t))
	l := newLimiter(t, c, redislimit.Options{Prefix: testenv.RandomPrefix(), Lease: time.Second, HeartbeatInterval: -1, Timeout: time.Second})
	p := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 1 << 30, Per: time.Hour}, Lease: true}
	ctx := context.Background()
	const n = 3000
	for i := range n {
		var d ratelimit.Decision
		err := l.Decide(ctx, &d, "ip:192.0.2.77", ratelimit.Item{Policy: p})
		if err != nil || !d.Allowed || d.Degraded() || d.Results[0].Remaining >= p.Limit() {
			t.Fatalf("decision %d: %+v, %v", i, d, err)
		}
	}
	st := l.Stats()
	t.Logf("%d decisions: %d script calls, %d answered from leases", n, st.RedisCalls, st.LeaseHits)
	if st.RedisCalls > n/20 {
		t.Errorf("%d decisions took %d script calls, want fewer than %d", n, st.RedisCalls, n/20)
	}
	// A policy without Lease is still decided exactly.
	exact := p
	exact.Name, exact.Lease = "exact", false
	before := l.Stats().RedisCalls
	for range 10 {
		var d ratelimit.Decision
		l.Decide(ctx, &d, "ip:192.0.2.77", ratelimit.Item{Policy: exact})
	}
	if got := l.Stats().RedisCalls - before; got != 10 {
		t.Errorf("10 decisions of a policy without Lease took %d script calls, want 10", got)
	}
}

// TestHotSubjectRenewsAhead: 16 goroutines decide one subject for 2.5
// lease durations, each pausing 200µs between decisions, so their rate stays
// far below the GCRA limit's (250,000 a second):
// each lease lasts its duration (it holds what the rate returns in one, not
// what the subject spent) and is renewed before it runs out, so the script
// calls stay a handful per lease duration rather than one per decision made
// while a renewal is in flight.
func TestHotSubjectRenewsAhead(t *testing.T) {
	c := newClient(t, testenv.RedisAddr(t))
	const dur = 400 * time.Millisecond
	l := newLimiter(t, c, redislimit.Options{Prefix: testenv.RandomPrefix(), Lease: dur, HeartbeatInterval: -1, Timeout: time.Second})
	p := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 1 << 30, Per: time.Hour}, Lease: true}
	var wg sync.WaitGroup
	var decided atomic.Int64
	stop := time.Now().Add(dur * 5 / 2)
	for range 16 {
		wg.Go(func() {
			var d ratelimit.Decision
			for time.Now().Before(stop) {
				if err := l.Decide(context.Background(), &d, "ip:hot", ratelimit.Item{Policy: p}); err != nil || !d.Allowed {
					t.Errorf("Decide: %+v, %v", d, err)
					return
				}
				decided.Add(1)
				time.Sleep(200 * time.Microsecond)
			}
		})
	}
	wg.Wait()
	st := l.Stats()
	t.Logf("%d decisions: %d script calls, %d answered from leases", decided.Load(), st.RedisCalls, st.LeaseHits)
	// The first decisions (no rate seen yet, then the first grant in
	// flight) and about two renewals per lease duration.
	if want := uint64(16 + 2*3*2); st.RedisCalls > want {
		t.Errorf("%d script calls for one subject over 2.5 lease durations, want at most %d", st.RedisCalls, want)
	}
}

// admission is one admitted request of a schedule: when (µs of the fake
// clock) and its cost.
type admission struct{ at, cost int64 }

// checkBound reports the first interval in which admissions exceed what the
// policy's algorithm states: for GCRA at most B + floor(t/T) in any interval
// of length t between two admissions; for the window algorithms at most N in
// any aligned window (sliding counts the previous window on top, so it
// admits no more than fixed does in one window).
func checkBound(p ratelimit.Policy, adm []admission) string {
	if p.Algorithm == ratelimit.GCRA {
		T, b := p.EmissionInterval().Microseconds(), p.Limit()
		for i := range adm {
			sum := int64(0)
			for j := i; j < len(adm); j++ {
				sum += adm[j].cost
				if limit := b + (adm[j].at-adm[i].at)/T; sum > limit {
					return "admitted " + strconv.FormatInt(sum, 10) + " in " + time.Duration((adm[j].at-adm[i].at)*1000).String() + ", bound " + strconv.FormatInt(limit, 10)
				}
			}
		}
		return ""
	}
	w := p.Rate.Per.Milliseconds()
	per := map[int64]int64{}
	for _, a := range adm {
		idx := a.at / 1000 / w
		if per[idx] += a.cost; per[idx] > p.Rate.N {
			return "admitted " + strconv.FormatInt(per[idx], 10) + " in window " + strconv.FormatInt(idx, 10) + ", bound " + strconv.FormatInt(p.Rate.N, 10)
		}
	}
	return ""
}

// TestLeasesNeverExceedTheBound runs random schedules (seeded) of decisions
// and peeks on one subject through 1 to 5 instances with leases, on a shared
// fake clock: the admissions never exceed the algorithm's stated bound (as
// exact mode, run by the same schedules with no lease, never does), and once
// every lease has lapsed and been given back, the subject's remaining quota
// is exactly what the admitted requests alone leave (for GCRA across
// instances: never more, and less only by units that lapsed under other
// instances' charges).
func TestLeasesNeverExceedTheBound(t *testing.T) {
	addr := testenv.RedisAddr(t)
	c := newClient(t, addr)
	seeds := *leaseSeeds
	if testing.Short() {
		seeds = 8
	}
	start := time.Date(2026, 3, 1, 12, 0, 0, 250_500_000, time.UTC)
	for seed := range seeds {
		rng := rand.New(rand.NewPCG(uint64(seed), 0x1ea5e))
		n := 1 + rng.IntN(5)
		alg := []ratelimit.Algorithm{ratelimit.GCRA, ratelimit.Sliding, ratelimit.Fixed}[rng.IntN(3)]
		per := []time.Duration{10 * time.Second, time.Minute, time.Hour}[rng.IntN(3)]
		p := ratelimit.Policy{Name: "p", Rate: ratelimit.Rate{N: 5 + rng.Int64N(60), Per: per}, Algorithm: alg, Lease: true}
		if alg == ratelimit.GCRA && rng.IntN(2) == 0 {
			p.Burst = 1 + rng.Int64N(2*p.Rate.N)
		}
		lease := []time.Duration{0, 50 * time.Millisecond, 300 * time.Millisecond, time.Second, 5 * time.Second}[rng.IntN(5)]
		name := "seed=" + strconv.Itoa(seed) + "/" + alg.String() + "/" + p.Rate.String() + "/instances=" + strconv.Itoa(n) + "/lease=" + lease.String()
		t.Run(name, func(t *testing.T) {
			clock := ratelimittest.NewClock(start)
			prefix := testenv.RandomPrefix()
			var lims []*redislimit.Limiter
			for range n {
				l := newFakeTimeLimiter(t, c, redislimit.Options{Prefix: prefix, Lease: lease, HeartbeatInterval: -1, Timeout: 5 * time.Second}, clock.Now)
				lims = append(lims, l)
			}
			ctx := context.Background()
			var ref ratelimittest.Reference
			var adm []admission
			const subject = "ip:198.51.100.200"
			// Bursts of 1 to 30 decisions from one instance at one instant,
			// separated by short steps, long ones (up to twice the lease),
			// or none: leases get taken, spent late, lapse and go back
			// while other instances burst.
			for range 60 {
				switch r := rng.IntN(10); {
				case r < 6:
					clock.Advance(time.Duration(rng.Int64N(int64(per / 400))))
				case r < 8:
					clock.Advance(time.Duration(rng.Int64N(int64(2*lease + per/100))))
				}
				l := lims[rng.IntN(n)]
				for range 1 + rng.IntN(30) {
					it := ratelimit.Item{Policy: p, Cost: 1 + rng.Int64N(min(2, p.Limit()))}
					if rng.IntN(10) == 0 {
						var d ratelimit.Decision
						if err := l.Peek(ctx, &d, subject, it); err != nil {
							t.Fatal(err)
						}
						continue
					}
					var d ratelimit.Decision
					err := l.Decide(ctx, &d, subject, it)
					if err != nil || d.Degraded() {
						t.Fatalf("Decide: %+v, %v", d, err)
					}
					if d.Allowed {
						adm = append(adm, admission{clock.Now().UnixMicro(), it.Cost})
						ref.Decide(clock.Now(), subject, []ratelimit.Item{it}, false)
					}
				}
			}
			if msg := checkBound(p, adm); msg != "" {
				t.Fatalf("%d admissions: %s", len(adm), msg)
			}
			// Every lease lapses and goes back; then the quota is what the
			// admitted requests leave.
			clock.Advance(lease + time.Millisecond)
			for _, l := range lims {
				redislimit.GiveBackLapsed(l)
			}
			exact := p
			exact.Lease = false
			check := newFakeTimeLimiter(t, c, redislimit.Options{Prefix: prefix, HeartbeatInterval: -1, Timeout: 5 * time.Second, DenyCacheSize: -1}, clock.Now)
			var got ratelimit.Decision
			err := check.Peek(ctx, &got, subject, ratelimit.Item{Policy: exact})
			if err != nil {
				t.Fatal(err)
			}
			want := ref.Decide(clock.Now(), subject, []ratelimit.Item{{Policy: exact}}, true)
			g, w := got.Results[0].Remaining, want.Results[0].Remaining
			switch {
			case g > w:
				t.Errorf("after every lease lapsed: remaining %d, more than the %d the %d admitted requests leave", g, w, len(adm))
			case g < w && (p.Algorithm != ratelimit.GCRA || n == 1):
				t.Errorf("after every lease lapsed: remaining %d, want %d (what the %d admitted requests leave)", g, w, len(adm))
			case g < w:
				// GCRA across instances: units that lapsed unspent while
				// other instances' charges stacked on them stay charged
				// until time passes them (see lease.go).
				t.Logf("after every lease lapsed: remaining %d of the %d the admitted requests leave", g, w)
			}
		})
	}
}

// TestLeaseUnitsPassWithTime: a GCRA lease's units whose place in the TAT
// time has passed are not spent: by then time has given them back to
// everyone, and another instance may burst on them.
func TestLeaseUnitsPassWithTime(t *testing.T) {
	c := newClient(t, testenv.RedisAddr(t))
	clock := ratelimittest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	prefix := testenv.RandomPrefix()
	opts := redislimit.Options{Prefix: prefix, Lease: 10 * time.Second, HeartbeatInterval: -1, Timeout: 5 * time.Second, DenyCacheSize: -1}
	a := newFakeTimeLimiter(t, c, opts, clock.Now)
	opts.Lease = 0
	b := newFakeTimeLimiter(t, c, opts, clock.Now)
	p := ratelimit.Policy{Name: "p", Rate: ratelimit.Rate{N: 10, Per: 10 * time.Second}, Lease: true} // T = 1s
	ctx := context.Background()
	decide := func(l *redislimit.Limiter) bool {
		var d ratelimit.Decision
		err := l.Decide(ctx, &d, "s", ratelimit.Item{Policy: p})
		if err != nil {
			t.Fatal(err)
		}
		return d.Allowed
	}
	for range 5 { // a takes units ahead and keeps some
		decide(a)
	}
	if st := a.Stats(); st.LeaseHits == 0 {
		t.Fatalf("a holds no lease after 5 decisions: %+v", st)
	}
	// Every unit a holds has its place in the TAT before 7s: at 7.5s they
	// have all passed, and the bucket is full again for everyone.
	clock.Advance(7500 * time.Millisecond)
	admitted := 0
	for decide(b) {
		admitted++
	}
	for range 5 {
		if decide(a) {
			admitted++
		}
	}
	// At one instant, at most the burst.
	if admitted > 10 {
		t.Errorf("admitted %d at one instant, want at most the burst of 10", admitted)
	}
}

// BenchmarkHotSubject: one subject with a high limit, decided by 64
// goroutines through the same client, in exact mode and with leases.
func BenchmarkHotSubject(b *testing.B) {
	c := newClient(b, testenv.RedisAddr(b))
	for _, lease := range []time.Duration{0, time.Second} {
		b.Run("lease="+lease.String(), func(b *testing.B) {
			l := newLimiter(b, c, redislimit.Options{Prefix: testenv.RandomPrefix(), Lease: lease, HeartbeatInterval: -1, Timeout: time.Second})
			p := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 1 << 30, Per: time.Hour}, Lease: true}
			before := l.Stats().RedisCalls
			b.SetParallelism(32)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var d ratelimit.Decision
				for pb.Next() {
					if err := l.Decide(context.Background(), &d, "ip:hot", ratelimit.Item{Policy: p}); err != nil || !d.Allowed {
						b.Errorf("Decide: %+v, %v", d, err)
						return
					}
				}
			})
			b.ReportMetric(float64(l.Stats().RedisCalls-before)/float64(b.N), "calls/op")
		})
	}
}
