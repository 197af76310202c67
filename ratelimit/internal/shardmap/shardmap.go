// Package shardmap is the in-process table the rate-limit backends keep per
// subject: a map from a 64-bit key to V, split into [N] shards chosen by a
// seeded hash of the subject, each behind its own lock. The items of one
// decision (one subject, several policies) take one lock, and decisions of
// different subjects rarely contend.
package shardmap

import (
	"hash/maphash"
	"sync"
)

// N is the number of shards of a [Table].
const N = 64

// Table is a sharded map. The zero value is not ready: call [Table.Init].
type Table[V any] struct {
	seed   maphash.Seed
	shards [N]Shard[V]
}

// Shard is one shard of a [Table]: hold Mu while using M.
type Shard[V any] struct {
	Mu sync.Mutex
	M  map[uint64]V
	_  [48]byte // one shard per 64-byte cache line
}

// Init gives t a fresh seed and empty shards.
func (t *Table[V]) Init() {
	t.seed = maphash.MakeSeed()
	for i := range t.shards {
		t.shards[i].M = make(map[uint64]V)
	}
}

// Seed returns the seed of t's hashes, for other hashes that must not be
// predictable either.
func (t *Table[V]) Seed() maphash.Seed { return t.seed }

// Shard returns the shard of subject and the hash of subject, from which
// [Key] derives the keys of the subject's entries.
func (t *Table[V]) Shard(subject string) (*Shard[V], uint64) {
	h := maphash.String(t.seed, subject)
	return &t.shards[h%N], h
}

// At returns the i-th shard (0 <= i < N), for walks over the whole table.
func (t *Table[V]) At(i int) *Shard[V] { return &t.shards[i] }

// Key returns the key of a policy's entry for the subject whose hash is h: the
// policy name mixed into h (FNV-1a steps).
func Key(h uint64, policy string) uint64 {
	for i := 0; i < len(policy); i++ {
		h ^= uint64(policy[i])
		h *= 1099511628211
	}
	return h
}
