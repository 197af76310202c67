// Package memorylimit is the in-process backend of [ratelimit.Limiter]: exact
// for one process (a single instance, or the local fallback of redislimit),
// sharded, bounded, and with the same decisions as every other backend for the
// same calls at the same instants (it applies the reference semantics every backend shares).
//
// Keys are (subject, policy name) pairs, stored as a 64-bit hash keyed with a
// random per-Limiter seed (so a client cannot craft collisions; the chance of
// an accidental one among a million keys is about 3e-8), in 64 shards chosen by
// the subject, so all policies of one decision share one shard and one lock: a
// decision over several items is atomic and all-or-nothing. Expired keys are
// reclaimed lazily, by a periodic sweep, and when a shard is full. A full
// shard evicts expired keys first, then keys that are not blocking anyone,
// and only then the blocked keys nearest their expiry, so flooding the limiter
// with new keys cannot clear a block.
package memorylimit

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/internal/backend"
)

const numShards = 64

// Default option values.
const (
	DefaultMaxKeys       = 1 << 20
	DefaultSweepInterval = time.Minute
)

// Options configures a [Limiter]. The zero value is usable.
type Options struct {
	// Now returns the current time. Default: the wall time at New advanced
	// by the monotonic clock (see [Limiter]). Tests pass a fake clock.
	Now func() time.Time
	// MaxKeys bounds the number of (subject, policy) keys held; 0 means
	// DefaultMaxKeys (1,048,576). It is enforced per shard (MaxKeys/64,
	// at least 1), so the total may stay a little under MaxKeys.
	MaxKeys int
	// SweepInterval is the period of the background sweep that drops
	// expired keys and shrinks emptied shards. 0 means
	// DefaultSweepInterval; a negative value disables the sweep (call
	// [Limiter.Sweep] yourself).
	SweepInterval time.Duration
}

// Limiter is an in-process [ratelimit.Limiter]. It is safe for concurrent use.
// Create it with [New]; call [Limiter.Close] to stop its sweeper.
type Limiter struct {
	// shards come first: a Limiter is allocated in a size class that is a
	// multiple of 64 bytes, so each 64-byte shard fills one cache line and
	// two cores deciding on different shards never contend for a line.
	shards   [numShards]shard
	now      func() time.Time // Options.Now, or nil for the monotonic clock
	start    time.Time        // with now == nil: the clock's origin
	startUS  int64            // start in Unix µs
	seed     maphash.Seed
	perShard int

	// valid holds policies already validated, replaced round-robin (next):
	// validation was a tenth of a decision's cost, and the policies of a
	// service are few and fixed.
	valid [8]atomic.Pointer[ratelimit.Policy]
	next  atomic.Uint32

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

var _ ratelimit.Limiter = (*Limiter)(nil)

// key is the seeded hash of (subject, policy name).
type key uint64

type entry struct {
	st           backend.State
	expires      int64 // Unix µs after which st is the zero state
	blockedUntil int64 // Unix µs until which a request of cost 1 is denied
}

type shard struct {
	mu   sync.Mutex
	t    table
	peak int // the largest t.n since the table was last shrunk
	_    [16]byte
}

// New returns a Limiter configured by opts. Its sweeper runs until Close.
func New(opts Options) *Limiter {
	l := &Limiter{
		now:  opts.Now,
		seed: maphash.MakeSeed(),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	if l.now == nil {
		l.start = time.Now()
		l.startUS = l.start.UnixMicro()
	}
	maxKeys := opts.MaxKeys
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	l.perShard = max(1, maxKeys/numShards)
	interval := opts.SweepInterval
	if interval == 0 {
		interval = DefaultSweepInterval
	}
	if interval > 0 {
		go l.sweeper(interval)
	} else {
		close(l.done)
	}
	return l
}

// Close stops the background sweeper. It is idempotent. The Limiter still
// answers after Close, without the periodic sweep.
func (l *Limiter) Close() error {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
	return nil
}

func (l *Limiter) sweeper(interval time.Duration) {
	defer close(l.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.Sweep()
		}
	}
}

// nowMicros returns the time in Unix µs: Options.Now's, or by default the
// wall time at New plus the monotonic time since. That reads one clock, not
// the two of time.Now (a quarter of a decision's cost on this machine), and
// no step of the wall clock can shorten or lengthen a window.
func (l *Limiter) nowMicros() int64 {
	if l.now != nil {
		return l.now().UnixMicro()
	}
	return l.startUS + time.Since(l.start).Microseconds()
}

// Sweep drops every expired key now and rebuilds shards that shrank to a
// quarter of their peak, returning their memory to the runtime.
func (l *Limiter) Sweep() {
	now := l.nowMicros()
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		s.t.filter(func(sl *slot) bool { return sl.e.expires > now }, never)
		s.maybeShrink()
		s.mu.Unlock()
	}
}

func never() bool { return false }

// maybeShrink rebuilds s.t when it holds under a quarter of its peak, so
// the memory of a past flood of keys returns to the runtime.
func (s *shard) maybeShrink() {
	if n := s.t.n; n < s.peak/4 {
		if n == 0 {
			s.t.slots = nil
		} else {
			s.t.resize(fitSlots(n))
		}
		s.peak = n
	}
}

// Len returns the number of keys held, expired or not.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += s.t.n
		s.mu.Unlock()
	}
	return n
}

// Decide implements [ratelimit.Limiter]: it consumes the items' costs if and
// only if every non-shadow policy admits, writing the decision into *d. It
// fails only for invalid items (errors wrapping [ratelimit.ErrInvalid]); ctx
// is not consulted.
func (l *Limiter) Decide(ctx context.Context, d *ratelimit.Decision, subject string, items ...ratelimit.Item) error {
	return l.decide(d, subject, items, false)
}

// Peek implements [ratelimit.Limiter]: it writes the Decision Decide would
// write now, consuming nothing.
func (l *Limiter) Peek(ctx context.Context, d *ratelimit.Decision, subject string, items ...ratelimit.Item) error {
	return l.decide(d, subject, items, true)
}

// Reset implements [ratelimit.Limiter]; it never fails.
func (l *Limiter) Reset(ctx context.Context, subject, policy string) error {
	h := l.hash(subject)
	s := &l.shards[h%numShards]
	s.mu.Lock()
	s.t.delete(keyOf(h, policy))
	s.mu.Unlock()
	return nil
}

func (l *Limiter) hash(subject string) uint64 { return maphash.String(l.seed, subject) }

// keyOf combines the subject's hash with the policy name (FNV-1a steps
// over the name, then a 64-bit finalizer); it is never 0, the empty slot.
func keyOf(h uint64, policy string) key {
	for i := 0; i < len(policy); i++ {
		h ^= uint64(policy[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return key(max(h, 1))
}

func (l *Limiter) decide(d *ratelimit.Decision, subject string, items []ratelimit.Item, peek bool) error {
	if err := l.validate(items); err != nil {
		backend.Fail(d)
		return err
	}
	results := backend.Results(d, len(items))
	if len(items) == 1 {
		l.decideOne(d, subject, &items[0], peek)
		return nil
	}
	var (
		keysBuf [4]key
		prevBuf [4]backend.State
		nextBuf [4]entry
	)
	keys, prev, next := keysBuf[:0], prevBuf[:0], nextBuf[:0]
	if len(items) > len(keysBuf) {
		keys, prev, next = make([]key, 0, len(items)), make([]backend.State, 0, len(items)), make([]entry, 0, len(items))
	}
	h := l.hash(subject)
	s := &l.shards[h%numShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	now := l.nowMicros() // under the lock: decisions of one subject are ordered in time
	for i := range items {
		it := &items[i]
		k := keyOf(h, it.Policy.Name)
		keys = append(keys, k)
		var st backend.State
		if j, ok := s.t.find(k); ok {
			if e := &s.t.slots[j].e; e.expires > now {
				st = e.st
			}
		}
		prev = append(prev, st)
		st, exp := backend.Eval(&it.Policy, &results[i], st, now, backend.Cost(it))
		next = append(next, entry{st: st, expires: exp})
	}
	backend.Combine(d, items)
	if !d.Allowed {
		backend.Uncharged(results, items, prev, now)
		return nil
	}
	if peek {
		return nil
	}
	for i, it := range items {
		if !results[i].Allowed {
			continue // a shadow policy that would deny consumes nothing
		}
		j, found := s.t.find(keys[i])
		s.store(keys[i], j, found, admitted(&it.Policy, next[i], results[i].Remaining, now), now, l.perShard, keys)
	}
	return nil
}

// admitted returns the entry to store after an admission: e, and when that
// exhausted the quota, until when a request of cost 1 is denied.
func admitted(p *ratelimit.Policy, e entry, remaining, now int64) entry {
	if remaining == 0 {
		var r1 ratelimit.Result
		backend.Eval(p, &r1, e.st, now, 1)
		e.blockedUntil = now + r1.RetryAfter.Microseconds()
	}
	return e
}

// store writes e as k's entry: into slot j if found (from s.t.find, with
// nothing inserted since), otherwise as a new key, first making room in a
// full shard without evicting the keys in protect.
func (s *shard) store(k key, j int, found bool, e entry, now int64, perShard int, protect []key) {
	if found {
		s.t.slots[j].e = e
		return
	}
	if s.t.n >= perShard {
		s.evict(now, perShard, protect)
	}
	s.t.insert(k, e)
	s.peak = max(s.peak, s.t.n)
}

// decideOne is decide for one (valid) item, writing its result into
// d.Results[0]: the common case, without the bookkeeping of several items.
func (l *Limiter) decideOne(d *ratelimit.Decision, subject string, it *ratelimit.Item, peek bool) {
	h := l.hash(subject)
	k := keyOf(h, it.Policy.Name)
	s := &l.shards[h%numShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	now := l.nowMicros()
	var st backend.State
	j, found := s.t.find(k)
	if found && s.t.slots[j].e.expires > now {
		st = s.t.slots[j].e.st
	}
	r := &d.Results[0]
	next, exp := backend.Eval(&it.Policy, r, st, now, backend.Cost(it))
	d.Allowed, d.RetryAfter = r.Allowed || it.Policy.Shadow, r.RetryAfter
	if d.Allowed {
		d.RetryAfter = 0
	}
	if !r.Allowed || peek {
		return // a denial (or a shadow policy's) consumes nothing
	}
	s.store(k, j, found, admitted(&it.Policy, entry{st: next, expires: exp}, r.Remaining, now), now, l.perShard, nil)
}

// validate is [backend.ValidateItems], remembering the policies of
// one-item decisions that passed: for those, only the cost is checked again.
func (l *Limiter) validate(items []ratelimit.Item) error {
	if len(items) != 1 {
		return backend.ValidateItems(items)
	}
	it := &items[0]
	for i := range l.valid {
		if p := l.valid[i].Load(); p != nil && *p == it.Policy {
			if it.Cost >= 0 && backend.Cost(it) <= p.Limit() {
				return nil
			}
			break
		}
	}
	if err := backend.ValidateItems(items); err != nil {
		return err
	}
	p := it.Policy
	l.valid[l.next.Add(1)%uint32(len(l.valid))].Store(&p)
	return nil
}

// evict makes room for at least one key in a full shard: expired keys first,
// then unblocked keys (up to an eighth of the shard, to amortize the scan),
// and only if every key is blocking, the blocked key nearest its expiry. It
// keeps the keys of the decision being written (protect).
func (s *shard) evict(now int64, limit int, protect []key) {
	kept := func(sl *slot) bool {
		for _, k := range protect {
			if sl.k == k {
				return true
			}
		}
		return false
	}
	s.t.filter(func(sl *slot) bool { return sl.e.expires > now || kept(sl) }, never)
	if s.t.n < limit {
		return
	}
	target := limit - max(1, limit/8)
	s.t.filter(func(sl *slot) bool { return sl.e.blockedUntil > now || kept(sl) }, func() bool { return s.t.n <= target })
	if s.t.n < limit {
		return
	}
	victim := -1
	for i := range s.t.slots {
		sl := &s.t.slots[i]
		if sl.k != 0 && !kept(sl) && (victim < 0 || sl.e.expires < s.t.slots[victim].e.expires) {
			victim = i
		}
	}
	if victim >= 0 {
		s.t.deleteAt(victim)
	}
}
