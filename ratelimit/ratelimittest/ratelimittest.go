// Package ratelimittest is the conformance suite every [ratelimit.Limiter]
// backend passes: the same decisions as the reference semantics
// (the reference semantics in ratelimit/internal/backend) for the same calls at the same instants, the
// all-or-nothing multi-policy contract, Peek, Reset, shadow policies, and the
// bounds of each algorithm as properties under randomized (seeded) schedules.
//
// A backend's test calls [Run] with a constructor that wires the suite's
// [Clock] in as the backend's only time source: memorylimit through
// Options.Now, redislimit through an unexported test hook that passes the time
// to its script (production always uses Redis TIME).
package ratelimittest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand"
	"sync"
	"testing"
	"time"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/internal/backend"
)

// Clock is a fake clock, safe for concurrent use. The zero value is not
// usable; create it with [NewClock].
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock set to t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Set sets the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// start is the suite's epoch: a little after a minute and hour boundary, with
// a fractional millisecond, so aligned windows and rounding are exercised.
var start = time.Date(2026, 3, 1, 12, 0, 0, 250_500_000, time.UTC)

// NewLimiter builds the backend under test. It must read time only from clock
// and keep its state private to t (e.g. a random key prefix), and it should
// release its resources with t.Cleanup.
type NewLimiter func(t *testing.T, clock *Clock) ratelimit.Limiter

// Run runs the conformance suite as subtests of t.
func Run(t *testing.T, newLimiter NewLimiter) {
	tests := []struct {
		name string
		fn   func(*testing.T, NewLimiter)
	}{
		{"Scripted", testScripted},
		{"MatchesReference", testMatchesReference},
		{"AllowN", testAllowN},
		{"PeekConsumesNothing", testPeek},
		{"Reset", testReset},
		{"AllOrNothing", testAllOrNothing},
		{"Shadow", testShadow},
		{"InvalidItems", testInvalid},
		{"GCRABound", testGCRABound},
		{"SlidingBound", testSlidingBound},
		{"FixedBound", testFixedBound},
		{"FloodAdmitsExactlyN", testFlood},
		{"RetryAfterHonoured", testRetryHonoured},
		{"ReusesTheDecision", testReusesDecision},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newLimiter) })
	}
}

// Subject returns a random subject, so that runs never share state.
func Subject(tb testing.TB) string {
	tb.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatal(err)
	}
	return "test:" + hex.EncodeToString(b[:])
}

func policy(name string, a ratelimit.Algorithm, n int64, per time.Duration) ratelimit.Policy {
	return ratelimit.Policy{Name: name, Rate: ratelimit.Rate{N: n, Per: per}, Algorithm: a}
}

var algorithms = []ratelimit.Algorithm{ratelimit.GCRA, ratelimit.Sliding, ratelimit.Fixed}

// Call makes the decision of decide (a Limiter's Decide or Peek) into a new
// Decision and returns it, for tests that want decisions as values.
func Call(decide func(context.Context, *ratelimit.Decision, string, ...ratelimit.Item) error,
	ctx context.Context, subject string, items ...ratelimit.Item,
) (ratelimit.Decision, error) {
	var d ratelimit.Decision
	err := decide(ctx, &d, subject, items...)
	return d, err
}

func decide(tb testing.TB, l ratelimit.Limiter, subject string, items ...ratelimit.Item) ratelimit.Decision {
	tb.Helper()
	return mustCall(tb, "Decide", l.Decide, subject, items)
}

func peek(tb testing.TB, l ratelimit.Limiter, subject string, items ...ratelimit.Item) ratelimit.Decision {
	tb.Helper()
	return mustCall(tb, "Peek", l.Peek, subject, items)
}

// mustCall is [Call] for the suite: it fails the test if decide (named op in
// messages) returns an error or not one result per item.
func mustCall(tb testing.TB, op string, decide func(context.Context, *ratelimit.Decision, string, ...ratelimit.Item) error,
	subject string, items []ratelimit.Item,
) ratelimit.Decision {
	tb.Helper()
	d, err := Call(decide, context.Background(), subject, items...)
	if err != nil {
		tb.Fatalf("%s(%q): %v", op, subject, err)
	}
	if len(d.Results) != len(items) {
		tb.Fatalf("%s(%q) wrote %d results for %d items", op, subject, len(d.Results), len(items))
	}
	return d
}

func one(p ratelimit.Policy) ratelimit.Item { return ratelimit.Item{Policy: p} }

// testScripted checks hand-computed decisions of each algorithm.
func testScripted(t *testing.T, newLimiter NewLimiter) {
	type step struct {
		advance   time.Duration
		cost      int64
		allowed   bool
		remaining int64
		retry     time.Duration
		reset     time.Duration
	}
	ms := time.Millisecond
	// The clock starts at 12:00:00.2505; windows are aligned to whole seconds.
	tests := []struct {
		name  string
		p     ratelimit.Policy
		steps []step
	}{
		{"gcra 10/1s", policy("g", ratelimit.GCRA, 10, time.Second), []step{
			{0, 1, true, 9, 0, 100 * ms},
			{0, 8, true, 1, 0, 100 * ms},
			{0, 1, true, 0, 0, 100 * ms},
			{0, 1, false, 0, 100 * ms, 100 * ms},
			{40 * ms, 1, false, 0, 60 * ms, 60 * ms},
			{60 * ms, 1, true, 0, 0, 100 * ms},
			{250 * ms, 3, false, 0, 50 * ms, 50 * ms},
			{50 * ms, 3, true, 0, 0, 100 * ms},
			{2 * time.Second, 1, true, 9, 0, 100 * ms},
		}},
		{"gcra 3/1s rounds the interval up", policy("g", ratelimit.GCRA, 3, time.Second), []step{
			{0, 3, true, 0, 0, 333334 * time.Microsecond},
			{0, 1, false, 0, 333334 * time.Microsecond, 333334 * time.Microsecond},
		}},
		{"fixed 3/1s", policy("f", ratelimit.Fixed, 3, time.Second), []step{
			{0, 2, true, 1, 0, 750 * ms},
			{0, 1, true, 0, 0, 750 * ms},
			{100 * ms, 1, false, 0, 650 * ms, 650 * ms},
			{650 * ms, 3, true, 0, 0, time.Second},
			{999 * ms, 1, false, 0, 1 * ms, 1 * ms},
			{1 * ms, 1, true, 2, 0, time.Second},
		}},
		{"sliding 4/1s", policy("s", ratelimit.Sliding, 4, time.Second), []step{
			// 12:00:00.2505: window 0 of this second, elapsed 250ms.
			{0, 4, true, 0, 0, 750 * ms},
			{0, 1, false, 0, 1000 * ms, 750 * ms}, // next window: prev 4 weighs 4*(1000-e)/1000 <= 3 at e=250
			// 12:00:01.2505: prev=4, elapsed 250: weighted ceil(3) = 3, room 1.
			{1000 * ms, 1, true, 0, 0, 750 * ms},
			// prev=4, curr=1: cost 1 needs 4*(1000-e) <= 2000: e >= 500.
			{0, 1, false, 0, 250 * ms, 750 * ms},
			{250 * ms, 1, true, 0, 0, 500 * ms},
			// 12:00:02.2505: prev=2 (window 1), elapsed 250: weighted ceil(1.5) = 2, room 2.
			{750 * ms, 2, true, 0, 0, 750 * ms},
			// prev=2, curr=2: cost 1 needs 2*(1000-e) <= 1000: e >= 500.
			{0, 1, false, 0, 250 * ms, 750 * ms},
			// 12:00:02.5005: admitted exactly at the retry time.
			{250 * ms, 1, true, 0, 0, 500 * ms},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := NewClock(start)
			l := newLimiter(t, clock)
			subject := Subject(t)
			for i, s := range tc.steps {
				clock.Advance(s.advance)
				d := decide(t, l, subject, ratelimit.Item{Policy: tc.p, Cost: s.cost})
				r := d.Results[0]
				if r.Allowed != s.allowed || r.Remaining != s.remaining || r.RetryAfter != s.retry || r.ResetAfter != s.reset {
					t.Errorf("step %d (cost %d at +%v): got allowed=%v remaining=%d retry=%v reset=%v, want %v %d %v %v",
						i, s.cost, clock.Now().Sub(start), r.Allowed, r.Remaining, r.RetryAfter, r.ResetAfter,
						s.allowed, s.remaining, s.retry, s.reset)
				}
				if d.Allowed != s.allowed || (!s.allowed && d.RetryAfter != s.retry) {
					t.Errorf("step %d: decision allowed=%v retry=%v, want %v %v", i, d.Allowed, d.RetryAfter, s.allowed, s.retry)
				}
				if r.Degraded {
					t.Errorf("step %d: result is Degraded", i)
				}
			}
		})
	}
}

// Reference is the reference model of a backend: a map of states driven by
// the reference semantics with the all-or-nothing rule. The zero value is
// empty and ready; it is not safe for concurrent use.
type Reference struct {
	states map[string]refState
}

type refState struct {
	st      backend.State
	expires int64
}

// Decide returns the decision a conforming backend makes at now.
func (m *Reference) Decide(now time.Time, subject string, items []ratelimit.Item, peek bool) ratelimit.Decision {
	if m.states == nil {
		m.states = make(map[string]refState)
	}
	us := now.UnixMicro()
	d := ratelimit.Decision{Results: make([]ratelimit.Result, len(items))}
	results := d.Results
	prev := make([]backend.State, len(items))
	nexts := make([]refState, len(items))
	for i, it := range items {
		s, ok := m.states[subject+"\x00"+it.Policy.Name]
		if !ok || s.expires <= us {
			s = refState{}
		}
		prev[i] = s.st
		var r ratelimit.Result
		next, exp := backend.Eval(&it.Policy, &r, s.st, us, costOf(it))
		results[i], nexts[i] = r, refState{next, exp}
	}
	backend.Combine(&d, items)
	if !d.Allowed {
		backend.Uncharged(results, items, prev, us)
		return d
	}
	if !peek {
		for i, it := range items {
			if results[i].Allowed {
				m.states[subject+"\x00"+it.Policy.Name] = nexts[i]
			}
		}
	}
	return d
}

// Reset forgets one key.
func (m *Reference) Reset(subject, policy string) { delete(m.states, subject+"\x00"+policy) }

func costOf(it ratelimit.Item) int64 {
	if it.Cost == 0 {
		return 1
	}
	return it.Cost
}

// DiffDecision describes how got differs from want ("" if equal).
func DiffDecision(got, want ratelimit.Decision) string {
	return diffDecision(&got, &want)
}

func diffDecision(got, want *ratelimit.Decision) string {
	if got.Allowed != want.Allowed || got.RetryAfter != want.RetryAfter || len(got.Results) != len(want.Results) {
		return fmt.Sprintf("decision allowed=%v retry=%v results=%d, want allowed=%v retry=%v results=%d",
			got.Allowed, got.RetryAfter, len(got.Results), want.Allowed, want.RetryAfter, len(want.Results))
	}
	for i := range got.Results {
		g, w := got.Results[i], want.Results[i]
		if g != w {
			return fmt.Sprintf("result %d: got %+v, want %+v", i, g, w)
		}
	}
	return ""
}

// testMatchesReference drives the backend and the reference model with the
// same random schedule of decisions, peeks and resets over several subjects
// and policies, and requires identical answers.
func testMatchesReference(t *testing.T, newLimiter NewLimiter) {
	policies := []ratelimit.Policy{
		{Name: "g", Rate: ratelimit.Rate{N: 5, Per: time.Second}},
		{Name: "gb", Rate: ratelimit.Rate{N: 7, Per: 3 * time.Second}, Burst: 3},
		{Name: "s", Rate: ratelimit.Rate{N: 6, Per: 2 * time.Second}, Algorithm: ratelimit.Sliding},
		{Name: "f", Rate: ratelimit.Rate{N: 4, Per: time.Second}, Algorithm: ratelimit.Fixed},
		{Name: "sh", Rate: ratelimit.Rate{N: 2, Per: time.Second}, Shadow: true},
		{Name: "fs", Rate: ratelimit.Rate{N: 3, Per: time.Second}, Algorithm: ratelimit.Sliding, Shadow: true},
	}
	for seed := int64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			clock := NewClock(start)
			l := newLimiter(t, clock)
			var ref Reference
			rng := mrand.New(mrand.NewSource(seed))
			subjects := []string{Subject(t), Subject(t), Subject(t)}
			for step := 0; step < 600; step++ {
				clock.Advance(time.Duration(rng.Int63n(int64(150 * time.Millisecond))))
				subject := subjects[rng.Intn(len(subjects))]
				if rng.Intn(40) == 0 {
					p := policies[rng.Intn(len(policies))]
					if err := l.Reset(context.Background(), subject, p.Name); err != nil {
						t.Fatalf("Reset: %v", err)
					}
					ref.Reset(subject, p.Name)
					continue
				}
				perm := rng.Perm(len(policies))[:1+rng.Intn(3)]
				items := make([]ratelimit.Item, len(perm))
				for i, j := range perm {
					p := policies[j]
					items[i] = ratelimit.Item{Policy: p, Cost: rng.Int63n(min(p.Limit(), 3) + 1)}
				}
				isPeek := rng.Intn(5) == 0
				want := ref.Decide(clock.Now(), subject, items, isPeek)
				var got ratelimit.Decision
				if isPeek {
					got = peek(t, l, subject, items...)
				} else {
					got = decide(t, l, subject, items...)
				}
				if diff := DiffDecision(got, want); diff != "" {
					t.Fatalf("step %d (peek=%v, +%v): %s", step, isPeek, clock.Now().Sub(start), diff)
				}
			}
		})
	}
}

// forEachAlgorithm runs test once per algorithm, in a subtest named after
// it, with a new limiter whose clock is set to start.
func forEachAlgorithm(t *testing.T, newLimiter NewLimiter, test func(t *testing.T, a ratelimit.Algorithm, l ratelimit.Limiter, clock *Clock)) {
	for _, a := range algorithms {
		t.Run(a.String(), func(t *testing.T) {
			clock := NewClock(start)
			test(t, a, newLimiter(t, clock), clock)
		})
	}
}

func testAllowN(t *testing.T, newLimiter NewLimiter) {
	forEachAlgorithm(t, newLimiter, func(t *testing.T, a ratelimit.Algorithm, l ratelimit.Limiter, clock *Clock) {
		subject := Subject(t)
		p := policy("n", a, 10, time.Hour)
		ctx := context.Background()
		r, err := ratelimit.AllowN(ctx, l, subject, p, 7)
		if err != nil || !r.Allowed || r.Remaining != 3 {
			t.Fatalf("AllowN(7) = %+v, %v; want allowed with 3 remaining", r, err)
		}
		r, err = ratelimit.AllowN(ctx, l, subject, p, 4)
		if err != nil || r.Allowed || r.RetryAfter <= 0 {
			t.Fatalf("AllowN(4) = %+v, %v; want denied with a retry", r, err)
		}
		r, err = ratelimit.Allow(ctx, l, subject, p)
		if err != nil || !r.Allowed || r.Remaining != 2 {
			t.Fatalf("Allow = %+v, %v; want allowed with 2 remaining (the denied AllowN consumed nothing)", r, err)
		}
		r, err = ratelimit.AllowN(ctx, l, subject, p, 2)
		if err != nil || !r.Allowed || r.Remaining != 0 {
			t.Fatalf("AllowN(2) = %+v, %v; want allowed with 0 remaining", r, err)
		}
	})
}

func testPeek(t *testing.T, newLimiter NewLimiter) {
	forEachAlgorithm(t, newLimiter, func(t *testing.T, a ratelimit.Algorithm, l ratelimit.Limiter, clock *Clock) {
		subject := Subject(t)
		it := one(policy("p", a, 3, time.Hour))
		for i := 0; i < 10; i++ {
			if d := peek(t, l, subject, it); !d.Allowed || d.Results[0].Remaining != 2 {
				t.Fatalf("Peek %d on a fresh key = %+v, want allowed with 2 remaining", i, d)
			}
		}
		for i := 0; i < 3; i++ {
			decide(t, l, subject, it)
		}
		want := decide(t, l, subject, it)
		if want.Allowed {
			t.Fatalf("4th Decide of 3/h admitted")
		}
		for i := 0; i < 3; i++ {
			if diff := DiffDecision(peek(t, l, subject, it), want); diff != "" {
				t.Fatalf("Peek after the limit: %s", diff)
			}
		}
	})
}

func testReset(t *testing.T, newLimiter NewLimiter) {
	forEachAlgorithm(t, newLimiter, func(t *testing.T, a ratelimit.Algorithm, l ratelimit.Limiter, clock *Clock) {
		subject, other := Subject(t), Subject(t)
		p, q := policy("a", a, 2, time.Hour), policy("b", a, 2, time.Hour)
		for i := 0; i < 2; i++ {
			decide(t, l, subject, one(p), one(q))
			decide(t, l, other, one(p))
		}
		if err := l.Reset(context.Background(), subject, "a"); err != nil {
			t.Fatalf("Reset: %v", err)
		}
		if d := decide(t, l, subject, one(p)); !d.Allowed || d.Results[0].Remaining != 1 {
			t.Errorf("after Reset: %+v, want allowed with 1 remaining", d.Results[0])
		}
		if d := decide(t, l, subject, one(q)); d.Allowed {
			t.Errorf("Reset of policy a also reset policy b")
		}
		if d := decide(t, l, other, one(p)); d.Allowed {
			t.Errorf("Reset of one subject also reset another")
		}
		if err := l.Reset(context.Background(), Subject(t), "never-used"); err != nil {
			t.Errorf("Reset of an unknown key: %v", err)
		}
	})
}

func testAllOrNothing(t *testing.T, newLimiter NewLimiter) {
	clock := NewClock(start)
	l := newLimiter(t, clock)
	subject := Subject(t)
	small := policy("small", ratelimit.GCRA, 2, time.Minute) // retry 30s once empty
	big := policy("big", ratelimit.Sliding, 100, time.Hour)
	fixed := policy("fixed", ratelimit.Fixed, 3, time.Hour) // retry: to the hour's end
	items := []ratelimit.Item{one(big), one(small), one(fixed)}
	for i := 0; i < 2; i++ {
		if d := decide(t, l, subject, items...); !d.Allowed {
			t.Fatalf("decision %d denied: %+v", i, d)
		}
	}
	d := decide(t, l, subject, items...)
	if d.Allowed {
		t.Fatalf("3rd decision admitted beyond small's 2")
	}
	if v := d.Violated(items); len(v) != 1 || v[0].Name != "small" {
		t.Fatalf("Violated() = %+v, want only small", v)
	}
	if got, want := d.RetryAfter, 30*time.Second; got != want {
		t.Errorf("RetryAfter = %v, want %v", got, want)
	}
	if r := d.Results[0]; !r.Allowed || r.Remaining != 98 {
		t.Errorf("big result on a denied decision = %+v, want allowed with 98 remaining (nothing consumed)", r)
	}
	// None consumed: big and fixed still have what two decisions left.
	if d := decide(t, l, subject, one(fixed)); !d.Allowed || d.Results[0].Remaining != 0 {
		t.Errorf("fixed after a denied decision = %+v, want allowed with 0 remaining", d.Results[0])
	}
	// Now both small and fixed deny: both are reported; the retry is the latest.
	clock.Advance(10 * time.Second)
	d = decide(t, l, subject, items...)
	if v := d.Violated(items); len(v) != 2 || v[0].Name != "small" || v[1].Name != "fixed" {
		t.Fatalf("Violated() = %+v, want small and fixed", v)
	}
	latest := max(d.Results[1].RetryAfter, d.Results[2].RetryAfter)
	if d.RetryAfter != latest || d.RetryAfter != d.Results[2].RetryAfter || d.Results[1].RetryAfter != 20*time.Second {
		t.Errorf("RetryAfter = %v (small %v, fixed %v), want the latest (fixed's)", d.RetryAfter, d.Results[1].RetryAfter, d.Results[2].RetryAfter)
	}
	if r := peek(t, l, subject, one(big)); r.Results[0].Remaining != 97 {
		t.Errorf("big remaining = %d, want 97 (only admitted decisions consume)", r.Results[0].Remaining)
	}
}

func testShadow(t *testing.T, newLimiter NewLimiter) {
	clock := NewClock(start)
	l := newLimiter(t, clock)
	subject := Subject(t)
	sh := policy("shadow", ratelimit.GCRA, 1, time.Hour)
	sh.Shadow = true
	enforced := policy("enf", ratelimit.Fixed, 5, time.Hour)
	items := []ratelimit.Item{one(sh), one(enforced)}
	for i := 0; i < 5; i++ {
		d := decide(t, l, subject, items...)
		if !d.Allowed {
			t.Fatalf("decision %d denied by a shadow policy: %+v", i, d)
		}
		if got, want := d.Results[0].Allowed, i == 0; got != want {
			t.Errorf("decision %d: shadow result Allowed = %v, want %v", i, got, want)
		}
		if len(d.Violated(items)) != 0 {
			t.Errorf("decision %d: shadow policy listed as violated", i)
		}
	}
	d := decide(t, l, subject, items...)
	if v := d.Violated(items); d.Allowed || len(v) != 1 || v[0].Name != "enf" {
		t.Fatalf("6th decision = %+v, want denied by enf only", d)
	}
}

func testInvalid(t *testing.T, newLimiter NewLimiter) {
	l := newLimiter(t, NewClock(start))
	p := policy("p", ratelimit.GCRA, 5, time.Minute)
	tests := []struct {
		name  string
		items []ratelimit.Item
	}{
		{"no items", nil},
		{"negative cost", []ratelimit.Item{{Policy: p, Cost: -1}}},
		{"cost above limit", []ratelimit.Item{{Policy: p, Cost: 6}}},
		{"duplicate policy", []ratelimit.Item{one(p), one(p)}},
		{"invalid policy", []ratelimit.Item{one(policy("Bad Name", ratelimit.GCRA, 5, time.Minute))}},
		{"zero rate", []ratelimit.Item{one(ratelimit.Policy{Name: "z"})}},
	}
	for _, tc := range tests {
		// A Decision left over from an admitted decision: an error must not
		// leave it admitting.
		d := decide(t, l, Subject(t), one(p))
		if err := l.Decide(context.Background(), &d, Subject(t), tc.items...); !errors.Is(err, ratelimit.ErrInvalid) {
			t.Errorf("Decide with %s: err = %v, want ErrInvalid", tc.name, err)
		}
		if d.Allowed || len(d.Results) != 0 {
			t.Errorf("Decide with %s left %+v, want no results, not allowed", tc.name, d)
		}
		d = decide(t, l, Subject(t), one(p))
		if err := l.Peek(context.Background(), &d, Subject(t), tc.items...); !errors.Is(err, ratelimit.ErrInvalid) {
			t.Errorf("Peek with %s: err = %v, want ErrInvalid", tc.name, err)
		}
		if d.Allowed || len(d.Results) != 0 {
			t.Errorf("Peek with %s left %+v, want no results, not allowed", tc.name, d)
		}
	}
}

// arrivals drives a random schedule against one key: bursts, gaps and
// steady trickles, each of cost 1, and returns the admitted instants.
func arrivals(t *testing.T, l ratelimit.Limiter, clock *Clock, p ratelimit.Policy, seed int64, calls int) []time.Time {
	t.Helper()
	rng := mrand.New(mrand.NewSource(seed))
	subject := Subject(t)
	var admitted []time.Time
	per := p.Rate.Per
	for i := 0; i < calls; i++ {
		switch rng.Intn(10) {
		case 0:
			clock.Advance(time.Duration(rng.Int63n(int64(per)))) // a gap
		case 1, 2:
			// a burst: no time passes
		default:
			clock.Advance(time.Duration(rng.Int63n(int64(per) / p.Rate.N)))
		}
		if d := decide(t, l, subject, one(p)); d.Allowed {
			admitted = append(admitted, decisionInstant(p, clock.Now()))
		} else if rng.Intn(3) == 0 {
			clock.Advance(d.RetryAfter) // a client that honours Retry-After
		}
	}
	if len(admitted) < calls/10 {
		t.Fatalf("only %d of %d calls admitted: the schedule tests nothing", len(admitted), calls)
	}
	return admitted
}

// decisionInstant is now as the algorithm of p sees it: GCRA counts whole
// microseconds, the window algorithms whole milliseconds.
func decisionInstant(p ratelimit.Policy, now time.Time) time.Time {
	if p.Algorithm == ratelimit.GCRA {
		return time.UnixMicro(now.UnixMicro())
	}
	return time.UnixMilli(now.UnixMilli())
}

func testGCRABound(t *testing.T, newLimiter NewLimiter) {
	for _, p := range []ratelimit.Policy{
		policy("g", ratelimit.GCRA, 10, time.Second),
		{Name: "gb", Rate: ratelimit.Rate{N: 5, Per: 2 * time.Second}, Burst: 8},
		{Name: "g1", Rate: ratelimit.Rate{N: 7, Per: time.Second}, Burst: 1},
	} {
		t.Run(p.Name, func(t *testing.T) {
			clock := NewClock(start)
			l := newLimiter(t, clock)
			at := arrivals(t, l, clock, p, 42, 1500)
			// Any interval [at[i], at[j]] holds j-i+1 admissions: at most B + N*t/D.
			b, n, d := float64(p.Limit()), float64(p.Rate.N), float64(p.Rate.Per)
			for i := range at {
				for j := i; j < len(at); j++ {
					span := float64(at[j].Sub(at[i]))
					if span > 4*d {
						break
					}
					if got, bound := float64(j-i+1), b+n*span/d; got > bound+1e-9 {
						t.Fatalf("%v admitted in %v (from +%v), bound B+N*t/D = %.3f", got, at[j].Sub(at[i]), at[i].Sub(start), bound)
					}
				}
			}
		})
	}
}

// maxInWindow returns the most admissions in any half-open interval of
// length d.
func maxInWindow(at []time.Time, d time.Duration) int {
	best, j := 0, 0
	for i := range at {
		for j < len(at) && at[j].Sub(at[i]) < d {
			j++
		}
		best = max(best, j-i)
	}
	return best
}

func testSlidingBound(t *testing.T, newLimiter NewLimiter) {
	p := policy("s", ratelimit.Sliding, 10, time.Second)
	clock := NewClock(start)
	l := newLimiter(t, clock)
	at := arrivals(t, l, clock, p, 7, 1500)
	if got := maxInWindow(at, p.Rate.Per); got > int(2*p.Rate.N) {
		t.Errorf("sliding admitted %d in one window length, want <= 2N = %d", got, 2*p.Rate.N)
	}
	// The weighted count never exceeds N: in each aligned window, admissions
	// plus the previous window's weighted share at that instant stay <= N.
	w := p.Rate.Per
	counts := map[int64]int{}
	for _, a := range at {
		counts[a.UnixMilli()/w.Milliseconds()]++
	}
	for _, a := range at {
		idx := a.UnixMilli() / w.Milliseconds()
		var curr int
		for _, b := range at {
			if b.UnixMilli()/w.Milliseconds() == idx && !b.After(a) {
				curr++
			}
		}
		elapsed := a.UnixMilli() - idx*w.Milliseconds()
		weighted := float64(counts[idx-1]) * float64(w.Milliseconds()-elapsed) / float64(w.Milliseconds())
		if float64(curr)+weighted > float64(p.Rate.N)+1e-9 {
			t.Fatalf("at +%v: %d in window plus weighted %.2f exceeds N", a.Sub(start), curr, weighted)
		}
	}
}

func testFixedBound(t *testing.T, newLimiter NewLimiter) {
	p := policy("f", ratelimit.Fixed, 10, time.Second)
	clock := NewClock(start)
	l := newLimiter(t, clock)
	at := arrivals(t, l, clock, p, 9, 1500)
	counts := map[int64]int{}
	for _, a := range at {
		counts[a.UnixMilli()/1000]++
	}
	for w, c := range counts {
		if c > int(p.Rate.N) {
			t.Errorf("aligned window %d admitted %d, want <= %d", w, c, p.Rate.N)
		}
	}
	if got := maxInWindow(at, p.Rate.Per); got > int(2*p.Rate.N) {
		t.Errorf("fixed admitted %d in one window length, want <= 2N", got)
	}
	// Across a boundary it does reach 2N: the documented price of fixed windows.
	clock.Set(time.Date(2026, 3, 1, 13, 0, 0, 900_000_000, time.UTC))
	subject := Subject(t)
	admitted := 0
	for i := 0; i < 3*int(p.Rate.N); i++ {
		if i == int(p.Rate.N)+2 {
			clock.Advance(200 * time.Millisecond)
		}
		if decide(t, l, subject, one(p)).Allowed {
			admitted++
		}
	}
	if admitted != int(2*p.Rate.N) {
		t.Errorf("across a boundary within 200ms: admitted %d, want 2N = %d", admitted, 2*p.Rate.N)
	}
}

func testFlood(t *testing.T, newLimiter NewLimiter) {
	forEachAlgorithm(t, newLimiter, func(t *testing.T, a ratelimit.Algorithm, l ratelimit.Limiter, clock *Clock) {
		p := policy("flood", a, 50, time.Hour)
		subject := Subject(t)
		admitted := 0
		for i := 0; i < 300; i++ {
			clock.Advance(time.Millisecond)
			if decide(t, l, subject, one(p)).Allowed {
				admitted++
			}
		}
		if admitted != 50 {
			t.Errorf("a flood of 300 in 300ms under 50/1h admitted %d, want exactly 50", admitted)
		}
	})
}

func testRetryHonoured(t *testing.T, newLimiter NewLimiter) {
	forEachAlgorithm(t, newLimiter, func(t *testing.T, a ratelimit.Algorithm, l ratelimit.Limiter, clock *Clock) {
		p := policy("r", a, 5, 2*time.Second)
		rng := mrand.New(mrand.NewSource(int64(a) + 100))
		subject := Subject(t)
		denials := 0
		for i := 0; i < 200; i++ {
			clock.Advance(time.Duration(rng.Int63n(int64(300 * time.Millisecond))))
			item := ratelimit.Item{Policy: p, Cost: 1 + rng.Int63n(3)}
			d := decide(t, l, subject, item)
			if d.Allowed {
				continue
			}
			denials++
			if d.RetryAfter <= 0 {
				t.Fatalf("denied with RetryAfter %v", d.RetryAfter)
			}
			// Just before the retry time it is still denied; at it, admitted.
			if d.RetryAfter > time.Millisecond {
				clock.Advance(d.RetryAfter - time.Millisecond)
				if peek(t, l, subject, item).Allowed {
					t.Fatalf("admitted 1ms before RetryAfter %v: the retry is not exact", d.RetryAfter)
				}
				clock.Advance(time.Millisecond)
			} else {
				clock.Advance(d.RetryAfter)
			}
			if !decide(t, l, subject, item).Allowed {
				t.Fatalf("denied again after waiting RetryAfter %v (cost %d, +%v)", d.RetryAfter, item.Cost, clock.Now().Sub(start))
			}
		}
		if denials == 0 {
			t.Fatal("no denials: the test tests nothing")
		}
	})
}

// testReusesDecision writes decisions of different sizes and outcomes into
// one Decision: each is complete (nothing left over from the one before),
// and the Results array is reused when it is large enough.
func testReusesDecision(t *testing.T, newLimiter NewLimiter) {
	clock := NewClock(start)
	l := newLimiter(t, clock)
	var ref Reference
	subject := Subject(t)
	small := policy("small", ratelimit.GCRA, 1, time.Hour)
	items := []ratelimit.Item{
		one(policy("a", ratelimit.Sliding, 5, time.Minute)),
		one(small),
		one(policy("c", ratelimit.Fixed, 9, time.Hour)),
	}
	var d ratelimit.Decision
	for i, its := range [][]ratelimit.Item{items, items[1:2], items, items[2:], items[:1], items} {
		clock.Advance(time.Second)
		want := ref.Decide(clock.Now(), subject, its, false)
		before := d.Results[:cap(d.Results)]
		if err := l.Decide(context.Background(), &d, subject, its...); err != nil {
			t.Fatalf("decision %d: %v", i, err)
		}
		if diff := diffDecision(&d, &want); diff != "" {
			t.Fatalf("decision %d into a reused Decision: %s", i, diff)
		}
		if len(before) >= len(its) && &d.Results[0] != &before[0] {
			t.Errorf("decision %d: Results has room for %d, but a new array was allocated", i, len(before))
		}
	}
}
