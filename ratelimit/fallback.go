package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/journalsvc/journal/ratelimit/internal/shardmap"
)

// DefaultFallbackSubjects is the default bound of FallbackOptions.MaxSubjects.
const DefaultFallbackSubjects = 1 << 16

// FallbackOptions configures a [Fallback]. The zero value is usable.
type FallbackOptions struct {
	// Instances returns N_live, the number of instances that share the
	// primary's store (for redislimit: [Limiter.LiveInstances] of
	// redislimit, remembered from before an outage). Values below 1 count
	// as 1. Default: always 1.
	Instances func() int64
	// MaxSubjects bounds the (subject, policy) reports remembered from the
	// primary. Default [DefaultFallbackSubjects]; when full, reports that no
	// longer matter go first, then arbitrary ones (their subjects then start
	// from a fresh share, as unknown subjects do).
	MaxSubjects int
	// Now is the clock that dates the primary's reports. Default time.Now.
	// It must agree with the local limiter's clock.
	Now func() time.Time
}

// Fallback is a [Limiter] that decides with a primary limiter whose store is
// shared by every instance (redislimit) and, when the primary reports that
// store unavailable (an error wrapping [ErrUnavailable]), decides each item by
// its policy's [FailMode]:
//
//   - FailClosed: the decision fails with an error wrapping [ErrUnavailable]
//     that names the policy.
//   - FailOpen: the item admits, reporting its policy's full limit as
//     remaining.
//   - FailLocal: the local limiter decides the item at this instance's share
//     of the policy: rate and burst divided by the live instances
//     (FallbackOptions.Instances), rounded up, and at least the item's cost.
//
// Results decided this way are Degraded and name the configured policy (not
// its share). This is the only place where fail modes are decided.
//
// A subject the instance has seen continues from the state the primary last
// reported, not from a fresh quota. Fallback remembers, per subject and
// policy, the remaining quota and the retry time of the primary's last
// decision (admitted, denied or peeked). The first degraded decision after a
// report sets the local state to the share of that remaining quota, rounded
// up, and to no quota at all while the report's retry time has not passed, so
// a degraded decision never grants what the store had denied. From there the
// share replenishes at its rate while the store stays unavailable. When the
// primary's error also wraps [ErrSlow] (the store missed a deadline but is
// not known to be down, so it may be granting the reported quota to others
// right now), the local state starts from at most one unit (none while the
// retry time has not passed), for a subject never seen too, and then only
// what the share's rate returns is granted: reports that arrive while it
// stays slow (it answers some calls and misses others) lower the local state
// but never raise it. Once the store is known to be
// down, the share of the reported quota (or a fresh share) is granted after
// all. Hence,
// across n instances and an outage of length t, a GCRA policy of rate N per D
// admits at most what the store last reported as remaining, plus N*t/D, plus
// up to 2n for rounding; a subject never seen, or last seen longer ago than
// its policy's period, starts from a fresh share (at most its burst across
// the instances).
//
// Fallback is safe for concurrent use. The primary and the local limiter are
// not closed by it.
type Fallback struct {
	primary, local Limiter
	instances      func() int64
	now            func() time.Time
	seen           seenTable
}

var _ Limiter = (*Fallback)(nil)

// NewFallback returns a Fallback deciding with primary, and with local while
// primary's store is unavailable. local should be an in-process limiter used
// by nothing else (memorylimit). It returns an error wrapping [ErrInvalid]
// when primary or local is nil or MaxSubjects is negative.
func NewFallback(primary, local Limiter, opts FallbackOptions) (*Fallback, error) {
	if primary == nil || local == nil {
		return nil, fmt.Errorf("%w fallback: nil limiter", ErrInvalid)
	}
	if opts.MaxSubjects < 0 {
		return nil, fmt.Errorf("%w fallback: negative MaxSubjects", ErrInvalid)
	}
	if opts.MaxSubjects == 0 {
		opts.MaxSubjects = DefaultFallbackSubjects
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	f := &Fallback{primary: primary, local: local, instances: opts.Instances, now: opts.Now}
	f.seen.init(opts.MaxSubjects)
	return f, nil
}

// Decide implements [Limiter]: the primary's decision, or, when its store is
// unavailable, the decision of each policy's fail mode (see [Fallback]).
// Errors: invalid items wrap [ErrInvalid]; a FailClosed policy that cannot be
// decided wraps [ErrUnavailable]; a cancelled ctx returns the primary's error.
func (f *Fallback) Decide(ctx context.Context, d *Decision, subject string, items ...Item) error {
	return f.decide(ctx, d, subject, items, false)
}

// Peek implements [Limiter] like [Fallback.Decide], consuming nothing.
func (f *Fallback) Peek(ctx context.Context, d *Decision, subject string, items ...Item) error {
	return f.decide(ctx, d, subject, items, true)
}

// Reset implements [Limiter]: it resets the policy in the primary and in the
// local limiter and forgets the primary's report. The primary's error (for
// example its store being unavailable) is returned.
func (f *Fallback) Reset(ctx context.Context, subject, policy string) error {
	f.seen.forget(subject, policy)
	_ = f.local.Reset(ctx, subject, policy)
	return f.primary.Reset(ctx, subject, policy)
}

func (f *Fallback) decide(ctx context.Context, d *Decision, subject string, items []Item, peek bool) error {
	var err error
	if peek {
		err = f.primary.Peek(ctx, d, subject, items...)
	} else {
		err = f.primary.Decide(ctx, d, subject, items...)
	}
	if err == nil {
		if !d.Degraded() {
			f.seen.record(subject, items, d.Results, f.now().UnixMicro())
		}
		return nil
	}
	if !errors.Is(err, ErrUnavailable) {
		return fail(d, err)
	}
	return f.without(ctx, d, subject, items, peek, err)
}

// seedMode is how a report set the local state: not yet, while the store
// was slow (at most a unit), or while it was down (the share of the quota).
type seedMode uint8

const (
	unseeded seedMode = iota
	seededSlow
	seededDown
)

// fail leaves d without results, as a Limiter that returns err must.
func fail(d *Decision, err error) error {
	*d = Decision{Results: d.Results[:0]}
	return err
}

// without decides items by their fail modes (see [Fallback]) into d.
func (f *Fallback) without(ctx context.Context, d *Decision, subject string, items []Item, peek bool, cause error) error {
	n := int64(1)
	if f.instances != nil {
		n = max(f.instances(), 1)
	}
	var buf [4]Item
	shares := buf[:0]
	for _, it := range items {
		switch it.Policy.Fail {
		case FailClosed:
			if !it.Policy.Shadow {
				return fail(d, fmt.Errorf("%w: policy %q fails closed: %w", ErrUnavailable, it.Policy.Name, cause))
			}
		case FailLocal:
			shares = append(shares, Item{Policy: it.Policy.share(n, it.Cost), Cost: it.Cost})
		}
	}
	allowed, retry := true, time.Duration(0)
	d.Results = d.Results[:0]
	if len(shares) > 0 {
		mode := seededDown
		if errors.Is(cause, ErrSlow) {
			mode = seededSlow
		}
		if err := f.seen.seed(ctx, f.local, d, subject, items, shares, n, f.now().UnixMicro(), mode); err != nil {
			return fail(d, err)
		}
		var err error
		if peek {
			err = f.local.Peek(ctx, d, subject, shares...)
		} else {
			err = f.local.Decide(ctx, d, subject, shares...)
		}
		if err != nil {
			return fail(d, err)
		}
		allowed, retry = d.Allowed, d.RetryAfter
	}
	// d.Results holds the shares' results; move each to its item's place
	// (from the end, so none is overwritten before it moves).
	if cap(d.Results) < len(items) {
		d.Results = append(make([]Result, 0, len(items)), d.Results...)
	}
	d.Results = d.Results[:len(items)]
	j := len(shares)
	for i := len(items) - 1; i >= 0; i-- {
		r := &d.Results[i]
		if p := &items[i].Policy; p.Fail == FailLocal {
			j--
			*r = d.Results[j]
		} else {
			*r = Result{Allowed: true, Remaining: p.Limit()}
		}
		r.Degraded = true
	}
	d.Allowed, d.RetryAfter = allowed, retry
	return nil
}

// share returns p's share for one of n instances deciding without the shared
// store: rate and burst divided by n, rounded up, and at least cost (so a
// request that fits the whole policy still fits one share). n < 1 counts as 1.
func (p Policy) share(n, cost int64) Policy {
	n, cost = max(n, 1), max(cost, 1)
	div := func(x int64) int64 { return max((x+n-1)/n, cost) }
	p.Rate.N = div(p.Rate.N)
	if p.Burst > 0 {
		p.Burst = div(p.Burst)
	}
	return p
}

// seenTable remembers the primary's last report per (subject, policy):
// sharded by subject, so the items of one decision share a lock, and bounded.
type seenTable struct {
	shardmap.Table[report]
	perShard int
}

// report is what the primary last said about one policy of one subject.
type report struct {
	remaining int64
	retryAt   int64 // Unix µs before which the policy denies a request of this cost
	at        int64 // Unix µs of the report
	expires   int64 // Unix µs after which the report no longer constrains anything
	seeded    seedMode
	unknown   bool // no report: made by a degraded decision while the store was slow
}

func (t *seenTable) init(max int) {
	t.Init()
	t.perShard = (max + shardmap.N - 1) / shardmap.N
}

// record stores the primary's results for subject's items, reported at now
// (µs).
func (t *seenTable) record(subject string, items []Item, results []Result, now int64) {
	s, h := t.Shard(subject)
	s.Mu.Lock()
	defer s.Mu.Unlock()
	for i := range results {
		r, p := &results[i], &items[i].Policy
		k := shardmap.Key(h, p.Name)
		rep := report{remaining: r.Remaining, at: now}
		if !r.Allowed {
			rep.retryAt = now + r.RetryAfter.Microseconds()
		}
		// A report constrains the share until the policy's period has
		// passed after it (the whole quota is back by then) and its retry
		// time has come.
		rep.expires = max(now+p.Rate.Per.Microseconds(), rep.retryAt)
		if old, ok := s.M[k]; ok && old.remaining == rep.remaining && old.retryAt == rep.retryAt && old.seeded == unseeded {
			continue // the same report again: keep the map write off the hot path
		}
		if _, ok := s.M[k]; !ok && len(s.M) >= t.perShard {
			evictReports(s, now)
		}
		s.M[k] = rep
	}
}

// evictReports drops the reports of s that no longer matter and, if none
// did, one arbitrary report. s.Mu is held.
func evictReports(s *shardmap.Shard[report], now int64) {
	n := len(s.M)
	var victim uint64
	for k, r := range s.M {
		if r.expires <= now {
			delete(s.M, k)
		} else {
			victim = k
		}
	}
	if len(s.M) == n {
		delete(s.M, victim)
	}
}

// forget drops the report of (subject, policy).
func (t *seenTable) forget(subject, policy string) {
	s, h := t.Shard(subject)
	s.Mu.Lock()
	delete(s.M, shardmap.Key(h, policy))
	s.Mu.Unlock()
}

// seed sets, for each FailLocal item with a report not yet applied in mode,
// the local state of its share to the share of the reported remaining quota
// (none while the report's retry time has not passed; in mode seededSlow at
// most a unit, also for a subject never seen, and never more than the local
// state already holds). A report applied while the
// store was slow is applied again once it is down. shares holds the FailLocal
// items' shares in item order; d is scratch space for the decisions that
// seed. Holding the shard's lock while seeding makes every concurrent
// degraded decision of the subject see the seeded state.
func (t *seenTable) seed(ctx context.Context, local Limiter, d *Decision, subject string, items, shares []Item, n, now int64, mode seedMode) error {
	s, h := t.Shard(subject)
	s.Mu.Lock()
	defer s.Mu.Unlock()
	j := 0
	for i := range items {
		it := &items[i]
		if it.Policy.Fail != FailLocal {
			continue
		}
		sh := shares[j].Policy
		j++
		k := shardmap.Key(h, it.Policy.Name)
		rep, known := s.M[k]
		if !known {
			if mode == seededDown {
				continue // never seen: a fresh share
			}
			// Never seen, and the store may be granting it everything
			// now: no quota until the store answers or is known down.
			if len(s.M) >= t.perShard {
				evictReports(s, now)
			}
			rep = report{unknown: true, expires: now + it.Policy.Rate.Per.Microseconds()}
		}
		if rep.seeded >= mode {
			continue
		}
		rep.seeded = mode
		s.M[k] = rep
		left := min((rep.remaining+n-1)/n, sh.Limit())
		if mode == seededSlow {
			// The store may be granting the reported quota to others now:
			// at most one unit (the instance's rounding), none while the
			// report's retry time has not passed. A report lowers the local
			// state but never raises it: the store answers some calls of a
			// saturated process and misses others, and a unit granted anew
			// after each answer would add up to any number.
			left = min(left, 1)
			if rep.unknown {
				left = 1
			}
			if rep.retryAt > now {
				left = 0
			}
			if err := lower(ctx, local, d, subject, sh, left); err != nil {
				return err
			}
			continue
		}
		if err := local.Reset(ctx, subject, it.Policy.Name); err != nil {
			return err
		}
		if rep.unknown || rep.expires <= now {
			continue // the whole quota is back: a fresh share
		}
		if rep.retryAt > now {
			left = 0
		}
		if used := sh.Limit() - left; used > 0 {
			if err := local.Decide(ctx, d, subject, Item{Policy: sh, Cost: used}); err != nil {
				return err
			}
		}
	}
	return nil
}

// lower spends the local quota of share sh for subject down to at most
// left units, leaving less alone. d is scratch space.
func lower(ctx context.Context, local Limiter, d *Decision, subject string, sh Policy, left int64) error {
	if err := local.Peek(ctx, d, subject, Item{Policy: sh, Cost: 1}); err != nil {
		return err
	}
	have := int64(0)
	if d.Allowed {
		have = d.Results[0].Remaining + 1 // Peek shows what one more unit leaves
	}
	if have <= left {
		return nil
	}
	return local.Decide(ctx, d, subject, Item{Policy: sh, Cost: have - left})
}
