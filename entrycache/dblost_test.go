package entrycache_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/internal/storetest"
	"github.com/journalsvc/journal/internal/testdb"
	"github.com/journalsvc/journal/internal/testenv"
)

// crashAfterWrite is the database of an instance whose PostgreSQL crashes
// right after it commits an entry write, before the write's invalidation
// reads the outbox.
type crashAfterWrite struct {
	journal.Database
	crash func()
}

func (c crashAfterWrite) UpdateEntry(ctx context.Context, userID, id string, p journal.EntryPatch, ifVersion int64, now time.Time) (journal.Entry, error) {
	e, err := c.Database.UpdateEntry(ctx, userID, id, p, ifVersion, now)
	if err == nil {
		c.crash()
	}
	return e, err
}

func (c crashAfterWrite) DeleteEntry(ctx context.Context, userID, id string, ifVersion int64) error {
	err := c.Database.DeleteEntry(ctx, userID, id, ifVersion)
	if err == nil {
		c.crash()
	}
	return err
}

// TestDatabaseLostAfterCommit: PostgreSQL crashes between a write's commit
// and its invalidation, so the outbox cannot be read. The write returns (it
// is committed), and no other instance may serve what it replaced: while
// the database is down, B answers from the cache only what is still true, or
// fails. (The outbox row stays for the replayer.)
func TestDatabaseLostAfterCommit(t *testing.T) {
	t.Parallel()
	for _, op := range []string{"update", "delete"} {
		t.Run(op, func(t *testing.T) {
			t.Parallel()
			pg := testenv.StartPostgres(t)
			db := testdb.PostgresAt(t, pg.URL())
			addr := testenv.RedisAddr(t)
			prefix := testenv.RandomPrefix()
			a := newInstance(t, crashAfterWrite{Database: db, crash: func() { pg.Kill(t) }}, redisStore(t, addr), prefix)
			b := newInstance(t, db, redisStore(t, addr), prefix)
			ctx := ctxT(t)
			u := storetest.NewUser(t, db, "alice")
			e := create(t, a, u.ID, "before")
			if got, err := b.Entry(ctx, u.ID, e.ID); err != nil || got.Title != "before" {
				t.Fatalf("B: Entry = %+v, %v", got, err) // now cached, in Redis and B's near cache
			}

			switch op {
			case "update":
				title := "after"
				if _, err := a.UpdateEntry(ctx, u.ID, e.ID, journal.EntryPatch{Title: &title}, journal.AnyVersion, journal.StoredTime(time.Now())); err != nil {
					t.Fatalf("update: %v", err)
				}
			case "delete":
				if err := a.DeleteEntry(ctx, u.ID, e.ID, journal.AnyVersion); err != nil {
					t.Fatalf("delete: %v", err)
				}
			}
			b.roundTrip(t, ctx) // B has every invalidation of writes that returned
			got, err := b.Entry(ctx, u.ID, e.ID)
			if err == nil && got.Title == "before" {
				t.Errorf("after the %s returned, B serves the entry it replaced: %+v", op, got)
			}
			if err != nil && !errors.Is(err, journal.ErrUnavailable) && !errors.Is(err, journal.ErrNotFound) {
				t.Errorf("B: Entry with the database down: %v, want it unavailable", err)
			}
		})
	}
}
