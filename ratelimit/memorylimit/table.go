package memorylimit

// table is a shard's hash table: open addressing with linear probing over a
// power-of-two array of slots, keyed by the (already well mixed, never 0)
// key. A Go map costs a decision several cache lines (its header, which every
// write marks, its directory, a group's control word and its slot) and two
// lookups (read, then assign); here a decision touches the shard's line and
// its slot's, finds the slot once and updates the entry in place. Deletion
// shifts the following slots back, so there are no tombstones.
type table struct {
	slots []slot // len 0 or a power of two, at most half full
	n     int    // keys held
}

// slot fills a 64-byte cache line: the slots array is a power-of-two
// allocation (at least 512 bytes), so each slot starts a line, and reading
// and updating an entry touches one line, not two.
type slot struct {
	k key // 0: empty
	e entry
	_ [8]byte
}

const minSlots = 8

// find returns the index of k's slot and true, or the index of the empty
// slot where k would go and false (-1 if the table has no slots).
func (t *table) find(k key) (int, bool) {
	if len(t.slots) == 0 {
		return -1, false
	}
	mask := len(t.slots) - 1
	for i := int(k) & mask; ; i = (i + 1) & mask {
		switch t.slots[i].k {
		case k:
			return i, true
		case 0:
			return i, false
		}
	}
}

// insert adds k, which is not in t, and returns its slot, growing t first
// if it would then be more than half full (probe runs stay short: about 1.5
// slots to find a key).
func (t *table) insert(k key, e entry) int {
	if (t.n+1)*2 > len(t.slots) {
		t.resize(max(minSlots, 2*len(t.slots)))
	}
	i, _ := t.find(k)
	t.slots[i] = slot{k: k, e: e}
	t.n++
	return i
}

// put sets k's entry.
func (t *table) put(k key, e entry) {
	if i, ok := t.find(k); ok {
		t.slots[i].e = e
		return
	}
	t.insert(k, e)
}

// get returns k's entry.
func (t *table) get(k key) (entry, bool) {
	if i, ok := t.find(k); ok {
		return t.slots[i].e, true
	}
	return entry{}, false
}

// delete removes k if present.
func (t *table) delete(k key) {
	if i, ok := t.find(k); ok {
		t.deleteAt(i)
	}
}

// deleteAt empties slot i and moves back each following slot of the probe
// run that may no longer be reachable from its home slot.
func (t *table) deleteAt(i int) {
	mask := len(t.slots) - 1
	t.n--
	for j := i; ; {
		t.slots[i] = slot{}
		for {
			j = (j + 1) & mask
			k := t.slots[j].k
			if k == 0 {
				return
			}
			// The slot at j stays if its home h lies cyclically in (i, j]:
			// the run from h to j does not cross the hole at i.
			h := int(k) & mask
			if i <= j {
				if i < h && h <= j {
					continue
				}
			} else if i < h || h <= j {
				continue
			}
			break
		}
		t.slots[i] = t.slots[j]
		i = j
	}
}

// filter deletes every key for which keep returns false, stopping early (and
// leaving the rest) once done returns true. keep may be called more than
// once for a key.
func (t *table) filter(keep func(*slot) bool, done func() bool) {
	for i := 0; i < len(t.slots) && !done(); {
		if s := &t.slots[i]; s.k != 0 && !keep(s) {
			// A deletion moves a following slot into i, never an unvisited
			// one before it: look at i again.
			t.deleteAt(i)
			continue
		}
		i++
	}
}

// resize rehashes t into n slots (a power of two that holds t.n at half).
func (t *table) resize(n int) {
	old := t.slots
	t.slots = make([]slot, n)
	mask := n - 1
	for _, s := range old {
		if s.k == 0 {
			continue
		}
		i := int(s.k) & mask
		for t.slots[i].k != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = s
	}
}

// fitSlots returns the number of slots for n keys: the smallest power of two
// at least minSlots that holds n at half.
func fitSlots(n int) int {
	s := minSlots
	for s < n*2 {
		s *= 2
	}
	return s
}
