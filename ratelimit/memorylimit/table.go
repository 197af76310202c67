package memorylimit

import (
	"runtime"
	"sync/atomic"
)

// table is a shard's hash table: open addressing over buckets of two slots,
// probed linearly from the key's home bucket (chosen by multiplying 32 bits
// of the key by the number of buckets, so any number of buckets works).
//
// A bucket is one 64-byte cache line: its allocation is a multiple of 64
// bytes and pointer-free, which the runtime places on a 64-byte boundary
// (size classes of 512 bytes and up, and every class that holds a whole
// number of buckets, are multiples of 64). A decision on an existing key
// locks its slot with one compare-and-swap of the key word (a lock bit in
// it: the swap both checks that the slot holds the key and takes the line
// for writing) and writes its state in that same line: it writes one cache
// line, the one holding the state it changes, and takes it from another core
// at most once. A shared lock or counter would be a second line that every
// decision writes; reading the line before locking it would take it twice.
// A key outside its home bucket is found first, reading only key words.
//
// Keys never move while a table is in use: a deleted key leaves a tombstone
// (which a later insertion may reuse), and only a resize, which builds a new
// table, compacts. Inserts, deletions and resizes are made under the shard's
// mutex; a resize locks every slot of the old table, copies them, marks it
// dead and publishes the new one, so a decision that locked a slot of a dead
// table starts again on the current one.
type table struct {
	buckets []bucket
	dead    atomic.Bool // replaced by a resize
}

type bucket [2]slot

// slot holds one key and its state. k and meta are read without the lock
// (atomically); a and b only under it.
type slot struct {
	k    atomic.Uint64 // the key, or empty or tombstone; | locked while locked
	a, b uint64        // the state, encoded (see state.go)
	meta atomic.Uint64 // algorithm, expiry, block (see state.go)
}

// Key words that are not keys, and the lock bit. Keys have 63 bits.
const (
	empty     = 0
	tombstone = 1
	locked    = 1 << 63
)

// Load factor bounds: a table grows (or is rebuilt without its tombstones)
// before keys and tombstones would fill more than maxLoad of its slots, and
// is rebuilt at fitLoad.
const (
	maxLoadNum, maxLoadDen = 3, 4
	fitLoadNum, fitLoadDen = 1, 2
)

// slots returns the number of slots.
func (t *table) slots() int { return 2 * len(t.buckets) }

// slot returns slot i (bucket i/2, slot i%2).
func (t *table) slot(i int) *slot { return &t.buckets[i>>1][i&1] }

// home returns the home bucket of k, from bits 31-62 of the key (bit 63 is
// the lock).
func (t *table) home(k uint64) int { return int(uint64(uint32(k>>31)) * uint64(len(t.buckets)) >> 32) }

// find returns the index of k's slot, or -1. It takes no lock: a key being
// inserted concurrently may be missed, and the caller then decides under
// the shard's mutex.
func (t *table) find(k uint64) int {
	n := len(t.buckets)
	if n == 0 {
		return -1
	}
	for j, probes := t.home(k), 0; probes < n; probes++ {
		b := &t.buckets[j]
		k0, k1 := b[0].k.Load(), b[1].k.Load()
		switch {
		case k0&^locked == k:
			return 2 * j
		case k1&^locked == k:
			return 2*j + 1
		case k0 == empty || k1 == empty:
			return -1 // an insertion of k would have used this bucket
		}
		if j++; j == n {
			j = 0
		}
	}
	return -1
}

// free returns the index of the first slot, from k's home bucket on, that
// holds no key (empty or a tombstone). The table must have one, and the
// caller holds the shard's mutex: nothing else locks a slot without a key.
func (t *table) free(k uint64) int {
	n := len(t.buckets)
	for j := t.home(k); ; {
		b := &t.buckets[j]
		if b[0].k.Load() <= tombstone {
			return 2 * j
		}
		if b[1].k.Load() <= tombstone {
			return 2*j + 1
		}
		if j++; j == n {
			j = 0
		}
	}
}

// tryLock locks the slot if it holds k, unlocked.
func (s *slot) tryLock(k uint64) bool { return s.k.CompareAndSwap(k, k|locked) }

// lockKey locks the slot if it holds k, waiting while another holds it, and
// reports false when it holds something else. A lock is held for a few
// memory accesses; a holder that was descheduled is waited for by yielding.
func (s *slot) lockKey(k uint64) bool {
	for spins := 0; !s.tryLock(k); spins++ {
		if s.k.Load() != k|locked {
			return false
		}
		if spins >= 16 {
			runtime.Gosched()
		}
	}
	return true
}

// lock locks the slot whatever it holds and returns its key word.
func (s *slot) lock() uint64 {
	for {
		if k := s.k.Load() &^ locked; s.lockKey(k) {
			return k
		}
	}
}

// unlock releases the slot, which now holds k.
func (s *slot) unlock(k uint64) { s.k.Store(k) }

// fitBuckets returns the number of buckets that holds n keys at fitLoad.
func fitBuckets(n int) int {
	if n == 0 {
		return 0
	}
	return max(1, (n*fitLoadDen/fitLoadNum+1)/2)
}

// full reports whether t cannot take more more keys and stay within
// maxLoad, counting its tombstones.
func (t *table) full(keys, tombs, more int) bool {
	return (keys+tombs+more)*maxLoadDen > t.slots()*maxLoadNum
}

// resize replaces the shard's table by one of nb buckets holding the same
// keys, without tombstones. It locks every slot of the old table first, so
// no decision is under way in it, and marks it dead before releasing them.
// s.mu is held.
func (s *shard) resize(nb int) {
	old := s.t.Load()
	nt := &table{buckets: make([]bucket, nb)}
	if old != nil {
		for i := range old.slots() {
			old.slot(i).lock()
		}
		for i := range old.slots() {
			sl := old.slot(i)
			k := sl.k.Load() &^ locked
			if k <= tombstone {
				continue
			}
			d := nt.slot(nt.free(k))
			d.a, d.b = sl.a, sl.b
			d.meta.Store(sl.meta.Load())
			d.k.Store(k)
		}
		old.dead.Store(true)
	}
	s.t.Store(nt)
	s.tombs = 0
	if old != nil {
		for i := range old.slots() {
			sl := old.slot(i)
			sl.unlock(sl.k.Load() &^ locked)
		}
	}
}

// remove turns slot i of t, which holds a key, into a tombstone if drop
// (nil: always) reports true for its meta word, read under the slot's lock:
// a decision may have changed the state since the caller looked. It reports
// whether it removed the key. s.mu is held.
func (s *shard) remove(t *table, i int, drop func(meta uint64) bool) bool {
	sl := t.slot(i)
	k := sl.lock()
	if drop != nil && !drop(sl.meta.Load()) {
		sl.unlock(k)
		return false
	}
	sl.unlock(tombstone)
	s.n--
	s.tombs++
	return true
}

// insert adds k, which t does not hold, with its encoded state: t must have
// room (see table.full). s.mu is held.
func (s *shard) insert(t *table, k, a, b, meta uint64) {
	sl := t.slot(t.free(k))
	if sl.k.Load() == tombstone {
		s.tombs--
	}
	sl.a, sl.b = a, b
	sl.meta.Store(meta)
	sl.k.Store(k) // publishes the key with its state
	s.n++
	s.peak = max(s.peak, s.n)
}
