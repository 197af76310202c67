// Package memorylimit is the in-process backend of [ratelimit.Limiter]: exact
// for one process (a single instance, or the local share of a
// [ratelimit.Fallback]), bounded, and with the same decisions as every other
// backend for the same calls at the same instants (it applies the reference
// semantics every backend shares).
//
// Keys are (subject, policy name) pairs, stored as a 63-bit hash keyed with a
// random per-Limiter seed (so a client cannot craft collisions; the chance of
// an accidental one among a million keys is about 5e-8) in 64 shards chosen
// by the subject, so the keys of one decision share a shard. A decision on
// keys the limiter holds takes no shared lock: it finds them in its shard's
// index without one, locks their slots and writes their states in place, so
// deciding writes the cache lines of those states and nothing else, and
// decisions on different keys do not wait for each other. A decision over
// several items locks all of their slots, so it is atomic and
// all-or-nothing. Inserting a key, and every change to an index, takes the
// shard's mutex. The states sit in the order their keys arrived, so keys
// seen together are decided with few cache misses.
//
// Memory: a key takes a 32-byte slot and an 8-byte index entry, in indexes
// kept between half and three quarters full. Expired keys are reclaimed by a
// periodic sweep and when a shard is full. A full shard evicts expired keys
// first, then keys that are not blocking anyone, and only then the blocked
// keys nearest their expiry, so flooding the limiter with new keys cannot
// clear a block.
package memorylimit

import (
	"cmp"
	"context"
	"github.com/journalsvc/journal/internal/tick"
	"hash/maphash"
	"slices"
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
	// Now returns the current time, which must be after 1970. Default: the
	// wall time at New advanced by the monotonic clock (see [Limiter]).
	// Tests pass a fake clock.
	Now func() time.Time
	// MaxKeys bounds the number of (subject, policy) keys held; 0 means
	// DefaultMaxKeys (1,048,576). It is enforced per shard (MaxKeys/64,
	// at least 1), so the total may stay a little under MaxKeys; a
	// decision over more new keys than its shard may hold stores them all.
	MaxKeys int
	// SweepInterval is the period of the background sweep that drops
	// expired keys and shrinks emptied shards. 0 means
	// DefaultSweepInterval; a negative value disables the sweep (call
	// [Limiter.Sweep] yourself).
	SweepInterval time.Duration
}

// Limiter is an in-process [ratelimit.Limiter]. It is safe for concurrent use.
// Create it with [New]; call [Limiter.Close] to stop its sweeper.
//
// By default it reads the time as the wall time at New plus the monotonic
// time since: one clock read per decision, and no step of the wall clock can
// shorten or lengthen a window.
type Limiter struct {
	shards   [numShards]shard
	arena    arena
	now      func() time.Time // Options.Now, or nil for the monotonic clock
	start    time.Time        // with now == nil: the clock's origin
	startUS  int64            // start in Unix µs
	seed     maphash.Seed
	perShard int

	// specs holds the policies already validated, with what deciding under
	// them needs, replaced round-robin (next): a service's policies (and a
	// Fallback's shares of them) are few and fixed, and validating one costs
	// more than deciding.
	specs [16]atomic.Pointer[spec]
	next  atomic.Uint32

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

var _ ratelimit.Limiter = (*Limiter)(nil)

// shard is one 64-byte cache line. A decision on existing keys only reads
// it (ix); the mutex and counters change when keys are inserted or removed.
type shard struct {
	ix   atomic.Pointer[index]
	mu   sync.Mutex
	n    int // keys held
	peak int // the largest n since ix was last shrunk
	_    [32]byte
}

// spec is a validated policy with what deciding under it needs.
type spec struct {
	policy ratelimit.Policy
	eval   backend.Spec
	name   uint64 // the seeded hash of policy.Name, mixed into its keys
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
	for i := range l.shards {
		l.shards[i].ix.Store(&index{})
	}
	l.arena.chunks.Store(new([]*chunk))
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
	tick.Every(l.stop, interval, func() bool { l.Sweep(); return true })
}

// nowMicros returns the time in Unix µs (see [Limiter]).
func (l *Limiter) nowMicros() int64 {
	if l.now != nil {
		return l.now().UnixMicro()
	}
	return l.startUS + time.Since(l.start).Microseconds()
}

// Sweep drops every expired key now and rebuilds the indexes of shards
// that shrank to a quarter of their peak; the memory of the slots and
// indexes they held returns to the runtime.
func (l *Limiter) Sweep() {
	now := l.nowMicros()
	isExpired := func(m uint64) bool { return expired(m, now) }
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		s.removeWhere(&l.arena, nil, isExpired, func() bool { return false })
		if s.n < s.peak/4 {
			s.ix.Store(s.ix.Load().rebuilt(fitEntries(s.n)))
			s.peak = s.n
		}
		s.mu.Unlock()
	}
}

// removeWhere removes, in index order, each key not in keep for which drop
// reports true (checked again under the slot's lock), until done reports
// true. s.mu is held.
func (s *shard) removeWhere(a *arena, keep []ref, drop func(meta uint64) bool, done func() bool) {
	x := s.ix.Load()
	for i := 0; i < len(x.e) && !done(); {
		v := x.e[i].Load()
		if v == 0 {
			i++
			continue
		}
		id := uint32(v) - 1
		sl := a.slot(id)
		if kept(keep, sl.k.Load()&^locked) || !drop(sl.meta.Load()) || !s.remove(a, i, id, drop) {
			i++
		}
		// A removal moves a following entry into i, never an unvisited one
		// before it: look at i again.
	}
}

// kept reports whether k is the key of one of refs.
func kept(refs []ref, k uint64) bool {
	for i := range refs {
		if refs[i].key == k {
			return true
		}
	}
	return false
}

// Len returns the number of keys held, expired or not.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += s.n
		s.mu.Unlock()
	}
	return n
}

// Decide implements [ratelimit.Limiter]: it consumes the items' costs if and
// only if every non-shadow policy admits, writing the decision into *d. It
// fails only for invalid items (errors wrapping [ratelimit.ErrInvalid]); ctx
// is not consulted. With room in d.Results for the items, it allocates
// nothing.
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
	k := keyOf(h, maphash.String(l.seed, policy))
	s.mu.Lock()
	if pos, id := s.ix.Load().find(&l.arena, k); pos >= 0 {
		s.remove(&l.arena, pos, id, nil)
	}
	s.mu.Unlock()
	return nil
}

func (l *Limiter) hash(subject string) uint64 { return maphash.String(l.seed, subject) }

// keyOf combines the subject's hash with the policy name's (a 64-bit
// finalizer over their sum); it is never empty or a tombstone.
func keyOf(subject, name uint64) uint64 {
	h := subject + name*0x9e3779b97f4a7c15
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return max(h&^locked, tombstone+1)
}

// ref is one item of a decision being made: its key and, once found and
// locked, its slot.
type ref struct {
	sp    *spec
	item  int // the item's index, which its result has in the Decision
	key   uint64
	cost  int64
	id    uint32        // the slot's id in the arena (lock order)
	sl    *slot         // the slot, or nil when the key is absent
	st    backend.State // the state before the decision
	next  backend.State // the state after it, stored when store is true
	exp   int64         // when next expires (Unix µs)
	store bool
}

func (l *Limiter) decide(d *ratelimit.Decision, subject string, items []ratelimit.Item, peek bool) error {
	switch n := len(items); {
	case n == 1:
		var refs [1]ref
		return l.decideRefs(d, subject, items, refs[:], peek)
	case n <= 4:
		var refs [4]ref
		return l.decideRefs(d, subject, items, refs[:n], peek)
	default:
		return l.decideRefs(d, subject, items, make([]ref, n), peek)
	}
}

// decideRefs decides items, using refs (one per item) as scratch space.
func (l *Limiter) decideRefs(d *ratelimit.Decision, subject string, items []ratelimit.Item, refs []ref, peek bool) error {
	if err := l.compile(items, refs); err != nil {
		backend.Fail(d)
		return err
	}
	h := l.hash(subject)
	for i := range refs {
		refs[i].key = keyOf(h, refs[i].sp.name)
	}
	backend.Results(d, len(items))
	s := &l.shards[h%numShards]
	if s.ix.Load().locate(&l.arena, refs) && lockAll(refs) {
		now := l.eval(d, refs, peek)
		s.write(&l.arena, refs, d, now)
		return nil
	}
	// A key is absent, or its slot no longer holds it (the index read was
	// stale, or two keys share a fingerprint): decide under the mutex.
	return l.decideLocked(s, d, refs, peek)
}

// decideLocked decides under the shard's mutex, for decisions on keys the
// shard may not hold: they are inserted if the decision admits them.
func (l *Limiter) decideLocked(s *shard, d *ratelimit.Decision, refs []ref, peek bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for roomMade := false; ; {
		x := s.ix.Load()
		for i := range refs {
			r := &refs[i]
			r.sl = nil
			if pos, id := x.find(&l.arena, r.key); pos >= 0 {
				r.id, r.sl = id, l.arena.slot(id)
			}
		}
		if !lockAll(refs) { // under s.mu, keys stay where they are
			continue
		}
		now := l.eval(d, refs, peek)
		inserts := 0
		for i := range refs {
			if refs[i].sl == nil && refs[i].store {
				inserts++
			}
		}
		if inserts == 0 || roomMade || s.n+inserts <= l.perShard {
			s.write(&l.arena, refs, d, now)
			return nil
		}
		unlockAll(refs)
		s.evict(&l.arena, now, max(0, l.perShard-inserts), l.perShard, refs)
		roomMade = true
	}
}

// eval reads the time and evaluates every ref into d, all of their slots
// being locked: the all-or-nothing decision of the reference semantics.
// It marks the refs whose new state is to be stored and returns the time.
func (l *Limiter) eval(d *ratelimit.Decision, refs []ref, peek bool) int64 {
	now := l.nowMicros() // with the slots locked: one key's decisions are ordered in time
	d.Allowed, d.RetryAfter = true, 0
	for i := range refs {
		r := &refs[i]
		r.st = backend.State{}
		if r.sl != nil {
			r.st = decode(&r.sp.eval, r.sl.a, r.sl.b, r.sl.meta.Load(), now)
		}
		res := &d.Results[r.item]
		r.next, r.exp = r.sp.eval.Eval(res, r.st, now, r.cost)
		if !res.Allowed && !r.sp.policy.Shadow {
			d.Allowed = false
			d.RetryAfter = max(d.RetryAfter, res.RetryAfter)
		}
	}
	for i := range refs {
		r := &refs[i]
		res := &d.Results[r.item]
		r.store = d.Allowed && res.Allowed && !peek // a shadow policy's denial consumes nothing
		if !d.Allowed && res.Allowed {
			r.sp.eval.Eval(res, r.st, now, 0) // its quota as it stands: nothing was consumed
		}
	}
	return now
}

// write stores the new states of refs (inserting absent keys, under s.mu)
// and unlocks their slots.
func (s *shard) write(ar *arena, refs []ref, d *ratelimit.Decision, now int64) {
	for i := range refs {
		r := &refs[i]
		if !r.store {
			continue
		}
		a, b := encode(r.next)
		// A key whose quota this exhausted blocks until a request of cost 1
		// is admitted again; eviction keeps such keys longest.
		var blockedUntil int64
		blocks := d.Results[r.item].Remaining == 0
		if blocks {
			var one ratelimit.Result
			r.sp.eval.Eval(&one, r.next, now, 1)
			blocks, blockedUntil = !one.Allowed, now+one.RetryAfter.Microseconds()
		}
		m := makeMeta(r.sp.eval.Algorithm(), r.exp, blocks, blockedUntil)
		if r.sl == nil {
			s.insert(ar, r.key, a, b, m)
			continue
		}
		r.sl.a, r.sl.b = a, b
		if r.sl.meta.Load() != m { // it changes about once a second per key
			r.sl.meta.Store(m)
		}
	}
	unlockAll(refs)
}

// evict removes keys until the shard holds at most limit: expired keys
// first, then keys that block no request (an eighth of perShard more than
// needed, so that the scan is not repeated for every new key), and only if
// every key blocks, the blocked keys nearest their expiry. It never removes
// the keys of refs. s.mu is held; no slot is locked.
func (s *shard) evict(a *arena, now int64, limit, perShard int, refs []ref) {
	s.removeWhere(a, refs, func(m uint64) bool { return expired(m, now) }, func() bool { return false })
	target := limit - max(1, perShard/8)
	s.removeWhere(a, refs, func(m uint64) bool { return !blocking(m, now) }, func() bool { return s.n <= target })
	for s.n > limit {
		x := s.ix.Load()
		victim, at := -1, uint64(0)
		for i := range x.e {
			v := x.e[i].Load()
			if v == 0 {
				continue
			}
			sl := a.slot(uint32(v) - 1)
			if m := sl.meta.Load(); !kept(refs, sl.k.Load()&^locked) && (victim < 0 || expiry(m) < at) {
				victim, at = i, expiry(m)
			}
		}
		if victim < 0 {
			return
		}
		s.remove(a, victim, uint32(x.e[victim].Load())-1, nil)
	}
}

// compile sets the spec and cost of each item, validating what was not
// validated before. Invalid items return backend.ValidateItems' error.
func (l *Limiter) compile(items []ratelimit.Item, refs []ref) error {
	if len(items) == 0 {
		return backend.ValidateItems(items)
	}
	for i := range items {
		it := &items[i]
		sp := l.lookup(&it.Policy)
		if sp == nil || it.Cost < 0 || backend.Cost(it) > sp.policy.Limit() {
			if err := backend.ValidateItems(items); err != nil {
				return err
			}
			if sp == nil {
				sp = l.add(&it.Policy)
			}
		}
		refs[i] = ref{sp: sp, item: i, cost: backend.Cost(it)}
		for j := range i {
			if refs[j].sp.policy.Name == it.Policy.Name {
				return backend.ValidateItems(items)
			}
		}
	}
	return nil
}

// lookup returns the spec of p if p was validated before, else nil.
func (l *Limiter) lookup(p *ratelimit.Policy) *spec {
	for i := range l.specs {
		if sp := l.specs[i].Load(); sp != nil && sp.policy == *p {
			return sp
		}
	}
	return nil
}

// add remembers the spec of p, which is valid.
func (l *Limiter) add(p *ratelimit.Policy) *spec {
	sp := &spec{policy: *p, eval: backend.NewSpec(p), name: maphash.String(l.seed, p.Name)}
	l.specs[l.next.Add(1)%uint32(len(l.specs))].Store(sp)
	return sp
}

// locate finds the slot of each ref's key in x, without a lock, and
// reports whether x holds them all.
func (x *index) locate(a *arena, refs []ref) bool {
	for i := range refs {
		r := &refs[i]
		pos, id := x.find(nil, r.key)
		if pos < 0 {
			return false
		}
		if r.id, r.sl = id, a.slot(id); r.sl == nil {
			return false
		}
	}
	return true
}

// lockAll locks the slots of refs in the order of their ids, so that two
// decisions never wait for each other. It reports false, holding nothing,
// when a slot does not hold its key (any more). For one ref, the first
// access to its slot's line is the compare-and-swap that locks it.
func lockAll(refs []ref) bool {
	if len(refs) > 1 {
		slices.SortFunc(refs, func(a, b ref) int { return cmp.Compare(a.id, b.id) })
	}
	for i := range refs {
		r := &refs[i]
		if r.sl != nil && !r.sl.lockKey(r.key) {
			unlockAll(refs[:i])
			return false
		}
	}
	return true
}

func unlockAll(refs []ref) {
	for i := range refs {
		if r := &refs[i]; r.sl != nil {
			r.sl.unlock(r.key)
		}
	}
}
