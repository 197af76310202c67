package memorylimit

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// The states of all keys live in one arena of 32-byte slots, handed out in
// the order keys arrive, so keys that arrive together sit together in
// memory. Each shard finds its keys through an index: open addressing with
// linear probing over 8-byte entries, each holding 32 bits of the key (its
// fingerprint, which also chooses its home position) and the number of its
// slot. Only inserts and deletions write an index, under the shard's mutex,
// so in a steady state every core keeps it in its cache.
//
// A decision on a key the limiter holds finds its slot in the index without
// a lock, then locks the slot with one compare-and-swap of its key word (a
// lock bit in it): the swap both checks that the slot holds the key and takes
// the slot's cache line for writing, and the state is written in that line.
// It writes one cache line, the one holding the state it changes, and takes
// it from another core at most once; a shared lock or counter would be a
// second line that every decision writes, and reading the line before
// locking it would take it twice.
//
// Slots never move while they hold a key. A deleted key's slot holds a
// tombstone until the arena hands it out again; an index may be rebuilt at
// any time under the shard's mutex, and a decision that read a stale one
// finds a slot whose key no longer matches its own and looks again under the
// mutex.

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

// unlock releases the slot, which now holds k.
func (s *slot) unlock(k uint64) { s.k.Store(k) }

// An arena chunk: 16 KiB, pointer-free, so the runtime places it on a
// 64-byte boundary (its size class is a multiple of 64) and each pair of
// slots fills one cache line.
const (
	chunkBits = 9
	chunkLen  = 1 << chunkBits
)

type chunk [chunkLen]slot

// arena hands out slots, the lowest free ones first, so that the slots of
// keys that leave empty the chunks at the end, which it returns to the
// runtime.
type arena struct {
	chunks atomic.Pointer[[]*chunk] // replaced (copied) when a chunk comes or goes

	mu    sync.Mutex
	meta  []chunkMeta // per chunk
	first int         // no chunk before it has a free slot
}

type chunkMeta struct {
	live int      // slots handed out
	next int      // slots from next on were never handed out
	free []uint16 // slots before next handed back
}

// slot returns slot id, or nil if its chunk is gone (the caller holds a
// stale index: its key is no longer there).
func (a *arena) slot(id uint32) *slot {
	cs := *a.chunks.Load()
	if c := int(id >> chunkBits); c < len(cs) && cs[c] != nil {
		return &cs[c][id&(chunkLen-1)]
	}
	return nil
}

// alloc returns a slot that holds no key: the lowest free one.
func (a *arena) alloc() uint32 {
	a.mu.Lock()
	defer a.mu.Unlock()
	for ; ; a.first++ {
		if a.first == len(a.meta) {
			a.meta = append(a.meta, chunkMeta{})
		}
		m := &a.meta[a.first]
		if m.live == 0 && m.next == 0 {
			a.setChunk(a.first, new(chunk)) // new, or returned to the runtime
		}
		var i int
		switch {
		case len(m.free) > 0:
			i = int(m.free[len(m.free)-1])
			m.free = m.free[:len(m.free)-1]
		case m.next < chunkLen:
			i = m.next
			m.next++
		default:
			continue // full
		}
		m.live++
		return uint32(a.first<<chunkBits | i)
	}
}

// setChunk publishes chunk c (nil: gone). a.mu is held.
func (a *arena) setChunk(c int, ch *chunk) {
	old := *a.chunks.Load()
	cs := make([]*chunk, max(len(old), c+1))
	copy(cs, old)
	cs[c] = ch
	a.chunks.Store(&cs)
}

// release takes back slot id, which holds a tombstone (or never held a key),
// and returns its chunk to the runtime when that was the chunk's last slot.
func (a *arena) release(id uint32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, i := int(id>>chunkBits), uint16(id&(chunkLen-1))
	m := &a.meta[c]
	m.live--
	if m.live == 0 {
		*m = chunkMeta{}
		a.setChunk(c, nil)
	} else {
		m.free = append(m.free, i)
	}
	a.first = min(a.first, c)
}

// index maps a shard's keys to their slots. An entry is the key's
// fingerprint (bits 31-62 of the key) << 32 | (slot id + 1); 0 is empty.
type index struct {
	e []atomic.Uint64
}

func fingerprint(k uint64) uint32 { return uint32(k >> 31) }

// home returns the position a fingerprint is probed from.
func (x *index) home(fp uint32) int { return int(uint64(fp) * uint64(len(x.e)) >> 32) }

// Load factor bounds of an index: it is rebuilt at fitLoad when it would
// be fuller than maxLoad.
const (
	maxLoadNum, maxLoadDen = 3, 4
	fitLoadNum, fitLoadDen = 1, 2
)

// fitEntries returns the number of entries an index of n keys gets.
func fitEntries(n int) int {
	if n == 0 {
		return 0
	}
	return max(4, n*fitLoadDen/fitLoadNum)
}

// full reports whether x cannot take more more keys and stay within
// maxLoad.
func (x *index) full(keys, more int) bool {
	return (keys+more)*maxLoadDen > len(x.e)*maxLoadNum
}

// find returns the position of k's entry and its slot, or -1. With a nil
// arena it takes the first entry with k's fingerprint, reading the index
// only and taking no lock: a key inserted or moved concurrently may be
// missed, and two keys of a shard that share a fingerprint are told apart
// only when the caller locks the slot. With the arena it also checks each
// slot's key; the caller then holds the shard's mutex and the answer is
// exact.
func (x *index) find(a *arena, k uint64) (pos int, id uint32) {
	n := len(x.e)
	if n == 0 {
		return -1, 0
	}
	fp := fingerprint(k)
	for i, probes := x.home(fp), 0; probes < n; probes++ {
		v := x.e[i].Load()
		if v == 0 {
			return -1, 0
		}
		if uint32(v>>32) == fp && (a == nil || a.slot(uint32(v)-1).k.Load()&^locked == k) {
			return i, uint32(v) - 1
		}
		if i++; i == n {
			i = 0
		}
	}
	return -1, 0
}

// add adds an entry for k in slot id; x must have room. The caller holds
// the shard's mutex.
func (x *index) add(k uint64, id uint32) {
	fp := fingerprint(k)
	i := x.home(fp)
	for x.e[i].Load() != 0 {
		if i++; i == len(x.e) {
			i = 0
		}
	}
	x.e[i].Store(uint64(fp)<<32 | uint64(id+1))
}

// del removes the entry at pos, moving back each following entry of the
// probe run that may no longer be reachable from its home. The caller holds
// the shard's mutex; a lookup running meanwhile may miss a moved key.
func (x *index) del(pos int) {
	n := len(x.e)
	i := pos
	for j := i; ; {
		x.e[i].Store(0)
		for {
			if j++; j == n {
				j = 0
			}
			v := x.e[j].Load()
			if v == 0 {
				return
			}
			// The entry at j stays if its home h lies cyclically in (i, j].
			h := x.home(uint32(v >> 32))
			if i <= j {
				if i < h && h <= j {
					continue
				}
			} else if i < h || h <= j {
				continue
			}
			x.e[i].Store(v)
			i = j
			break
		}
	}
}

// rebuilt returns an index of n entries with the entries of x.
func (x *index) rebuilt(n int) *index {
	nx := &index{e: make([]atomic.Uint64, n)}
	for i := range x.e {
		v := x.e[i].Load()
		if v == 0 {
			continue
		}
		j := nx.home(uint32(v >> 32))
		for nx.e[j].Load() != 0 {
			if j++; j == n {
				j = 0
			}
		}
		nx.e[j].Store(v)
	}
	return nx
}

// remove deletes the key at index position pos (in slot id) if drop (nil:
// always) reports true for its meta word, read under the slot's lock: a
// decision may have changed the state since the caller looked. It reports
// whether it removed the key. s.mu is held.
func (s *shard) remove(a *arena, pos int, id uint32, drop func(meta uint64) bool) bool {
	sl := a.slot(id)
	k := sl.k.Load() &^ locked
	sl.lockKey(k)
	if drop != nil && !drop(sl.meta.Load()) {
		sl.unlock(k)
		return false
	}
	sl.unlock(tombstone)
	s.ix.Load().del(pos)
	a.release(id)
	s.n--
	return true
}

// insert adds k with its encoded state. s.mu is held.
func (s *shard) insert(a *arena, k, sa, sb, meta uint64) {
	x := s.ix.Load()
	if x.full(s.n, 1) {
		x = x.rebuilt(fitEntries(s.n + 1))
		s.ix.Store(x)
	}
	id := a.alloc()
	sl := a.slot(id)
	sl.a, sl.b = sa, sb
	sl.meta.Store(meta)
	sl.k.Store(k) // a decision holding a stale index may now lock it: it is ready
	x.add(k, id)
	s.n++
	s.peak = max(s.peak, s.n)
}
