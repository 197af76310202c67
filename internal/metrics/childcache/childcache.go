// Package childcache keeps the children of Prometheus metric vectors by
// their label values, for collectors updated on every request.
// WithLabelValues checks and hashes the values and takes the vector's lock
// on every call; a Cache hit is one lookup in an immutable map.
package childcache

import (
	"maps"
	"sync"
	"sync/atomic"
)

// Cache maps label values K (a struct or an array of them) to what V holds
// for them: a child, or several children of one label set. Label sets must
// be few (policies, results, routes, status codes): the map is copied
// whenever one is added. The zero value is empty and ready; a Cache must not
// be copied after first use. Children cached here stay exported only as long
// as nobody deletes them from their vector.
type Cache[K comparable, V any] struct {
	m  atomic.Pointer[map[K]V]
	mu sync.Mutex // held while adding
}

// Get returns the value of labels, made by newValue the first time (once per
// labels, even when callers race).
func (c *Cache[K, V]) Get(labels K, newValue func(K) V) V {
	if m := c.m.Load(); m != nil {
		if v, ok := (*m)[labels]; ok {
			return v
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if v, ok := (*old)[labels]; ok {
			return v
		}
	}
	next := map[K]V{}
	if old != nil {
		next = maps.Clone(*old)
	}
	v := newValue(labels)
	next[labels] = v
	c.m.Store(&next)
	return v
}
