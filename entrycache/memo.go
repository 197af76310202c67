package entrycache

import (
	"encoding/json"
	"hash/maphash"
	"sync/atomic"
)

// memo remembers the JSON decoding of recently read cached values. A cached
// value's bytes determine its decoding, so decode returns exactly what
// json.Unmarshal would; it only skips the work. That work recurs: a near-cache
// hit returns the same bytes on every request, and every authenticated
// request reads its token, so without the memo the hottest path of the
// service would decode the same token and entry again and again. It is
// bounded: len(slots) values of at most maxBytes each; a value whose slot is
// taken replaces the slot's. Safe for concurrent use; lock-free.
type memo[T any] struct {
	seed     maphash.Seed
	maxBytes int
	slots    []atomic.Pointer[memoEntry[T]]
}

type memoEntry[T any] struct {
	raw string
	v   T
}

func newMemo[T any](slots, maxBytes int) *memo[T] {
	return &memo[T]{seed: maphash.MakeSeed(), maxBytes: maxBytes, slots: make([]atomic.Pointer[memoEntry[T]], slots)}
}

// decode returns the value b decodes to, as json.Unmarshal into a new T. The
// result may be shared with other callers: T must be treated as read-only
// (copy what you hand out that has pointers or slices).
func (m *memo[T]) decode(b []byte) (T, error) {
	var slot *atomic.Pointer[memoEntry[T]]
	if len(b) <= m.maxBytes {
		slot = &m.slots[maphash.Bytes(m.seed, b)%uint64(len(m.slots))]
		if e := slot.Load(); e != nil && e.raw == string(b) {
			return e.v, nil
		}
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return v, err
	}
	if slot != nil {
		slot.Store(&memoEntry[T]{raw: string(b), v: v})
	}
	return v, nil
}
