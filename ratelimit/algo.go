package ratelimit

import "time"

// State is the stored state of one policy for one subject. The zero value is
// the state of a subject never seen (a full quota), whatever the algorithm;
// a State of another algorithm than the policy's is treated as the zero value.
type State struct {
	Algorithm Algorithm
	// T is, for GCRA, the theoretical arrival time in Unix microseconds;
	// for the window algorithms, the index of the current window (Unix
	// milliseconds divided by the period in milliseconds).
	T int64
	// Count is the cost admitted in window T (window algorithms).
	Count int64
	// Prev is the cost admitted in window T-1 (Sliding).
	Prev int64
}

// emissionMicros returns the GCRA emission interval: the period divided by
// N, rounded up to a whole microsecond so that the rate never exceeds N/Per.
func (p Policy) emissionMicros() int64 {
	per := p.Rate.Per.Microseconds()
	return (per + p.Rate.N - 1) / p.Rate.N
}

// EmissionInterval returns the GCRA emission interval of p: Rate.Per / Rate.N
// rounded up to a microsecond.
func (p Policy) EmissionInterval() time.Duration {
	return time.Duration(p.emissionMicros()) * time.Microsecond
}

// Eval applies one request of the given cost (>= 0; 0 evaluates without
// consuming) to st at the instant nowMicros (Unix microseconds) under p,
// which must be valid. It returns the state to store (st itself when the
// request is denied), the policy's Result (Degraded false) and the instant, in
// Unix microseconds, at which next becomes equivalent to the zero State, so it
// may be dropped (a TTL).
//
// Eval is the reference semantics: every backend makes exactly these
// decisions (the Redis script implements the same integer arithmetic).
func (p Policy) Eval(st State, nowMicros, cost int64) (next State, r Result, expiresMicros int64) {
	next, expiresMicros = p.EvalInto(&r, st, nowMicros, cost)
	return next, r, expiresMicros
}

// EvalInto is [Policy.Eval] writing the Result into *r (all of it): a
// backend's hot path then copies no Result or Policy around.
func (p *Policy) EvalInto(r *Result, st State, nowMicros, cost int64) (next State, expiresMicros int64) {
	*r = Result{Policy: *p}
	if st.Algorithm != p.Algorithm {
		st = State{Algorithm: p.Algorithm}
	}
	switch p.Algorithm {
	case Sliding, Fixed:
		return p.evalWindow(st, nowMicros, cost, r)
	default:
		return p.evalGCRA(st, nowMicros, cost, r)
	}
}

func (p *Policy) evalGCRA(st State, now, cost int64, r *Result) (State, int64) {
	t := p.emissionMicros()
	tau := p.burst() * t
	tat := max(st.T, now)
	newTAT := tat + cost*t
	if allowAt := newTAT - tau; allowAt > now {
		r.RetryAfter = micros(allowAt - now)
		r.ResetAfter = micros(gcraReset(tat-now, t))
		return st, tat
	}
	r.Allowed = true
	r.Remaining = (tau - (newTAT - now)) / t
	r.ResetAfter = micros(gcraReset(newTAT-now, t))
	return State{Algorithm: GCRA, T: newTAT}, newTAT
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

func (p *Policy) evalWindow(st State, now, cost int64, r *Result) (State, int64) {
	w := p.Rate.Per.Milliseconds()
	n := p.Rate.N
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
	if p.Algorithm == Fixed {
		prev = 0
	}
	r.ResetAfter = millis(w - elapsed)
	weighted := ceilDiv(prev*(w-elapsed), w) // previous window's weighted count
	k := n - curr - cost                     // room left for the previous window's share
	if weighted <= k {
		r.Allowed = true
		r.Remaining = k - weighted
		next := State{Algorithm: p.Algorithm, T: idx, Count: curr + cost, Prev: prev}
		life := w // Fixed: until the window's end
		if p.Algorithm == Sliding {
			life = 2 * w // the count still weighs in the next window
		}
		return next, (idx*w + life) * 1000
	}
	// Denied: find the earliest elapsed time at which the request fits.
	if p.Algorithm == Sliding && k >= 0 {
		// prev*(w-e) <= k*w  <=>  e >= w - floor(k*w/prev); prev > 0 here.
		if e := w - k*w/prev; e < w {
			r.RetryAfter = millis(e - elapsed)
			return st, stExpiry(st, w, p.Algorithm)
		}
	}
	retry := w - elapsed // the next window, where curr becomes prev
	if p.Algorithm == Sliding && curr > 0 {
		retry += w - (n-cost)*w/curr
	}
	r.RetryAfter = millis(retry)
	return st, stExpiry(st, w, p.Algorithm)
}

// stExpiry returns the expiry of an unchanged window state.
func stExpiry(st State, w int64, a Algorithm) int64 {
	if a == Sliding {
		return (st.T*w + 2*w) * 1000
	}
	return (st.T*w + w) * 1000
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

func micros(us int64) time.Duration { return time.Duration(us) * time.Microsecond }
func millis(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

// Combine turns the per-item results of one decision into its Decision:
// Allowed iff no non-shadow result denied, RetryAfter the latest RetryAfter of
// the violated policies. results is used as Decision.Results. Backends that
// found the decision denied must report, for the admitting items, the
// remaining quota without consumption ([Policy.Eval] with cost 0; [Uncharged]
// does it).
func Combine(results []Result) Decision {
	d := Decision{Allowed: true, Results: results}
	for _, r := range results {
		if !r.Allowed && !r.Policy.Shadow {
			d.Allowed = false
			d.RetryAfter = max(d.RetryAfter, r.RetryAfter)
		}
	}
	return d
}

// Uncharged sets, for a denied decision, the result of each admitting item
// to its quota as it stands: [Policy.Eval] with cost 0 over states[i] at
// nowMicros, as [Combine] asks of backends (nothing was consumed).
func Uncharged(results []Result, items []Item, states []State, nowMicros int64) {
	for i := range items {
		if results[i].Allowed {
			_, results[i], _ = items[i].Policy.Eval(states[i], nowMicros, 0)
		}
	}
}
