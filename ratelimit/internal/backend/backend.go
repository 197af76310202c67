// Package backend is the kit every rate-limit backend shares: the stored
// [State] of one policy for one subject, the reference semantics of the
// algorithms ([Eval]), the all-or-nothing rule of a decision ([Combine],
// [Uncharged]) and the validation of its items ([ValidateItems]).
//
// The algorithms are pure functions of (state, now, cost), so the in-process
// backend (memorylimit) and the Redis backend (redislimit, whose Lua script
// implements the same integer arithmetic) make the same decisions for the same
// calls at the same instants. GCRA works in microseconds; the window
// algorithms work in milliseconds on windows aligned to the Unix epoch.
package backend

import (
	"fmt"
	"time"

	"github.com/journalsvc/journal/ratelimit"
)

// State is the stored state of one policy for one subject. The zero value is
// the state of a subject never seen (a full quota), whatever the algorithm;
// a State of another algorithm than the policy's is treated as the zero value.
type State struct {
	Algorithm ratelimit.Algorithm
	// T is, for GCRA, the theoretical arrival time in Unix microseconds;
	// for the window algorithms, the index of the current window (Unix
	// milliseconds divided by the period in milliseconds).
	T int64
	// Count is the cost admitted in window T (window algorithms).
	Count int64
	// Prev is the cost admitted in window T-1 (Sliding).
	Prev int64
}

// Cost returns the effective cost of it: Item.Cost, or 1 when it is 0.
func Cost(it *ratelimit.Item) int64 {
	if it.Cost == 0 {
		return 1
	}
	return it.Cost
}

// Spec is a valid policy's parameters as [Spec.Eval] uses them, derived
// once: a backend that decides many requests under one policy keeps its Spec
// rather than deriving them on every decision. The zero value is not usable;
// create it with [NewSpec].
type Spec struct {
	alg  ratelimit.Algorithm
	t    int64 // GCRA: the emission interval (µs)
	tau  int64 // GCRA: limit * t (µs)
	lim  int64 // GCRA: the limit (the burst)
	w, n int64 // windows: the period (ms) and the limit
}

// NewSpec returns the Spec of p, which must be valid.
func NewSpec(p *ratelimit.Policy) Spec {
	s := Spec{alg: p.Algorithm}
	if p.Algorithm == ratelimit.GCRA {
		s.t, s.lim = p.EmissionInterval().Microseconds(), p.Limit()
		s.tau = s.lim * s.t
	} else {
		s.w, s.n = p.Rate.Per.Milliseconds(), p.Rate.N
	}
	return s
}

// Algorithm returns the policy's algorithm.
func (s *Spec) Algorithm() ratelimit.Algorithm { return s.alg }

// Window returns the index of the window holding nowMicros (window
// algorithms only): the T of a State written at that instant.
func (s *Spec) Window(nowMicros int64) int64 { return nowMicros / 1000 / s.w }

// Eval is [Eval] under the policy of s.
func (s *Spec) Eval(r *ratelimit.Result, st State, nowMicros, cost int64) (next State, expiresMicros int64) {
	*r = ratelimit.Result{}
	if st.Algorithm != s.alg {
		st = State{Algorithm: s.alg}
	}
	if s.alg == ratelimit.GCRA {
		return s.evalGCRA(st, nowMicros, cost, r)
	}
	return s.evalWindow(st, nowMicros, cost, r)
}

// Eval applies one request of the given cost (>= 0; 0 evaluates without
// consuming) to st at the instant nowMicros (Unix microseconds) under p,
// which must be valid. It writes the policy's Result into *r (all of it,
// Degraded false) and returns the state to store (st itself when the request
// is denied) and the instant, in Unix microseconds, at which next becomes
// equivalent to the zero State, so it may be dropped (a TTL).
//
// Eval is the reference semantics: every backend makes exactly these
// decisions (the Redis script implements the same integer arithmetic).
func Eval(p *ratelimit.Policy, r *ratelimit.Result, st State, nowMicros, cost int64) (next State, expiresMicros int64) {
	s := NewSpec(p)
	return s.Eval(r, st, nowMicros, cost)
}

func (s *Spec) evalGCRA(st State, now, cost int64, r *ratelimit.Result) (State, int64) {
	t, tau := s.t, s.tau
	tat := max(st.T, now)
	newTAT := tat + cost*t
	if allowAt := newTAT - tau; allowAt > now {
		r.RetryAfter = micros(allowAt - now)
		r.ResetAfter = micros(gcraReset(tat-now, t))
		return st, tat
	}
	// Admitted, so 0 <= diff <= tau = limit*t: the remaining quota
	// floor((tau-diff)/t) is limit - ceil(diff/t), and the reset is diff's
	// remainder (or t): one division.
	diff := uint64(newTAT - now)
	q, rem := int64(diff/uint64(t)), int64(diff%uint64(t))
	r.Allowed = true
	r.Remaining = s.lim - q
	switch {
	case rem != 0:
		r.Remaining--
		r.ResetAfter = micros(rem)
	case diff != 0:
		r.ResetAfter = micros(t)
	}
	return State{Algorithm: ratelimit.GCRA, T: newTAT}, newTAT
}

// gcraReset returns the time until one more unit of quota is available when
// the TAT is diff after now: at most one emission interval t.
func gcraReset(diff, t int64) int64 {
	if diff <= 0 {
		return 0
	}
	if rem := diff % t; rem != 0 {
		return rem
	}
	return t
}

func (s *Spec) evalWindow(st State, now, cost int64, r *ratelimit.Result) (State, int64) {
	w, n, alg := s.w, s.n, s.alg
	nowMs := now / 1000
	idx := nowMs / w
	elapsed := nowMs - idx*w
	var curr, prev int64
	switch st.T {
	case idx:
		curr, prev = st.Count, st.Prev
	case idx - 1:
		prev = st.Count
	}
	if alg == ratelimit.Fixed {
		prev = 0
	}
	r.ResetAfter = millis(w - elapsed)
	weighted := ceilDiv(prev*(w-elapsed), w) // previous window's weighted count
	k := n - curr - cost                     // room left for the previous window's share
	if weighted <= k {
		r.Allowed = true
		r.Remaining = k - weighted
		next := State{Algorithm: alg, T: idx, Count: curr + cost, Prev: prev}
		life := w // Fixed: until the window's end
		if alg == ratelimit.Sliding {
			life = 2 * w // the count still weighs in the next window
		}
		return next, (idx*w + life) * 1000
	}
	// Denied: find the earliest elapsed time at which the request fits.
	if alg == ratelimit.Sliding && k >= 0 {
		// prev*(w-e) <= k*w  <=>  e >= w - floor(k*w/prev); prev > 0 here.
		if e := w - k*w/prev; e < w {
			r.RetryAfter = millis(e - elapsed)
			return st, stExpiry(st, w, alg)
		}
	}
	retry := w - elapsed // the next window, where curr becomes prev
	if alg == ratelimit.Sliding && curr > 0 {
		retry += w - (n-cost)*w/curr
	}
	r.RetryAfter = millis(retry)
	return st, stExpiry(st, w, alg)
}

// stExpiry returns the expiry of an unchanged window state.
func stExpiry(st State, w int64, a ratelimit.Algorithm) int64 {
	if a == ratelimit.Sliding {
		return (st.T*w + 2*w) * 1000
	}
	return (st.T*w + w) * 1000
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

func micros(us int64) time.Duration { return time.Duration(us) * time.Microsecond }
func millis(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

// Results sizes d.Results to n results, reusing its capacity (allocating
// only when it is smaller than n), and returns them. Their contents are
// stale: the backend writes every field of each.
func Results(d *ratelimit.Decision, n int) []ratelimit.Result {
	if cap(d.Results) < n {
		d.Results = make([]ratelimit.Result, n)
	}
	d.Results = d.Results[:n]
	return d.Results
}

// Fail leaves d as a backend that returns an error must: no results, not
// admitted (Results keeps its capacity for the caller's next decision).
func Fail(d *ratelimit.Decision) {
	*d = ratelimit.Decision{Results: d.Results[:0]}
}

// Combine sets d.Allowed and d.RetryAfter from d.Results, one per item:
// Allowed iff no non-shadow result denied, RetryAfter the latest RetryAfter of
// the violated policies. A backend that found the decision denied must
// report, for the admitting items, the remaining quota without consumption
// ([Uncharged] does it).
func Combine(d *ratelimit.Decision, items []ratelimit.Item) {
	d.Allowed, d.RetryAfter = true, 0
	for i := range d.Results {
		if r := &d.Results[i]; !r.Allowed && !items[i].Policy.Shadow {
			d.Allowed = false
			d.RetryAfter = max(d.RetryAfter, r.RetryAfter)
		}
	}
}

// Uncharged sets, for a denied decision, the result of each admitting item
// to its quota as it stands: [Eval] with cost 0 over states[i] at nowMicros,
// as [Combine] asks of backends (nothing was consumed).
func Uncharged(results []ratelimit.Result, items []ratelimit.Item, states []State, nowMicros int64) {
	for i := range items {
		if results[i].Allowed {
			Eval(&items[i].Policy, &results[i], states[i], nowMicros, 0)
		}
	}
}

// ValidateItems checks the items of one decision as every backend must: at
// least one, valid policies, distinct names, 0 <= cost <= limit. Errors wrap
// [ratelimit.ErrInvalid].
func ValidateItems(items []ratelimit.Item) error {
	if len(items) == 0 {
		return fmt.Errorf("%w decision: no items", ratelimit.ErrInvalid)
	}
	for i := range items {
		it := &items[i]
		if err := it.Policy.Validate(); err != nil {
			return err
		}
		if it.Cost < 0 || Cost(it) > it.Policy.Limit() {
			return fmt.Errorf("%w decision: cost %d of policy %q is outside 0..%d", ratelimit.ErrInvalid, it.Cost, it.Policy.Name, it.Policy.Limit())
		}
		for _, prev := range items[:i] {
			if prev.Policy.Name == it.Policy.Name {
				return fmt.Errorf("%w decision: policy %q appears twice", ratelimit.ErrInvalid, it.Policy.Name)
			}
		}
	}
	return nil
}
