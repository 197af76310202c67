package redislimit

import (
	"hash/maphash"
	"time"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/internal/backend"
	"github.com/journalsvc/journal/ratelimit/internal/shardmap"
)

// denyCache remembers denied decisions until their retry time, as the states
// and Redis time the script saw, so that a hit re-evaluates the decision
// exactly (the reference semantics at Redis time plus the local time elapsed):
// the same answer Redis would give while nothing else changes the keys. It is
// keyed by subject, then by a seeded hash of (policies, costs); an admitted
// decision of a subject on this instance drops the subject's entries (its
// state changed). Sharded and bounded.
type denyCache struct {
	table    shardmap.Table[*denials] // by subject hash
	perShard int
}

// denials are the cached denials of one subject (at most maxPerSubject).
type denials struct {
	entries []denyEntry
}

const maxPerSubject = 4

type denyEntry struct {
	itemsKey uint64
	until    time.Time // local time
	localAt  int64     // local Unix µs when cached
	redisAt  int64     // Redis Unix µs the script used
	states   []backend.State
}

func newDenyCache(size int) *denyCache {
	c := &denyCache{perShard: max(1, size/shardmap.N)}
	c.table.Init()
	return c
}

// itemsKey hashes everything of items that a decision depends on.
func (c *denyCache) itemsKey(items []ratelimit.Item) uint64 {
	var h maphash.Hash
	h.SetSeed(c.table.Seed())
	var buf [8 * 6]byte
	for _, it := range items {
		p := it.Policy
		h.WriteString(p.Name)
		b := buf[:0]
		for _, x := range []int64{p.Rate.N, int64(p.Rate.Per), p.Burst, int64(p.Algorithm), it.Cost, boolInt(p.Shadow)} {
			b = appendInt64(b, x)
		}
		h.Write(b)
	}
	return h.Sum64()
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func appendInt64(b []byte, x int64) []byte {
	u := uint64(x)
	return append(b, byte(u), byte(u>>8), byte(u>>16), byte(u>>24), byte(u>>32), byte(u>>40), byte(u>>48), byte(u>>56))
}

// get writes into d the cached denial of (subject, items), re-evaluated at
// now, and reports whether there was one that still denies (d is not to be
// used otherwise).
func (c *denyCache) get(d *ratelimit.Decision, subject string, key uint64, items []ratelimit.Item, now time.Time) bool {
	s, sh := c.table.Shard(subject)
	s.Mu.Lock()
	ds := s.M[sh]
	if ds == nil {
		s.Mu.Unlock()
		return false
	}
	var e denyEntry
	found := false
	for i, x := range ds.entries {
		if x.itemsKey != key {
			continue
		}
		if now.Before(x.until) {
			e, found = x, true
		} else {
			ds.entries = append(ds.entries[:i], ds.entries[i+1:]...)
			if len(ds.entries) == 0 {
				delete(s.M, sh)
			}
		}
		break
	}
	s.Mu.Unlock()
	if !found {
		return false
	}
	evalStates(d, items, e.states, e.redisAt+now.UnixMicro()-e.localAt)
	return !d.Allowed
}

// evalStates writes into d the decision of the script over the given stored
// states at nowMicros, without writing anything.
func evalStates(d *ratelimit.Decision, items []ratelimit.Item, states []backend.State, nowMicros int64) {
	results := backend.Results(d, len(items))
	for i := range items {
		backend.Eval(&items[i].Policy, &results[i], states[i], nowMicros, backend.Cost(&items[i]))
	}
	backend.Combine(d, items)
	if !d.Allowed {
		backend.Uncharged(results, items, states, nowMicros)
	}
}

func (c *denyCache) put(subject string, key uint64, until time.Time, now time.Time, redisAt int64, states []backend.State) {
	s, sh := c.table.Shard(subject)
	s.Mu.Lock()
	defer s.Mu.Unlock()
	ds := s.M[sh]
	if ds == nil {
		if len(s.M) >= c.perShard {
			for k, x := range s.M { // drop subjects whose denials all expired, else an arbitrary one
				if !now.Before(x.latest()) {
					delete(s.M, k)
				}
			}
			if len(s.M) >= c.perShard {
				for k := range s.M {
					delete(s.M, k)
					break
				}
			}
		}
		ds = &denials{}
		s.M[sh] = ds
	}
	e := denyEntry{itemsKey: key, until: until, localAt: now.UnixMicro(), redisAt: redisAt, states: states}
	for i, x := range ds.entries {
		if x.itemsKey == key {
			ds.entries[i] = e
			return
		}
	}
	if len(ds.entries) >= maxPerSubject {
		ds.entries = ds.entries[1:]
	}
	ds.entries = append(ds.entries, e)
}

func (d *denials) latest() time.Time {
	var t time.Time
	for _, e := range d.entries {
		if e.until.After(t) {
			t = e.until
		}
	}
	return t
}

// clear forgets every denial of subject.
func (c *denyCache) clear(subject string) {
	s, sh := c.table.Shard(subject)
	s.Mu.Lock()
	delete(s.M, sh)
	s.Mu.Unlock()
}

func (c *denyCache) len() int {
	n := 0
	for i := range shardmap.N {
		s := c.table.At(i)
		s.Mu.Lock()
		for _, ds := range s.M {
			n += len(ds.entries)
		}
		s.Mu.Unlock()
	}
	return n
}
