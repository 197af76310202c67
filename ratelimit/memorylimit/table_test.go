package memorylimit

import (
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/internal/backend"
)

// TestTableMatchesMap applies random inserts, updates, removals and
// rebuilds to a shard's table and to a Go map, and checks after each step
// that they hold the same keys and states, and that the shard's counts are
// those of its table. Keys share their home buckets often, so probe runs are
// long and wrap around the end.
func TestTableMatchesMap(t *testing.T) {
	for seed := range uint64(10) {
		r := rand.New(rand.NewPCG(seed, 7))
		var s shard
		s.t.Store(&table{})
		ref := map[uint64][2]uint64{}
		randKey := func() uint64 {
			// Few distinct high halves: few home buckets. The low half keeps
			// the keys distinct (and never empty or a tombstone).
			return uint64(r.IntN(6))<<31 | uint64(r.IntN(25)+2)
		}
		for step := range 2000 {
			tb := s.t.Load()
			switch op := r.IntN(10); {
			case op < 5:
				k, a, b := randKey(), r.Uint64(), r.Uint64()
				if i := tb.find(k); i >= 0 {
					sl := tb.slot(i)
					sl.lock()
					sl.a, sl.b = a, b
					sl.unlock(k)
				} else {
					if tb.full(s.n, s.tombs, 1) {
						s.resize(fitBuckets(s.n + 1))
						tb = s.t.Load()
					}
					s.insert(tb, k, a, b, 0)
				}
				ref[k] = [2]uint64{a, b}
			case op < 8:
				k := randKey()
				if i := tb.find(k); i >= 0 {
					s.remove(tb, i, nil)
				}
				delete(ref, k)
			case op < 9:
				s.resize(fitBuckets(s.n))
			default:
				if k := randKey(); tb.find(k) >= 0 {
					if _, ok := ref[k]; !ok {
						t.Fatalf("seed %d step %d: found absent key %x", seed, step, k)
					}
				}
			}
			if step%5 == 0 {
				checkTable(t, &s, ref)
			}
		}
		checkTable(t, &s, ref)
	}
}

func checkTable(t *testing.T, s *shard, ref map[uint64][2]uint64) {
	t.Helper()
	tb := s.t.Load()
	keys, tombs := 0, 0
	for i := range tb.slots() {
		sl := tb.slot(i)
		k := sl.k.Load()
		if k&locked != 0 {
			t.Fatalf("slot %d (%x) left locked", i, k)
		}
		switch k {
		case empty:
		case tombstone:
			tombs++
		default:
			keys++
		}
	}
	if keys != s.n || tombs != s.tombs || keys != len(ref) {
		t.Fatalf("table holds %d keys and %d tombstones, shard counts %d and %d, map %d keys", keys, tombs, s.n, s.tombs, len(ref))
	}
	if len(ref) > 0 && tb.full(keys, tombs, 0) {
		t.Fatalf("%d keys and %d tombstones in %d slots: over the load limit", keys, tombs, tb.slots())
	}
	for k, v := range ref {
		i := tb.find(k)
		if i < 0 {
			t.Fatalf("key %x not found", k)
		}
		if sl := tb.slot(i); sl.a != v[0] || sl.b != v[1] {
			t.Fatalf("key %x holds %x %x, want %x %x", k, sl.a, sl.b, v[0], v[1])
		}
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

// TestBucketsFillCacheLines: a bucket array starts on a 64-byte boundary
// whatever its length, so each bucket is one cache line.
func TestBucketsFillCacheLines(t *testing.T) {
	if size := unsafe.Sizeof(bucket{}); size != 64 {
		t.Fatalf("a bucket has %d bytes, want 64", size)
	}
	for nb := 1; nb <= 3000; nb++ {
		b := make([]bucket, nb)
		if addr := uintptr(unsafe.Pointer(&b[0])); addr%64 != 0 {
			t.Fatalf("an array of %d buckets starts at %#x, not on a 64-byte boundary", nb, addr)
		}
	}
}
