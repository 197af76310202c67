package backend_test

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/internal/backend"
)

func TestCombine(t *testing.T) {
	p := func(name string, shadow bool) ratelimit.Item {
		return ratelimit.Item{Policy: ratelimit.Policy{Name: name, Shadow: shadow}}
	}
	items := []ratelimit.Item{p("a", false), p("b", false), p("c", true), p("d", false)}
	d := ratelimit.Decision{Allowed: true, Results: []ratelimit.Result{
		{Allowed: true},
		{RetryAfter: 3 * time.Second},
		{RetryAfter: time.Hour},
		{RetryAfter: 7 * time.Second},
	}}
	backend.Combine(&d, items)
	if d.Allowed || d.RetryAfter != 7*time.Second {
		t.Errorf("Combine = allowed %v retry %v, want denied with the latest retry 7s (shadow ignored)", d.Allowed, d.RetryAfter)
	}
	d = ratelimit.Decision{RetryAfter: time.Minute, Results: []ratelimit.Result{{RetryAfter: time.Hour}}}
	if backend.Combine(&d, items[2:3]); !d.Allowed || d.RetryAfter != 0 {
		t.Errorf("a shadow denial blocked: %+v", d)
	}
}

func TestResultsReusesCapacity(t *testing.T) {
	d := ratelimit.Decision{Results: make([]ratelimit.Result, 1, 3)}
	first := &d.Results[:1][0]
	if r := backend.Results(&d, 3); len(r) != 3 || &r[0] != first || len(d.Results) != 3 {
		t.Errorf("Results(3) with capacity 3 did not reuse it")
	}
	if r := backend.Results(&d, 4); len(r) != 4 || &r[0] == first {
		t.Errorf("Results(4) with capacity 3 = %d results in the same array", len(r))
	}
	d.Allowed = true
	backend.Fail(&d)
	if d.Allowed || len(d.Results) != 0 || cap(d.Results) != 4 {
		t.Errorf("after Fail: %+v (cap %d), want no results, not allowed, capacity kept", d, cap(d.Results))
	}
}

func TestValidateItems(t *testing.T) {
	ok := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 10, Per: time.Minute}}
	for _, tc := range []struct {
		name  string
		items []ratelimit.Item
		valid bool
	}{
		{"one", []ratelimit.Item{{Policy: ok}}, true},
		{"none", nil, false},
		{"twice", []ratelimit.Item{{Policy: ok}, {Policy: ok}}, false},
		{"negative cost", []ratelimit.Item{{Policy: ok, Cost: -1}}, false},
		{"cost over the limit", []ratelimit.Item{{Policy: ok, Cost: 11}}, false},
		{"cost of the whole limit", []ratelimit.Item{{Policy: ok, Cost: 10}}, true},
		{"invalid policy", []ratelimit.Item{{Policy: ratelimit.Policy{Name: "x"}}}, false},
	} {
		err := backend.ValidateItems(tc.items)
		if (err == nil) != tc.valid || (err != nil && !errors.Is(err, ratelimit.ErrInvalid)) {
			t.Errorf("%s: ValidateItems = %v, want valid %v (errors wrap ErrInvalid)", tc.name, err, tc.valid)
		}
	}
}

// TestGCRAMatchesTheFormulas checks Spec.Eval's GCRA, which divides once,
// against the formulas written plainly: the remaining quota
// floor((tau - (newTAT - now)) / t) and the reset diff mod t (or t).
func TestGCRAMatchesTheFormulas(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pers := []time.Duration{time.Second, 3 * time.Second, time.Minute, 7 * time.Hour}
	for range 20000 {
		p := ratelimit.Policy{Name: "g", Rate: ratelimit.Rate{N: 1 + rng.Int64N(1000), Per: pers[rng.IntN(len(pers))]}, Burst: rng.Int64N(50)}
		iv, lim := p.EmissionInterval().Microseconds(), p.Limit()
		tau := lim * iv
		now := int64(1_780_000_000_000_000) + rng.Int64N(1_000_000)
		st := backend.State{T: now - tau + rng.Int64N(2*tau+1)}
		cost := rng.Int64N(lim + 1)
		var r ratelimit.Result
		next, exp := backend.Eval(&p, &r, st, now, cost)

		tat := max(st.T, now)
		newTAT := tat + cost*iv
		if newTAT-tau > now {
			if r.Allowed || next != st || exp != tat {
				t.Fatalf("%+v cost %d: admitted %v, next %+v, exp %d; want denied, unchanged, expiring at the TAT", p, cost, r.Allowed, next, exp)
			}
			continue
		}
		diff := newTAT - now
		reset := int64(0)
		if diff > 0 {
			reset = iv
			if diff%iv != 0 {
				reset = diff % iv
			}
		}
		want := ratelimit.Result{Allowed: true, Remaining: (tau - diff) / iv, ResetAfter: time.Duration(reset) * time.Microsecond}
		if r != want || next.T != newTAT || exp != newTAT {
			t.Fatalf("%+v at TAT-now %d cost %d: %+v (TAT %d, exp %d); want %+v (TAT %d)", p, st.T-now, cost, r, next.T, exp, want, newTAT)
		}
	}
}
