package redisconn

import (
	"context"
	"errors"
	"time"

	"github.com/journalsvc/journal/cache"
	"github.com/journalsvc/journal/cache/rediscache"
)

// CacheStore returns the Redis cache store as a cache.Store: the
// rediscache.Store once connected (every call within the request's Redis
// budget), an error wrapping [ErrConnecting] before, and [ErrBudgetSpent]
// once the budget is spent (entrycache bypasses the cache before that, see
// [Spent]).
func (c *Conn) CacheStore() cache.Store { return cacheStore{c} }

type cacheStore struct{ c *Conn }

var _ cache.Store = cacheStore{}

// get returns the connected store and ctx bounded by the request's Redis
// budget; the charge's done charges the call.
func (s cacheStore) get(ctx context.Context) (*rediscache.Store, context.Context, charge, error) {
	st := s.c.store.Load()
	if st == nil {
		return nil, ctx, charge{}, ErrConnecting
	}
	bctx, ch, ok := call(ctx)
	if !ok {
		return st, ctx, charge{}, ErrBudgetSpent
	}
	return st, bctx, ch, nil
}

// cleanup is get for Fill and Release, which end a fill lease, and for
// Delete, which invalidates after a committed write: they run even with the
// budget spent (bounded by the store's own timeout and charged). Otherwise
// a lease would stay until it expires and every other reader of the key
// would wait for a fill that never comes; and a write would return while
// the other instances still serve the old value until a replayer applies
// its invalidation.
func (s cacheStore) cleanup(ctx context.Context) (*rediscache.Store, context.Context, charge, error) {
	st, bctx, ch, err := s.get(ctx)
	if errors.Is(err, ErrBudgetSpent) {
		return st, ctx, charge{}, nil
	}
	return st, bctx, ch, err
}

func (s cacheStore) Name() string { return "redis" }

// CacheHealthy reports whether the cache store is connected and passes its
// liveness check: the entry cache's Healthy option (it reads the database
// while the store is not).
func (c *Conn) CacheHealthy() bool {
	st := c.store.Load()
	return st != nil && st.Healthy()
}

// Get reads key, from the near cache if it holds it. The first Get of a
// request first waits for a barrier (rediscache.Store.Barrier) that began
// after the request did, so that no request serves a near-cache copy older
// than a write that returned, on any instance, before it began: a request
// that made no other Redis call (its limiter decisions answered from leases)
// has nothing else to order its reads after the invalidations.
func (s cacheStore) Get(ctx context.Context, key string) (cache.Entry, error) {
	st, bctx, ch, err := s.get(ctx)
	if err != nil {
		return cache.Entry{}, err
	}
	defer ch.done()
	if s.c.near.Load() {
		b := budgetFrom(ctx)
		if b == nil || !b.ordered.Load() {
			if err := st.Barrier(bctx); err != nil {
				return cache.Entry{}, err
			}
			if b != nil {
				b.ordered.Store(true)
			}
		}
	}
	return st.Get(bctx, key)
}

func (s cacheStore) Set(ctx context.Context, key string, e cache.Entry, ttl time.Duration) error {
	st, ctx, ch, err := s.get(ctx)
	if err != nil {
		return err
	}
	defer ch.done()
	return st.Set(ctx, key, e, ttl)
}

// Delete invalidates keys after a write, within the request's Redis budget
// while some is left, else within the store's timeout (see cleanup;
// rediscache returns at the deadline even while its client reconnects, and
// entrycache does not call it while the store is known unhealthy).
// Invalidations run inside the outbox transaction, holding its row locks:
// the background replayer, which has no request budget, must not hold them
// longer than one Redis deadline either, or a write of the same user waits
// behind it.
func (s cacheStore) Delete(ctx context.Context, keys ...string) error {
	st, ctx, ch, err := s.cleanup(ctx)
	if err != nil {
		return err
	}
	defer ch.done()
	return st.Delete(ctx, keys...)
}

func (s cacheStore) Lease(ctx context.Context, key string, ttl time.Duration) (string, cache.Entry, error) {
	st, ctx, ch, err := s.get(ctx)
	if err != nil {
		return "", cache.Entry{}, err
	}
	defer ch.done()
	return st.Lease(ctx, key, ttl)
}

func (s cacheStore) Fill(ctx context.Context, key, token string, e cache.Entry, ttl time.Duration) (bool, error) {
	st, ctx, ch, err := s.cleanup(ctx)
	if err != nil {
		return false, err
	}
	defer ch.done()
	return st.Fill(ctx, key, token, e, ttl)
}

func (s cacheStore) Release(ctx context.Context, key, token string) error {
	st, ctx, ch, err := s.cleanup(ctx)
	if err != nil {
		return err
	}
	defer ch.done()
	return st.Release(ctx, key, token)
}
