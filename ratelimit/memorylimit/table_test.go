package memorylimit

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/internal/backend"
)

// TestTableMatchesMap applies random inserts, updates, removals and index
// rebuilds to a shard and its arena, and to a Go map, and checks after each
// step that they hold the same keys and states, that the shard's count is
// its index's, and that the arena holds exactly the live keys' slots. Keys
// share their home positions often, so probe runs are long and wrap around
// the end.
func TestTableMatchesMap(t *testing.T) {
	for seed := range uint64(10) {
		r := rand.New(rand.NewPCG(seed, 7))
		var s shard
		var a arena
		s.ix.Store(&index{})
		a.chunks.Store(new([]*chunk))
		ref := map[uint64][2]uint64{}
		randKey := func() uint64 {
			// Few fingerprints: few home positions, and keys that share a
			// fingerprint (find with the arena tells them apart). The low bits keep the
			// keys distinct (and never empty or a tombstone).
			return uint64(r.IntN(6))<<33 | uint64(r.IntN(25)+2)
		}
		for step := range 2000 {
			x := s.ix.Load()
			switch op := r.IntN(10); {
			case op < 5:
				k, va, vb := randKey(), r.Uint64(), r.Uint64()
				if pos, id := x.find(&a, k); pos >= 0 {
					sl := a.slot(id)
					sl.lockKey(k)
					sl.a, sl.b = va, vb
					sl.unlock(k)
				} else {
					s.insert(&a, k, va, vb, 0)
				}
				ref[k] = [2]uint64{va, vb}
			case op < 8:
				k := randKey()
				if pos, id := x.find(&a, k); pos >= 0 {
					s.remove(&a, pos, id, nil)
				}
				delete(ref, k)
			case op < 9:
				s.ix.Store(x.rebuilt(fitEntries(s.n)))
			default:
				if k := randKey(); func() bool { pos, _ := x.find(&a, k); return pos >= 0 }() {
					if _, ok := ref[k]; !ok {
						t.Fatalf("seed %d step %d: found absent key %x", seed, step, k)
					}
				}
			}
			if step%5 == 0 {
				checkTable(t, &s, &a, ref)
			}
		}
		checkTable(t, &s, &a, ref)
		for k := range ref {
			pos, id := s.ix.Load().find(&a, k)
			s.remove(&a, pos, id, nil)
		}
		if cs := *a.chunks.Load(); slices.ContainsFunc(cs, func(c *chunk) bool { return c != nil }) {
			t.Fatalf("seed %d: every key removed, but the arena keeps a chunk", seed)
		}
	}
}

func checkTable(t *testing.T, s *shard, a *arena, ref map[uint64][2]uint64) {
	t.Helper()
	x := s.ix.Load()
	entries := 0
	for i := range x.e {
		if x.e[i].Load() != 0 {
			entries++
		}
	}
	if entries != s.n || entries != len(ref) {
		t.Fatalf("index holds %d entries, shard counts %d, map %d keys", entries, s.n, len(ref))
	}
	if len(ref) > 0 && x.full(entries, 0) {
		t.Fatalf("%d entries in an index of %d: over the load limit", entries, len(x.e))
	}
	live := 0
	for _, m := range a.meta {
		live += m.live
	}
	if live != len(ref) {
		t.Fatalf("the arena has %d slots handed out for %d keys", live, len(ref))
	}
	for k, v := range ref {
		pos, id := x.find(a, k)
		if pos < 0 {
			t.Fatalf("key %x not found", k)
		}
		if sl := a.slot(id); sl.a != v[0] || sl.b != v[1] || sl.k.Load() != k {
			t.Fatalf("key %x holds %x %x (key word %x), want %x %x", k, sl.a, sl.b, sl.k.Load(), v[0], v[1])
		}
	}
}

// TestArenaHandsOutLowSlotsFirst: slots come in order, a slot handed back
// is handed out before any higher one, and a chunk whose slots all came back
// is returned to the runtime.
func TestArenaHandsOutLowSlotsFirst(t *testing.T) {
	var a arena
	a.chunks.Store(new([]*chunk))
	ids := make([]uint32, 3*chunkLen)
	for i := range ids {
		if ids[i] = a.alloc(); ids[i] != uint32(i) {
			t.Fatalf("slot %d handed out as %d", i, ids[i])
		}
	}
	a.release(ids[chunkLen+7])
	a.release(ids[5])
	if got := a.alloc(); got != ids[5] {
		t.Errorf("after releasing slots 5 and %d, alloc = %d, want 5", chunkLen+7, got)
	}
	for _, id := range ids[2*chunkLen:] {
		a.release(id)
	}
	if cs := *a.chunks.Load(); cs[2] != nil || cs[0] == nil || cs[1] == nil {
		t.Errorf("chunks after emptying the third: %v", cs)
	}
	if a.slot(ids[2*chunkLen]) != nil {
		t.Error("a slot of a returned chunk is still reachable")
	}
}

// TestStateRoundTrips: every state a decision stores decodes to itself at
// any instant of its window or the next (and to a stale state later), and
// the meta word keeps the algorithm, the expiry and the block.
func TestStateRoundTrips(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 10000 {
		alg := ratelimit.Algorithm(r.IntN(3))
		p := ratelimit.Policy{Name: "p", Rate: ratelimit.Rate{N: 1 + r.Int64N(1<<42/3600), Per: time.Duration(1+r.IntN(3600)) * time.Second}, Algorithm: alg}
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		sp := backend.NewSpec(&p)
		now := int64(1_780_000_000_000_000) + r.Int64N(1<<40)
		st := backend.State{Algorithm: alg, T: now + r.Int64N(1<<30)}
		if alg != ratelimit.GCRA {
			st = backend.State{Algorithm: alg, T: sp.Window(now), Count: r.Int64N(p.Rate.N + 1), Prev: r.Int64N(p.Rate.N + 1)}
		}
		a, b := encode(st)
		exp := now + r.Int64N(1<<36)
		blockedUntil := now + r.Int64N(exp-now+1)
		m := makeMeta(alg, exp, true, blockedUntil)
		if got := decode(&sp, a, b, m, now); got != st {
			t.Fatalf("%v: decode(encode(%+v)) = %+v", p.Rate, st, got)
		}
		if alg != ratelimit.GCRA {
			next := now + p.Rate.Per.Microseconds()
			if got := decode(&sp, a, b, m, next); got != st {
				t.Fatalf("%v: in the next window, decode(encode(%+v)) = %+v", p.Rate, st, got)
			}
			later := now + 2*p.Rate.Per.Microseconds()
			if got := decode(&sp, a, b, m, later); got.T == sp.Window(later) || got.T == sp.Window(later)-1 {
				t.Fatalf("%v: two windows later, %+v decodes to the current or previous window: %+v", p.Rate, st, got)
			}
		}
		if expired(m, exp-1_000_000) || !expired(m, exp+1_000_000) {
			t.Fatalf("expiry %d not kept to the second: meta %x", exp, m)
		}
		if !blocking(m, blockedUntil-1) || blocking(m, blockedUntil+1_000_000) {
			t.Fatalf("block until %d (expiry %d) not kept to the second: meta %x", blockedUntil, exp, m)
		}
		if blocking(makeMeta(alg, exp, false, 0), now) {
			t.Fatal("a key that blocks nothing is blocking")
		}
		other := backend.NewSpec(&ratelimit.Policy{Name: "p", Rate: p.Rate, Algorithm: (alg + 1) % 3})
		if got := decode(&other, a, b, m, now); got.Algorithm != alg {
			t.Fatalf("a state of %v decoded for %v as %+v: the algorithm is lost", alg, other.Algorithm(), got)
		}
	}
}

// TestChunksFillCacheLines: a chunk starts on a 64-byte boundary, so each
// pair of slots is one cache line.
func TestChunksFillCacheLines(t *testing.T) {
	if size := unsafe.Sizeof(slot{}); size != 32 {
		t.Fatalf("a slot has %d bytes, want 32", size)
	}
	var a arena
	a.chunks.Store(new([]*chunk))
	for range 100 * chunkLen {
		a.alloc()
	}
	for _, c := range *a.chunks.Load() {
		if addr := uintptr(unsafe.Pointer(c)); addr%64 != 0 {
			t.Fatalf("a chunk starts at %#x, not on a 64-byte boundary", addr)
		}
	}
}
