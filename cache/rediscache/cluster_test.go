package rediscache_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/journalsvc/journal/cache"
	"github.com/journalsvc/journal/cache/cachetest"
	"github.com/journalsvc/journal/cache/rediscache"
	"github.com/journalsvc/journal/cache/rediscache/rediscachetest"
	"github.com/journalsvc/journal/internal/testenv"
)

// newClusterInstance connects one instance to every seed of cl, as
// cmd/journal does for a JOURNAL_REDIS_URL with several addresses. Its Redis
// call timeout is 1s, as in newInstance.
func newClusterInstance(tb testing.TB, cl *testenv.Cluster) *instance {
	tb.Helper()
	client := rediscachetest.Client(tb, cl.Addrs(), rediscache.ClientConfig{})
	return newInstanceOn(tb, client, rediscache.Options{Timeout: time.Second})
}

// taggedStore prefixes every key with one hash tag, so all the keys a test
// uses live in one Cluster slot, as the service's per-user keys
// (journal:e:{u:<uid>}:...) do: multi-key calls then go to one node.
type taggedStore struct {
	cache.Store
	tag string
}

func (s taggedStore) k(key string) string { return "{" + s.tag + "}" + key }

func (s taggedStore) Get(ctx context.Context, key string) (cache.Entry, error) {
	return s.Store.Get(ctx, s.k(key))
}

func (s taggedStore) Set(ctx context.Context, key string, e cache.Entry, ttl time.Duration) error {
	return s.Store.Set(ctx, s.k(key), e, ttl)
}

func (s taggedStore) Delete(ctx context.Context, keys ...string) error {
	tagged := make([]string, len(keys))
	for i, key := range keys {
		tagged[i] = s.k(key)
	}
	return s.Store.Delete(ctx, tagged...)
}

func (s taggedStore) Lease(ctx context.Context, key string, ttl time.Duration) (string, cache.Entry, error) {
	return s.Store.Lease(ctx, s.k(key), ttl)
}

func (s taggedStore) Fill(ctx context.Context, key, token string, e cache.Entry, ttl time.Duration) (bool, error) {
	return s.Store.Fill(ctx, s.k(key), token, e, ttl)
}

func (s taggedStore) Release(ctx context.Context, key, token string) error {
	return s.Store.Release(ctx, s.k(key), token)
}

// TestCluster runs the cache.Store conformance suite and the cross-slot and
// coherence tests below on one 3-master Redis Cluster. The conformance suite
// runs twice: with plain random keys (every key in its own slot, so the
// multi-key Delete spans nodes) and with every key of a store under one hash
// tag (one slot, as the service's keys of one user).
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node Redis Cluster")
	}
	cl := testenv.RedisCluster(t)
	t.Run("ConformanceKeys", func(t *testing.T) {
		cachetest.Run(t, func(tb testing.TB) cache.Store { return newClusterInstance(tb, cl).store })
	})
	t.Run("ConformanceHashTagged", func(t *testing.T) {
		cachetest.Run(t, func(tb testing.TB) cache.Store {
			return taggedStore{Store: newClusterInstance(tb, cl).store, tag: testenv.RandomName("t:")}
		})
	})
	t.Run("DeleteAcrossSlots", func(t *testing.T) { t.Parallel(); testClusterDeleteAcrossSlots(t, cl) })
	t.Run("Coherence", func(t *testing.T) { t.Parallel(); testClusterCoherence(t, cl) })
}

// keysOnEveryMaster returns one new key per master of cl, in different
// slots.
func keysOnEveryMaster(t *testing.T, cl *testenv.Cluster, name string) []string {
	t.Helper()
	byMaster := map[string]string{}
	for i := 0; len(byMaster) < 3; i++ {
		if i == 1000 {
			t.Fatalf("1000 random keys did not cover 3 masters: %v", byMaster)
		}
		k := cachetest.Key(t, name+strconv.Itoa(i))
		m := cl.MasterFor(t, k).Addr()
		if _, ok := byMaster[m]; !ok {
			byMaster[m] = k
		}
	}
	var keys []string
	slots := map[int]bool{}
	for _, k := range byMaster {
		keys = append(keys, k)
		slots[testenv.KeySlot(k)] = true
	}
	if len(slots) != len(keys) {
		t.Fatalf("keys %v share a slot", keys)
	}
	return keys
}

// testClusterDeleteAcrossSlots deletes, in one call on instance A, keys that
// live on three different masters and that instance B holds in its near
// cache: A reads its own deletes at once, B within the invalidation lag, and
// Redis holds none of them.
func testClusterDeleteAcrossSlots(t *testing.T, cl *testenv.Cluster) {
	a, b := newClusterInstance(t, cl), newClusterInstance(t, cl)
	keys := keysOnEveryMaster(t, cl, "del")
	for _, k := range keys {
		set(t, a.store, k, "v")
		cachetest.Get(t, b.store, k)
		if e := cachetest.Get(t, b.store, k); e.Tier != "near" || string(e.Value) != "v" {
			t.Fatalf("second read of %q on B = %v %q from %q, want hit \"v\" from near", k, e.Status, e.Value, e.Tier)
		}
		cachetest.Get(t, a.store, k)
	}
	ctx := context.Background()
	if err := a.store.Delete(ctx, keys...); err != nil {
		t.Fatalf("Delete(%v) across slots: %v", keys, err)
	}
	for _, k := range keys {
		if e := cachetest.Get(t, a.store, k); e.Status != cache.Miss {
			t.Errorf("A reads %q right after its own Delete: %v %q, want miss", k, e.Status, e.Value)
		}
	}
	lag := testenv.WaitFor(t, lagBound, "B sees the deletes of A on every master", func() bool {
		for _, k := range keys {
			if cachetest.Get(t, b.store, k).Status != cache.Miss {
				return false
			}
		}
		return true
	})
	t.Logf("B saw the delete of %d keys on 3 masters after %v", len(keys), lag)
	for _, k := range keys {
		if n, err := a.client.Do(ctx, a.client.B().Exists().Key(k).Build()).AsInt64(); err != nil || n != 0 {
			t.Errorf("EXISTS %q after Delete = %d, %v; want 0", k, n, err)
		}
	}
}

// testClusterCoherence runs testCoherence for a key on each master.
func testClusterCoherence(t *testing.T, cl *testenv.Cluster) {
	a, b := newClusterInstance(t, cl), newClusterInstance(t, cl)
	for _, k := range keysOnEveryMaster(t, cl, "coherent") {
		testCoherence(t, a, b, k, "master "+cl.MasterFor(t, k).Addr(), 300)
	}
}
