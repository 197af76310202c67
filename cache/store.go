// Package cache is the contract of the journal's two-tier cache and the
// read-through logic built on it.
//
// A [Store] is a backend: package memorycache keeps entries in process memory,
// package rediscache keeps them in Redis with a near cache in each instance that
// Redis keeps coherent through server-assisted invalidation. Package cachetest
// holds the conformance suite every Store passes.
//
// A [Cache] wraps a Store. Its Get reports four states: a hit, a negative
// entry (the source of truth said the value does not exist, and that answer is
// cached), a miss, and an error. An error of the store is
// always returned as an error, never as a miss. [Cache.GetOrLoad] adds
// stampede control:
//
//   - Within one instance, at most one load per key runs at a time
//     (single-flight). The load runs on a context detached from the caller that
//     started it, bounded by [Options.LoadTimeout], so it survives that caller's
//     cancellation; every waiter returns when its own context is done.
//   - Across instances, the loader first takes a lease stored in the value's own
//     key (SET key lease:<id> NX PX). Its value is stored only if the key still
//     holds that lease (a compare-and-set), so a writer's Delete voids the lease
//     and a fill can never store a value older than an invalidation. Instances
//     that lose the race poll briefly for the fill, then load for themselves
//     without storing.
//   - A load error is never cached. A loader returning [ErrNotFound] is cached
//     as a negative entry for at most [Options.NegativeTTL].
//   - Optional probabilistic early refresh (XFetch) and TTL jitter.
//
// While the store fails, GetOrLoad still answers, from the loader. So does
// [Cache.Load], for a caller that knows the store must not be used at that
// moment. Those loads write nothing back and share one bound,
// [Options.DegradedLoads], so an outage of the cache does not stampede the
// source of truth.
//
// Values are byte slices; the cache does not encode or decode them.
package cache

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Check them with errors.Is.
var (
	// ErrNotFound is returned by [Cache.GetOrLoad] when the key holds a cached
	// negative entry or the loader reported ErrNotFound. A loader returns it
	// (possibly wrapped) to say "this does not exist", which is cached.
	ErrNotFound = errors.New("cache: not found")
	// ErrInvalidTTL is returned by writes whose TTL is not positive.
	ErrInvalidTTL = errors.New("cache: ttl must be positive")
	// ErrNilStore is returned by [New] without a Store.
	ErrNilStore = errors.New("cache: nil store")
)

// Status is what a key holds. The zero value is Miss.
type Status uint8

// The states of a key.
const (
	// Miss means the key holds nothing usable: it is absent, expired, or holds
	// a fill lease (see [Entry.Leased]).
	Miss Status = iota
	// Hit means the key holds a value.
	Hit
	// Negative means the key holds a negative entry: the source of truth said
	// the value does not exist, and that answer is cached.
	Negative
)

// String returns "miss", "hit" or "negative", the words [Options.OnResult]
// reports.
func (s Status) String() string {
	switch s {
	case Hit:
		return "hit"
	case Negative:
		return "negative"
	default:
		return "miss"
	}
}

// Result is what [Cache.Get] returns.
type Result struct {
	// Status is Hit, Negative or Miss.
	Status Status
	// Value is the cached value when Status is Hit, nil otherwise. It may be
	// shared with the store and must not be modified.
	Value []byte
}

// Entry is what a [Store] holds under a key, as its Get and Lease return it.
type Entry struct {
	// Status is Hit, Negative or Miss.
	Status Status
	// Value is the value when Status is Hit. It may be shared with the store
	// and must not be modified.
	Value []byte
	// Leased reports that the key holds a fill lease taken by some loader
	// (Status is then Miss).
	Leased bool
	// Token names this exact version of the key (a value, a negative entry or
	// a lease); [Store.Fill] with it stores only while the key still holds this
	// version. Empty when Status is Miss and Leased is false.
	Token string
	// Expiry is when the entry expires, by the writer's clock; zero if
	// unknown. Used by early refresh.
	Expiry time.Time
	// Delta is how long the load that produced the entry took; zero if
	// unknown (for example after [Cache.Set]). Used by early refresh.
	Delta time.Duration
	// Tier names where the entry was read, for metrics: "memory", "near"
	// (the near cache of rediscache) or "redis".
	Tier string
}

// Store is a cache backend. Implementations are safe for concurrent use.
// Every method honours ctx and returns the backend's errors as errors (never as
// a miss). Keys are opaque strings chosen by the caller; a backend may require
// them to be prefixed or hash-tagged.
type Store interface {
	// Name returns a short label of the backend for metrics, such as "memory"
	// or "redis".
	Name() string
	// Get returns what key holds. An absent or expired key, and a key holding
	// a lease, is a Miss (Leased tells the two apart).
	Get(ctx context.Context, key string) (Entry, error)
	// Set stores e (Status Hit with Value, or Negative; Delta is kept) under
	// key for ttl, unconditionally, replacing a value or a lease. ttl must be
	// positive.
	Set(ctx context.Context, key string, e Entry, ttl time.Duration) error
	// Delete removes keys. Absent keys are not an error. Deleting a key that
	// holds a lease voids the lease.
	Delete(ctx context.Context, keys ...string) error
	// Lease takes the fill lease of key for ttl if and only if key holds
	// nothing (SET NX PX). It returns the lease token when it took the lease;
	// otherwise an empty token and what key holds.
	Lease(ctx context.Context, key string, ttl time.Duration) (token string, held Entry, err error)
	// Fill stores e under key for ttl if and only if key still holds the
	// version named by token: a lease token from Lease, or the Token of an
	// entry returned by Get. It reports whether it stored.
	Fill(ctx context.Context, key, token string, e Entry, ttl time.Duration) (stored bool, err error)
	// Release deletes key if it still holds the lease named by token, so other
	// loaders need not wait for the lease to expire.
	Release(ctx context.Context, key, token string) error
}
