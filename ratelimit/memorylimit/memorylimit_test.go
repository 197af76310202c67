package memorylimit_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/memorylimit"
	"github.com/journalsvc/journal/ratelimit/ratelimittest"
)

func newLimiter(t *testing.T, clock *ratelimittest.Clock) ratelimit.Limiter {
	l := memorylimit.New(memorylimit.Options{Now: clock.Now})
	t.Cleanup(func() { l.Close() })
	return l
}

// newTestLimiter returns a limiter with opts on a fake clock that moves only
// when the test advances it, and without the background sweeper (a test
// sweeps when it means to), closed when the test ends.
func newTestLimiter(t *testing.T, opts memorylimit.Options) (*memorylimit.Limiter, *ratelimittest.Clock) {
	clock := ratelimittest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	opts.Now, opts.SweepInterval = clock.Now, -1
	l := memorylimit.New(opts)
	t.Cleanup(func() { l.Close() })
	return l, clock
}

func TestConformance(t *testing.T) {
	ratelimittest.Run(t, newLimiter)
}

var hourly = ratelimit.Policy{Name: "h", Rate: ratelimit.Rate{N: 2, Per: time.Hour}}

func TestFloodOfNewKeysCannotClearABlock(t *testing.T) {
	l, _ := newTestLimiter(t, memorylimit.Options{MaxKeys: 64 * 16})
	ctx := context.Background()
	// Block a victim's attacker key: 2 of 2 used.
	for i := 0; i < 2; i++ {
		if d, _ := ratelimittest.Call(l.Decide, ctx, "attacker", ratelimit.Item{Policy: hourly}); !d.Allowed {
			t.Fatalf("decision %d denied", i)
		}
	}
	// Flood 100x the capacity with fresh keys.
	for i := 0; i < 100*64*16; i++ {
		ratelimittest.Call(l.Decide, ctx, "flood:"+strconv.Itoa(i), ratelimit.Item{Policy: hourly})
	}
	if got, limit := l.Len(), 64*16; got > limit {
		t.Errorf("Len() = %d, want <= MaxKeys %d", got, limit)
	}
	if d, _ := ratelimittest.Call(l.Decide, ctx, "attacker", ratelimit.Item{Policy: hourly}); d.Allowed {
		t.Fatal("a flood of new keys evicted a blocked key")
	}
}

func TestEvictsBlockedNearestExpiryWhenAllBlocked(t *testing.T) {
	l, _ := newTestLimiter(t, memorylimit.Options{MaxKeys: 2 * 64}) // 2 keys per shard
	ctx := context.Background()
	pol := func(name string, per time.Duration) ratelimit.Item {
		return ratelimit.Item{Policy: ratelimit.Policy{Name: name, Rate: ratelimit.Rate{N: 1, Per: per}}}
	}
	// One subject, so one shard; every key is blocked after its first request.
	ratelimittest.Call(l.Decide, ctx, "s", pol("long", 10*time.Hour))
	ratelimittest.Call(l.Decide, ctx, "s", pol("short", time.Hour))
	ratelimittest.Call(l.Decide, ctx, "s", pol("new", 5*time.Hour)) // full and all blocked: evicts "short"
	if got := l.Len(); got != 2 {
		t.Errorf("Len() = %d, want 2", got)
	}
	for _, tc := range []struct {
		name    string
		per     time.Duration
		allowed bool
	}{{"long", 10 * time.Hour, false}, {"new", 5 * time.Hour, false}, {"short", time.Hour, true}} {
		d, _ := ratelimittest.Call(l.Peek, ctx, "s", pol(tc.name, tc.per))
		if d.Allowed != tc.allowed {
			t.Errorf("policy %s: Allowed = %v, want %v (only the blocked key nearest expiry is evicted)", tc.name, d.Allowed, tc.allowed)
		}
	}
}

func TestExpiredKeysAreReclaimed(t *testing.T) {
	l, clock := newTestLimiter(t, memorylimit.Options{})
	ctx := context.Background()
	for _, a := range []ratelimit.Algorithm{ratelimit.GCRA, ratelimit.Sliding, ratelimit.Fixed} {
		p := ratelimit.Policy{Name: a.String(), Rate: ratelimit.Rate{N: 10, Per: time.Minute}, Algorithm: a}
		for i := 0; i < 100; i++ {
			ratelimittest.Call(l.Decide, ctx, "k"+strconv.Itoa(i), ratelimit.Item{Policy: p})
		}
	}
	clock.Advance(time.Minute + time.Second) // GCRA and fixed expired; sliding's count still weighs
	l.Sweep()
	if got := l.Len(); got != 100 {
		t.Errorf("after 61s: Len() = %d, want 100 (sliding keys only)", got)
	}
	clock.Advance(time.Minute)
	l.Sweep()
	if got := l.Len(); got != 0 {
		t.Errorf("after 121s: Len() = %d, want 0", got)
	}
}

// TestMillionKeysMemory measures heap in use for 1,000,000 distinct keys and
// after they expire: a key takes a 32-byte slot and an 8-byte entry in an
// index at least half full, so at most 46 MiB plus the shards' own memory;
// it is returned after expiry.
func TestMillionKeysMemory(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocates ~50 MB; slow and unrepresentative under -race")
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	before := heap()
	l, clock := newTestLimiter(t, memorylimit.Options{MaxKeys: 2_000_000})
	ctx := context.Background()
	p := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 100, Per: time.Minute}}
	var d ratelimit.Decision
	for i := 0; i < 1_000_000; i++ {
		l.Decide(ctx, &d, "ip:10."+strconv.Itoa(i>>16)+"."+strconv.Itoa(i>>8&255)+"."+strconv.Itoa(i&255), ratelimit.Item{Policy: p})
	}
	full := heap()
	if got := l.Len(); got != 1_000_000 {
		t.Fatalf("Len() = %d, want 1,000,000", got)
	}
	clock.Advance(time.Minute)
	l.Sweep()
	after := heap()
	mb := func(b uint64) float64 { return float64(b) / (1 << 20) }
	t.Logf("heap in use: before %.1f MiB, 1M keys %.1f MiB (+%.1f), after expiry+sweep %.1f MiB", mb(before), mb(full), mb(full-before), mb(after))
	if grown := full - before; grown > 50<<20 {
		t.Errorf("1M keys use %.1f MiB, want at most 50 MiB", mb(grown))
	}
	if after > before+(10<<20) {
		t.Errorf("after expiry the heap is %.1f MiB, want it back near %.1f MiB", mb(after), mb(before))
	}
	runtime.KeepAlive(l)
}

func TestCloseIsIdempotent(t *testing.T) {
	l := memorylimit.New(memorylimit.Options{SweepInterval: time.Millisecond})
	time.Sleep(5 * time.Millisecond)
	l.Close()
	l.Close()
	if d, err := ratelimittest.Call(l.Decide, context.Background(), "x", ratelimit.Item{Policy: hourly}); err != nil || !d.Allowed {
		t.Errorf("Decide after Close = %+v, %v", d, err)
	}
}

// TestDecideAllocatesNothing: a decision written into a Decision that has
// room for its results allocates nothing, for one item and for several,
// admitted or denied, decided or peeked.
func TestDecideAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	l := memorylimit.New(memorylimit.Options{})
	defer l.Close()
	ctx := context.Background()
	p := ratelimit.Policy{Name: "p", Rate: ratelimit.Rate{N: 1 << 30, Per: time.Hour}}
	q := ratelimit.Policy{Name: "q", Rate: ratelimit.Rate{N: 5, Per: time.Hour}, Algorithm: ratelimit.Sliding}
	items := []ratelimit.Item{{Policy: p}, {Policy: q}}
	var d ratelimit.Decision
	for _, tc := range []struct {
		name    string
		decide  func()
		allowed bool // the last decision's
	}{
		{"one item", func() { l.Decide(ctx, &d, "ip:192.0.2.1", ratelimit.Item{Policy: p}) }, true},
		{"two items", func() { l.Decide(ctx, &d, "ip:192.0.2.2", items...) }, false},
		{"peek", func() { l.Peek(ctx, &d, "ip:192.0.2.3", items...) }, true},
		{"variadic literal", func() { l.Decide(ctx, &d, "ip:192.0.2.4", ratelimit.Item{Policy: p}, ratelimit.Item{Policy: q}) }, false},
	} {
		if allocs := testing.AllocsPerRun(100, tc.decide); allocs != 0 {
			t.Errorf("%s: %.1f allocations per decision, want 0", tc.name, allocs)
		}
		if len(d.Results) == 0 || d.Allowed != tc.allowed {
			t.Errorf("%s: the last decision is %+v, want allowed %v", tc.name, d, tc.allowed)
		}
	}
}

// BenchmarkDecide: parallel decisions over 10,000 keys, every one admitted,
// each goroutine reusing one Decision and walking the keys in order (or, in
// "random", picking each key at random); and one flooded key.
func BenchmarkDecide(b *testing.B) {
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = fmt.Sprintf("ip:10.0.%d.%d", i>>8, i&255)
	}
	run := func(b *testing.B, a ratelimit.Algorithm, random bool) {
		l := memorylimit.New(memorylimit.Options{})
		defer l.Close()
		p := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 1 << 30, Per: time.Second}, Algorithm: a}
		ctx := context.Background()
		var d ratelimit.Decision
		for _, k := range keys {
			l.Decide(ctx, &d, k, ratelimit.Item{Policy: p})
		}
		var ctr atomic.Uint64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			x := ctr.Add(7919)
			var d ratelimit.Decision
			for pb.Next() {
				var i uint64
				if random { // xorshift64*
					x ^= x >> 12
					x ^= x << 25
					x ^= x >> 27
					i = x * 0x2545f4914f6cdd1d >> 32
				} else {
					x++
					i = x
				}
				l.Decide(ctx, &d, keys[i%uint64(len(keys))], ratelimit.Item{Policy: p})
				if !d.Allowed {
					b.Fatal("denied")
				}
			}
		})
	}
	for _, a := range []ratelimit.Algorithm{ratelimit.GCRA, ratelimit.Sliding, ratelimit.Fixed} {
		b.Run(a.String()+"/10000keys", func(b *testing.B) { run(b, a, false) })
	}
	b.Run("gcra/10000keys/random", func(b *testing.B) { run(b, ratelimit.GCRA, true) })
	b.Run("gcra/flooded", func(b *testing.B) {
		l := memorylimit.New(memorylimit.Options{})
		defer l.Close()
		p := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 10, Per: time.Hour}}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			var d ratelimit.Decision
			for pb.Next() {
				l.Decide(ctx, &d, "ip:flood", ratelimit.Item{Policy: p})
			}
		})
	})
}
