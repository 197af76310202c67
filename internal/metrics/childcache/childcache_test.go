package childcache

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// TestGetMakesOncePerLabels: racing callers of many label sets each get
// the one value made for their labels, and newValue runs once per label set.
func TestGetMakesOncePerLabels(t *testing.T) {
	t.Parallel()
	var c Cache[[2]string, *int]
	var made atomic.Int32
	newValue := func(l [2]string) *int {
		made.Add(1)
		n, _ := strconv.Atoi(l[1])
		return &n
	}
	const keys, callers = 50, 8
	got := [callers][keys]*int{}
	var wg sync.WaitGroup
	for g := range callers {
		wg.Go(func() {
			for k := range keys {
				got[g][k] = c.Get([2]string{"policy", strconv.Itoa(k)}, newValue)
			}
		})
	}
	wg.Wait()
	if n := made.Load(); n != keys {
		t.Errorf("newValue ran %d times for %d label sets", n, keys)
	}
	for k := range keys {
		for g := range callers {
			if got[g][k] != got[0][k] || *got[g][k] != k {
				t.Fatalf("caller %d, labels %d: got %v (%d), want the one value %d", g, k, got[g][k], *got[g][k], k)
			}
		}
	}
}
