package entrycache_test

import (
	"testing"
	"time"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/cache/rediscache"
	"github.com/journalsvc/journal/internal/storetest"
	"github.com/journalsvc/journal/internal/testdb"
	"github.com/journalsvc/journal/internal/testenv"
)

// TestRedisOutage pauses (SIGSTOP) and kills a private Redis while two
// instances read and write: reads stay correct and bounded, a write made
// during the outage is visible on the other instance within 1 s, and when
// Redis returns, the stale values it still holds never come back.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"pause", "kill"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			db := testdb.Postgres(t)
			r := testenv.StartRedis(t)
			prefix := testenv.RandomPrefix()
			opts := rediscache.Options{} // production defaults: 50ms per call
			a := newInstance(t, db, redisStoreOpts(t, r.Addr(), opts), prefix)
			b := newInstance(t, db, redisStoreOpts(t, r.Addr(), opts), prefix)
			ctx := ctxT(t)
			u := storetest.NewUser(t, db, "alice")
			e := create(t, a, u.ID, "before")
			for _, in := range []*instance{a, b} { // both hold "before" in Redis and near cache
				if got, err := in.Entry(ctx, u.ID, e.ID); err != nil || got.Title != "before" {
					t.Fatalf("Entry = %+v, %v", got, err)
				}
				if _, err := in.ListEntries(ctx, u.ID, journal.PageRequest{Limit: 20}); err != nil {
					t.Fatal(err)
				}
			}

			switch mode {
			case "pause":
				r.Pause(t)
			case "kill":
				r.Kill(t)
			}
			title := "during"
			start := time.Now()
			upd, err := a.UpdateEntry(ctx, u.ID, e.ID, journal.EntryPatch{Title: &title}, journal.AnyVersion, journal.StoredTime(time.Now()))
			if err != nil {
				t.Fatalf("update during outage: %v", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("update during outage took %v", d)
			}
			// B must see the write within 1 s (3 s with margin), every read
			// answered correctly (old or new, never an error) and quickly.
			var slowest time.Duration
			lag := testenv.WaitFor(t, 3*time.Second, "write visible on B during the outage", func() bool {
				t0 := time.Now()
				got, err := b.Entry(ctx, u.ID, e.ID)
				if d := time.Since(t0); d > slowest {
					slowest = d
				}
				if err != nil {
					t.Fatalf("read on B during outage: %v", err)
				}
				return got.Title == "during"
			})
			t.Logf("%s: write visible on B after %v; slowest read %v", mode, lag, slowest)
			if slowest > 1500*time.Millisecond {
				t.Errorf("a read during the outage took %v", slowest)
			}
			p, err := b.ListEntries(ctx, u.ID, journal.PageRequest{Limit: 20})
			if err != nil || len(p.Entries) != 1 || p.Entries[0].Version != upd.Version {
				t.Errorf("page on B during outage = %+v, %v; want version %d", p, err, upd.Version)
			}

			switch mode {
			case "pause":
				r.Resume(t)
			case "kill":
				r.Restart(t)
			}
			// Redis is back. In pause mode it still holds "before": no read may
			// ever return it, and both instances must trust the cache again
			// once the outbox is replayed.
			deadline := time.Now().Add(3 * time.Second)
			for time.Now().Before(deadline) {
				for name, in := range map[string]*instance{"A": a, "B": b} {
					got, err := in.Entry(ctx, u.ID, e.ID)
					if err != nil {
						t.Fatalf("read on %s after recovery: %v", name, err)
					}
					if got.Title != "during" {
						t.Fatalf("stale value on %s after Redis returned: %q", name, got.Title)
					}
					p, err := in.ListEntries(ctx, u.ID, journal.PageRequest{Limit: 20})
					if err != nil || len(p.Entries) != 1 || p.Entries[0].Title != "during" {
						t.Fatalf("stale page on %s after Redis returned: %+v, %v", name, p, err)
					}
				}
				if a.Trusted() && b.Trusted() {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if !a.Trusted() || !b.Trusted() {
				t.Errorf("cache not trusted again 3 s after Redis returned (A %v, B %v)", a.Trusted(), b.Trusted())
			}
			if n, err := db.PendingChanges(ctx); err != nil || n != 0 {
				t.Errorf("outbox after recovery: %d pending, %v", n, err)
			}
			// And the cache serves again: a read on B is a hit after one load.
			b.db.entryLoads.Store(0)
			for range 3 {
				if _, err := b.Entry(ctx, u.ID, e.ID); err != nil {
					t.Fatal(err)
				}
			}
			if n := b.db.entryLoads.Load(); n > 1 {
				t.Errorf("after recovery B loaded the entry %d times for 3 reads, want <= 1", n)
			}
		})
	}
}
