package memorylimit

import (
	"math/rand/v2"
	"testing"
)

// TestTableMatchesMap applies random inserts, updates, deletions, filters
// (some stopped early) and shrinks to a table and to a Go map, and checks
// after each step that they hold the same keys and entries. Keys share their
// low bits often, so probe runs are long and wrap around the end.
func TestTableMatchesMap(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 7))
		var tb table
		ref := map[key]entry{}
		randKey := func() key {
			// 1..255 in the low byte, so keys cluster at few home slots of
			// small tables; a few high bits keep them distinct.
			return key(uint64(r.IntN(255)+1) | uint64(r.IntN(4))<<60)
		}
		for step := range 3000 {
			switch op := r.IntN(10); {
			case op < 5:
				k, e := randKey(), entry{expires: int64(r.IntN(100))}
				tb.put(k, e)
				ref[k] = e
			case op < 7:
				k := randKey()
				tb.delete(k)
				delete(ref, k)
			case op < 8:
				cut := int64(r.IntN(100))
				target := r.IntN(len(ref) + 1) // stop once at most target keys are left
				tb.filter(func(s *slot) bool { return s.e.expires >= cut }, func() bool { return tb.n <= target })
				for k := range ref {
					if _, ok := tb.get(k); !ok {
						if ref[k].expires >= cut {
							t.Fatalf("seed %d step %d: filter dropped %v, which it keeps", seed, step, k)
						}
						delete(ref, k)
					}
				}
				if tb.n > target { // not stopped early: nothing below cut is left
					for k, e := range ref {
						if e.expires < cut {
							t.Fatalf("seed %d step %d: filter kept %v", seed, step, k)
						}
					}
				}
			case op < 9:
				if tb.n > 0 {
					tb.resize(fitSlots(tb.n))
				}
			default:
				k := randKey()
				if _, ok := ref[k]; !ok {
					if _, found := tb.find(k); found {
						t.Fatalf("seed %d step %d: found absent key %v", seed, step, k)
					}
				}
			}
			checkTable(t, &tb, ref)
		}
	}
}

func checkTable(t *testing.T, tb *table, ref map[key]entry) {
	t.Helper()
	if tb.n != len(ref) {
		t.Fatalf("table holds %d keys, map %d", tb.n, len(ref))
	}
	used := 0
	for _, s := range tb.slots {
		if s.k != 0 {
			used++
		}
	}
	if used != tb.n || (tb.n > 0 && used*2 > len(tb.slots)) {
		t.Fatalf("%d used slots of %d for n = %d", used, len(tb.slots), tb.n)
	}
	for k, e := range ref {
		if got, ok := tb.get(k); !ok || got != e {
			t.Fatalf("get(%v) = %+v, %v; want %+v", k, got, ok, e)
		}
	}
}
