package memorylimit_test

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/memorylimit"
)

// TestConcurrentDecisionsStayExact: goroutines decide one- and two-policy
// decisions on a few subjects while another inserts thousands of keys
// (growing every index and the arena, so decisions meet index rebuilds),
// resets them (freeing slots for reuse) and sweeps. The clock stands still, so
// every subject admits exactly the limit of its narrow policy, and its wide
// policy is charged exactly for the two-policy decisions admitted: nothing
// is lost or counted twice, and all-or-nothing holds.
func TestConcurrentDecisionsStayExact(t *testing.T) {
	const (
		subjects   = 6
		goroutines = 8
		limit      = 40
	)
	perGoroutine, churnKeys := 1500, 30000
	if raceEnabled {
		perGoroutine, churnKeys = 400, 4000
	}
	for _, alg := range []ratelimit.Algorithm{ratelimit.GCRA, ratelimit.Sliding, ratelimit.Fixed} {
		t.Run(alg.String(), func(t *testing.T) {
			l, _ := newTestLimiter(t, memorylimit.Options{})
			narrow := ratelimit.Policy{Name: "n", Rate: ratelimit.Rate{N: limit, Per: time.Hour}, Algorithm: alg}
			wide := ratelimit.Policy{Name: "w", Rate: ratelimit.Rate{N: 1 << 20, Per: time.Hour}, Algorithm: alg}
			churn := ratelimit.Policy{Name: "c", Rate: ratelimit.Rate{N: 5, Per: time.Hour}, Algorithm: alg}
			var admitted, pairs [subjects]atomic.Int64
			ctx := context.Background()

			var wg sync.WaitGroup
			var churned atomic.Bool
			wg.Go(func() {
				defer churned.Store(true)
				var d ratelimit.Decision
				for n := range churnKeys {
					subject := "churn:" + strconv.Itoa(n)
					l.Decide(ctx, &d, subject, ratelimit.Item{Policy: churn})
					if n%3 == 0 {
						l.Reset(ctx, subject, churn.Name)
					}
					if n%500 == 499 {
						l.Sweep()
					}
				}
			})
			for g := range goroutines {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(g), 1))
					var d ratelimit.Decision
					for n := 0; n < perGoroutine || !churned.Load(); n++ {
						i := rng.IntN(subjects)
						items := []ratelimit.Item{{Policy: narrow}}
						if rng.IntN(2) == 0 {
							items = append(items, ratelimit.Item{Policy: wide})
						}
						if err := l.Decide(ctx, &d, "s:"+strconv.Itoa(i), items...); err != nil {
							t.Error(err)
							return
						}
						if d.Allowed {
							admitted[i].Add(1)
							if len(items) == 2 {
								pairs[i].Add(1)
							}
						}
					}
				})
			}
			wg.Wait()
			for i := range subjects {
				if got := admitted[i].Load(); got != limit {
					t.Errorf("subject %d admitted %d, want exactly %d", i, got, limit)
				}
				var d ratelimit.Decision
				if err := l.Peek(ctx, &d, "s:"+strconv.Itoa(i), ratelimit.Item{Policy: wide}); err != nil {
					t.Fatal(err)
				}
				if got, want := d.Results[0].Remaining, wide.Rate.N-1-pairs[i].Load(); got != want {
					t.Errorf("subject %d: wide policy has %d left, want %d (charged once per admitted pair)", i, got, want)
				}
			}
		})
	}
}

// TestConcurrentFloodCannotClearBlocks: goroutines flood a small limiter
// with new keys while blocked keys are checked again and again; no blocked
// key is evicted, and the limiter stays within its bound.
func TestConcurrentFloodCannotClearBlocks(t *testing.T) {
	const maxKeys = 64 * 8
	l, _ := newTestLimiter(t, memorylimit.Options{MaxKeys: maxKeys})
	ctx := context.Background()
	p := ratelimit.Policy{Name: "p", Rate: ratelimit.Rate{N: 2, Per: time.Hour}}
	victims := make([]string, 32)
	var d ratelimit.Decision
	for i := range victims {
		victims[i] = "victim:" + strconv.Itoa(i)
		for range 2 {
			l.Decide(ctx, &d, victims[i], ratelimit.Item{Policy: p})
		}
	}
	flood := 20000
	if raceEnabled {
		flood = 4000
	}
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 4 {
		wg.Go(func() {
			var d ratelimit.Decision
			for n := next.Add(1); n < int64(flood); n = next.Add(1) {
				l.Decide(ctx, &d, "flood:"+strconv.FormatInt(n, 10), ratelimit.Item{Policy: p})
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			var d ratelimit.Decision
			for next.Load() < int64(flood) {
				for _, v := range victims {
					if l.Peek(ctx, &d, v, ratelimit.Item{Policy: p}); d.Allowed {
						t.Errorf("%s admits during the flood: its block was evicted", v)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if got := l.Len(); got > maxKeys {
		t.Errorf("Len() = %d, want <= %d", got, maxKeys)
	}
	for _, v := range victims {
		if l.Decide(ctx, &d, v, ratelimit.Item{Policy: p}); d.Allowed {
			t.Errorf("%s admitted after the flood: its block was evicted", v)
		}
	}
}
