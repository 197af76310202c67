package entrycache_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/cache"
	"github.com/journalsvc/journal/cache/rediscache"
	"github.com/journalsvc/journal/cache/rediscache/rediscachetest"
	"github.com/journalsvc/journal/internal/storetest"
	"github.com/journalsvc/journal/internal/testdb"
	"github.com/journalsvc/journal/internal/testenv"
)

// clusterStore returns a rediscache store with its own client connected to
// every seed of cl (one "instance"), with redisStore's generous timeout.
func clusterStore(tb testing.TB, cl *testenv.Cluster) *rediscache.Store {
	tb.Helper()
	client := rediscachetest.Client(tb, cl.Addrs(), rediscache.ClientConfig{})
	return rediscachetest.Store(tb, client, rediscache.Options{Timeout: time.Second})
}

// userMaster returns the address of the master of u's cache slot: every key
// of u is journal:e:{u:<uid>}:..., one hash tag.
func userMaster(tb testing.TB, cl *testenv.Cluster, u journal.User) string {
	tb.Helper()
	return cl.MasterFor(tb, "{u:"+u.ID+"}").Addr()
}

// TestCluster runs the coherence, stampede and revocation tests of
// entrycache_test.go once against a 3-master Redis Cluster.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node Redis Cluster")
	}
	cl := testenv.RedisCluster(t)
	t.Run("Coherence", func(t *testing.T) { t.Parallel(); testClusterCoherence(t, cl) })
	onCluster := func(tb testing.TB) cache.Store { return clusterStore(tb, cl) }
	t.Run("Stampede", func(t *testing.T) { t.Parallel(); testStampede(t, onCluster) })
	t.Run("Revocation", func(t *testing.T) { t.Parallel(); testRevocation(t, onCluster) })
}

// testClusterCoherence writes on A and reads on B at once, items and pages,
// for two users whose keys live on different masters. A read on B may find
// the old version only until the invalidation arrives; each such read is
// counted and must turn fresh within lagBound.
func testClusterCoherence(t *testing.T, cl *testenv.Cluster) {
	db := testdb.Postgres(t)
	prefix := testenv.RandomPrefix()
	a := newInstance(t, db, clusterStore(t, cl), prefix)
	b := newInstance(t, db, clusterStore(t, cl), prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	alice := storetest.NewUser(t, db, "alice")
	var bob journal.User
	for i := 0; ; i++ {
		if i == 20 {
			t.Fatalf("20 users all on alice's master %s", userMaster(t, cl, alice))
		}
		bob = storetest.NewUser(t, db, fmt.Sprintf("bob%d", i))
		if userMaster(t, cl, bob) != userMaster(t, cl, alice) {
			break
		}
	}
	pairs := 200
	if testing.Short() {
		pairs = 50
	}
	for _, u := range []journal.User{alice, bob} {
		e := create(t, a, u.ID, "v0")
		var items, pages testenv.StaleReads
		for i := range pairs {
			upd := warmThenUpdate(t, ctx, a, b, u.ID, e.ID, i)
			if got, err := a.Entry(ctx, u.ID, e.ID); err != nil || got.Version != upd.Version {
				t.Fatalf("A reads version %d, %v right after its own update to %d", got.Version, err, upd.Version)
			}
			itemFresh := func() bool {
				got, err := b.Entry(ctx, u.ID, e.ID)
				if err != nil {
					t.Fatal(err)
				}
				return got.Version == upd.Version && got.Title == upd.Title
			}
			pageFresh := func() bool {
				p, err := b.ListEntries(ctx, u.ID, journal.PageRequest{Limit: 20})
				if err != nil {
					t.Fatal(err)
				}
				return len(p.Entries) == 1 && p.Entries[0].Version == upd.Version
			}
			items.Check(t, lagBound, time.Millisecond, itemFresh, "%s pair %d: B reads the old item", u.Username, i)
			pages.Check(t, lagBound, time.Millisecond, pageFresh, "%s pair %d: B reads the old page", u.Username, i)
		}
		t.Logf("%s (master %s): %d write-on-A/read-on-B pairs, %d stale item reads, %d stale page reads, longest lag %v",
			u.Username, userMaster(t, cl, u), pairs, items.Count, pages.Count, max(items.MaxLag, pages.MaxLag))
		if err := a.DeleteEntry(ctx, u.ID, e.ID, journal.AnyVersion); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, lagBound, "B sees the delete on A", func() bool {
			_, err := b.Entry(ctx, u.ID, e.ID)
			p, perr := b.ListEntries(ctx, u.ID, journal.PageRequest{Limit: 20})
			return errors.Is(err, journal.ErrNotFound) && perr == nil && len(p.Entries) == 0
		})
	}
}
