package ratelimit_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/memorylimit"
	"github.com/journalsvc/journal/ratelimit/ratelimittest"
)

// store is a primary limiter whose shared store can be taken away: while
// down, it fails every call with an error wrapping ErrUnavailable, as
// redislimit does. The state it decides from is a memorylimit limiter,
// standing for the store every instance shares.
type store struct {
	ratelimit.Limiter
	down atomic.Bool
}

var errDown = errors.New("store down")

func (s *store) Decide(ctx context.Context, d *ratelimit.Decision, subject string, items ...ratelimit.Item) error {
	if s.down.Load() {
		*d = ratelimit.Decision{Results: d.Results[:0]}
		return errors.Join(ratelimit.ErrUnavailable, errDown)
	}
	return s.Limiter.Decide(ctx, d, subject, items...)
}

func (s *store) Peek(ctx context.Context, d *ratelimit.Decision, subject string, items ...ratelimit.Item) error {
	if s.down.Load() {
		*d = ratelimit.Decision{Results: d.Results[:0]}
		return errors.Join(ratelimit.ErrUnavailable, errDown)
	}
	return s.Limiter.Peek(ctx, d, subject, items...)
}

func (s *store) Reset(ctx context.Context, subject, policy string) error {
	if s.down.Load() {
		return errors.Join(ratelimit.ErrUnavailable, errDown)
	}
	return s.Limiter.Reset(ctx, subject, policy)
}

// fallbackFixture is a Fallback over a store, with n live instances, all on
// one fake clock.
type fallbackFixture struct {
	clock *ratelimittest.Clock
	store *store
	f     *ratelimit.Fallback
}

func newFallbackFixture(t *testing.T, n int64) *fallbackFixture {
	t.Helper()
	c := ratelimittest.NewClock(time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC))
	shared := memorylimit.New(memorylimit.Options{Now: c.Now})
	t.Cleanup(func() { shared.Close() })
	x := &fallbackFixture{clock: c, store: &store{Limiter: shared}}
	x.f = x.instance(t, n, x.store)
	return x
}

// instance returns the Fallback of one of n live instances: primary (the
// fixture's store, or a wrapper of it) with a local limiter of its own, on
// the fixture's clock.
func (x *fallbackFixture) instance(t *testing.T, n int64, primary ratelimit.Limiter) *ratelimit.Fallback {
	t.Helper()
	local := memorylimit.New(memorylimit.Options{Now: x.clock.Now})
	t.Cleanup(func() { local.Close() })
	f, err := ratelimit.NewFallback(primary, local, ratelimit.FallbackOptions{Instances: func() int64 { return n }, Now: x.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// admit decides k requests of item for subject and returns how many were
// admitted, failing the test on an error.
func (x *fallbackFixture) admit(t *testing.T, subject string, k int, items ...ratelimit.Item) int {
	t.Helper()
	n := 0
	for range k {
		d, err := ratelimittest.Call(x.f.Decide, context.Background(), subject, items...)
		if err != nil {
			t.Fatalf("Decide: %v", err)
		}
		if d.Allowed {
			n++
		}
	}
	return n
}

// TestFallbackFailModes: without the shared store, a FailClosed policy fails
// the decision, FailOpen admits with its full quota, FailLocal is decided in
// process at its share, in item order; every result is degraded.
func TestFallbackFailModes(t *testing.T) {
	x := newFallbackFixture(t, 3)
	x.store.down.Store(true)
	ctx := context.Background()
	open := ratelimit.Policy{Name: "open", Rate: ratelimit.Rate{N: 10, Per: time.Hour}, Fail: ratelimit.FailOpen}
	loc := ratelimit.Policy{Name: "loc", Rate: ratelimit.Rate{N: 10, Per: time.Hour}} // FailLocal: 4 of 10 for 3 instances
	closed := ratelimit.Policy{Name: "closed", Rate: ratelimit.Rate{N: 10, Per: time.Hour}, Fail: ratelimit.FailClosed}

	_, err := ratelimittest.Call(x.f.Decide, ctx, "s", ratelimit.Item{Policy: loc}, ratelimit.Item{Policy: closed})
	if !errors.Is(err, ratelimit.ErrUnavailable) || !errors.Is(err, errDown) || !strings.Contains(err.Error(), `"closed"`) {
		t.Fatalf("with a FailClosed policy: err = %v, want ErrUnavailable naming it and wrapping the cause", err)
	}
	shadowClosed := closed
	shadowClosed.Shadow = true
	if d, err := ratelimittest.Call(x.f.Peek, ctx, "s", ratelimit.Item{Policy: shadowClosed}); err != nil || !d.Allowed {
		t.Fatalf("a shadow FailClosed policy: %+v, %v; want admitted (shadow policies never block)", d, err)
	}
	items := []ratelimit.Item{{Policy: open}, {Policy: loc}}
	if d, err := ratelimittest.Call(x.f.Peek, ctx, "s", items...); err != nil || !d.Allowed || d.Results[1].Remaining != 3 {
		t.Fatalf("peek: %+v, %v; want admitted, 3 of the share of 4 left after it", d, err)
	}
	for i := range 5 {
		d, err := ratelimittest.Call(x.f.Decide, ctx, "s", items...)
		if err != nil || d.Allowed != (i < 4) {
			t.Fatalf("decision %d: %+v, %v; want the first 4 admitted", i, d, err)
		}
		if !d.Allowed && d.RetryAfter <= 0 {
			t.Fatalf("decision %d: denied without a retry time", i)
		}
		for j, r := range d.Results {
			if !r.Degraded {
				t.Fatalf("decision %d result %d: %+v; want degraded", i, j, r)
			}
		}
		if r := d.Results[0]; !r.Allowed || r.Remaining != 10 {
			t.Fatalf("decision %d: FailOpen result %+v, want admitted with its full quota", i, r)
		}
	}
	// The share is never below the cost, and rounds up.
	big := ratelimit.Policy{Name: "big", Rate: ratelimit.Rate{N: 10, Per: time.Hour}}
	if d, err := ratelimittest.Call(x.f.Decide, ctx, "t", ratelimit.Item{Policy: big, Cost: 9}); err != nil || !d.Allowed {
		t.Fatalf("a cost of 9 of 10 with 3 instances: %+v, %v; want admitted (the share is at least the cost)", d, err)
	}
}

// TestFallbackContinuesFromTheStore: a subject the instance has seen
// continues from the remaining quota the store last reported, divided among
// the live instances, never from a fresh quota; a subject the store denied
// stays denied.
func TestFallbackContinuesFromTheStore(t *testing.T) {
	p := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 10, Per: time.Hour}}
	for _, tc := range []struct {
		name               string
		instances          int64
		spent              int // admitted through the store before the outage
		wantDuringOutage   int
		advance            time.Duration // then, still down
		wantAfterAdvancing int
	}{
		{"one instance, 8 of 10 spent", 1, 8, 2, 6 * time.Minute, 1},
		{"two instances, 8 of 10 spent", 2, 8, 1, 12 * time.Minute, 1},
		{"three instances, 4 of 10 spent", 3, 4, 2, 0, 0},
		{"exhausted and denied", 1, 10, 0, 5 * time.Minute, 0},
		{"exhausted, the retry time passed", 1, 10, 0, 6 * time.Minute, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newFallbackFixture(t, tc.instances)
			item := ratelimit.Item{Policy: p}
			// Through the store: tc.spent admissions, and one denial when
			// that exhausted the quota, as the last report.
			tries := tc.spent
			if tc.spent == 10 {
				tries++
			}
			if got := x.admit(t, "ip:192.0.2.1", tries, item); got != tc.spent {
				t.Fatalf("through the store: %d admitted, want %d", got, tc.spent)
			}
			x.store.down.Store(true)
			if got := x.admit(t, "ip:192.0.2.1", 20, item); got != tc.wantDuringOutage {
				t.Errorf("during the outage: %d admitted, want %d", got, tc.wantDuringOutage)
			}
			x.clock.Advance(tc.advance)
			if got := x.admit(t, "ip:192.0.2.1", 20, item); got != tc.wantAfterAdvancing {
				t.Errorf("after %v more of the outage: %d admitted, want %d (the share's rate)", tc.advance, got, tc.wantAfterAdvancing)
			}
			// A subject never seen starts from a fresh share.
			if got, want := x.admit(t, "ip:192.0.2.2", 20, item), int((10+tc.instances-1)/tc.instances); got != want {
				t.Errorf("an unknown subject: %d admitted, want the fresh share %d", got, want)
			}
		})
	}
}

// TestFallbackReseedsAfterTheStoreAnswers: after the store answered again,
// the next outage starts from its new report, not from what the instance
// spent locally before.
func TestFallbackReseedsAfterTheStoreAnswers(t *testing.T) {
	x := newFallbackFixture(t, 1)
	item := ratelimit.Item{Policy: ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 10, Per: time.Hour}}}
	x.admit(t, "s", 5, item)
	x.store.down.Store(true)
	if got := x.admit(t, "s", 10, item); got != 5 {
		t.Fatalf("first outage: %d admitted, want 5", got)
	}
	x.store.down.Store(false)
	if got := x.admit(t, "s", 3, item); got != 3 { // the store never saw the local admissions
		t.Fatalf("store back: %d admitted, want 3", got)
	}
	x.store.down.Store(true)
	if got := x.admit(t, "s", 10, item); got != 2 {
		t.Fatalf("second outage: %d admitted, want the 2 the store reported last", got)
	}
}

// TestFallbackForgetsTheReport: a report older than its policy's period no
// longer constrains the share (the whole quota is back by then), and Reset
// forgets the report and the local state.
func TestFallbackForgetsTheReport(t *testing.T) {
	for _, tc := range []struct {
		name   string
		forget func(x *fallbackFixture) error
	}{
		{"a period after the report", func(x *fallbackFixture) error { x.clock.Advance(61 * time.Second); return nil }},
		{"after Reset", func(x *fallbackFixture) error { return x.f.Reset(context.Background(), "s", "ip") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newFallbackFixture(t, 1)
			item := ratelimit.Item{Policy: ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 10, Per: time.Minute}}}
			x.admit(t, "s", 11, item) // the last report: denied, nothing left
			if err := tc.forget(x); err != nil {
				t.Fatal(err)
			}
			x.store.down.Store(true)
			if got := x.admit(t, "s", 20, item); got != 10 {
				t.Fatalf("%d admitted, want a fresh 10", got)
			}
		})
	}
}

// TestFallbackResetNeedsTheStore: Reset answers the store's error, since the
// store keeps what the other instances share.
func TestFallbackResetNeedsTheStore(t *testing.T) {
	x := newFallbackFixture(t, 1)
	x.store.down.Store(true)
	if err := x.f.Reset(context.Background(), "s", "ip"); !errors.Is(err, ratelimit.ErrUnavailable) {
		t.Fatalf("Reset with the store down: %v, want the store's error", err)
	}
}

func TestNewFallbackRejectsNil(t *testing.T) {
	l := memorylimit.New(memorylimit.Options{})
	defer l.Close()
	for _, tc := range []struct {
		primary, local ratelimit.Limiter
		opts           ratelimit.FallbackOptions
	}{
		{nil, l, ratelimit.FallbackOptions{}},
		{l, nil, ratelimit.FallbackOptions{}},
		{l, l, ratelimit.FallbackOptions{MaxSubjects: -1}},
	} {
		if _, err := ratelimit.NewFallback(tc.primary, tc.local, tc.opts); !errors.Is(err, ratelimit.ErrInvalid) {
			t.Errorf("NewFallback(%v, %v, %+v) = %v, want ErrInvalid", tc.primary, tc.local, tc.opts, err)
		}
	}
}

// slowStore is a store whose calls miss their deadline while it is not known
// to be down: errors wrap ErrUnavailable and ErrSlow.
type slowStore struct {
	*store
	slow atomic.Bool
}

func (s *slowStore) Decide(ctx context.Context, d *ratelimit.Decision, subject string, items ...ratelimit.Item) error {
	if s.slow.Load() {
		*d = ratelimit.Decision{Results: d.Results[:0]}
		return errors.Join(ratelimit.ErrUnavailable, ratelimit.ErrSlow, context.DeadlineExceeded)
	}
	return s.store.Decide(ctx, d, subject, items...)
}

// TestFallbackGrantsNothingNewWhileSlow: while the store is slow but not
// down it may be granting the quota it reported to others, so a degraded
// decision grants at most one unit per report (none to a subject it refused)
// and then what time returns, for a subject seen or not; once the store is
// down, the share of the reported quota (or a fresh share) is granted.
func TestFallbackGrantsNothingNewWhileSlow(t *testing.T) {
	x := newFallbackFixture(t, 1)
	s := &slowStore{store: x.store}
	x.f = x.instance(t, 1, s)
	item := ratelimit.Item{Policy: ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 10, Per: time.Minute}}} // 1 per 6s
	x.admit(t, "seen", 4, item)
	x.admit(t, "spent", 11, item)
	s.slow.Store(true)
	if got := x.admit(t, "seen", 10, item); got != 1 {
		t.Errorf("slow store, a subject with 6 left: %d admitted, want 1", got)
	}
	if got := x.admit(t, "spent", 10, item); got != 0 {
		t.Errorf("slow store, a subject Redis refused: %d admitted, want 0", got)
	}
	if got := x.admit(t, "unseen", 10, item); got != 1 {
		t.Errorf("slow store, a subject never seen: %d admitted, want 1", got)
	}
	x.clock.Advance(6 * time.Second)
	if got := x.admit(t, "seen", 10, item); got != 1 {
		t.Errorf("slow store, 6s later: %d admitted, want the 1 the rate returned", got)
	}
	// Down: the share of what was reported, and a fresh share for the
	// subject never seen.
	s.slow.Store(false)
	s.down.Store(true)
	if got := x.admit(t, "seen", 10, item); got != 6 {
		t.Errorf("store down, a subject with 6 left: %d admitted, want 6", got)
	}
	if got := x.admit(t, "unseen", 20, item); got != 10 {
		t.Errorf("store down, a subject never seen: %d admitted, want a fresh 10", got)
	}
}

// flakyStore misses the deadline on every other call, as a store answering
// a saturated process does: the calls between bring fresh reports.
type flakyStore struct {
	*store
	calls atomic.Int64
}

func (s *flakyStore) Decide(ctx context.Context, d *ratelimit.Decision, subject string, items ...ratelimit.Item) error {
	if s.calls.Add(1)%2 == 0 {
		*d = ratelimit.Decision{Results: d.Results[:0]}
		return errors.Join(ratelimit.ErrUnavailable, ratelimit.ErrSlow, context.DeadlineExceeded)
	}
	return s.store.Decide(ctx, d, subject, items...)
}

// TestFallbackSlowReportsGrantOneUnitInAll: while the store is slow, fresh
// reports arriving between missed deadlines lower the local quota but never
// raise it again, so a flood admits at most one unit beyond the limit per
// instance (and what the share's rate returns), however many reports come.
func TestFallbackSlowReportsGrantOneUnitInAll(t *testing.T) {
	for _, n := range []int64{1, 3} {
		x := newFallbackFixture(t, n)
		var fs []*ratelimit.Fallback
		for range n {
			fs = append(fs, x.instance(t, n, &flakyStore{store: x.store}))
		}
		item := ratelimit.Item{Policy: ratelimit.Policy{Name: "user", Rate: ratelimit.Rate{N: 20, Per: time.Hour}}}
		admitted := 0
		for i := range 200 {
			d, err := ratelimittest.Call(fs[i%len(fs)].Decide, context.Background(), "user:u", item)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed {
				admitted++
			}
			x.clock.Advance(time.Millisecond)
		}
		if want := 20 + int(n); admitted > want {
			t.Errorf("%d instances: %d admitted, want at most %d (the limit and one unit per instance)", n, admitted, want)
		}
	}
}
