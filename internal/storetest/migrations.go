package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/journalsvc/journal"
)

// MigrationTarget is one empty database that a store opens, for [RunMigrations].
type MigrationTarget struct {
	// Open opens a store on the database, applying the pending migrations.
	Open func(ctx context.Context) (journal.Database, error)
	// Versions returns the versions recorded in schema_migrations, ascending,
	// read without a store.
	Versions func(tb testing.TB) []int
}

// RunMigrations checks what a store's Open promises about its schema
// migrations: reopening a database keeps its data and applies nothing again,
// two stores may be open on one database, and stores opened concurrently on a
// new database all succeed with each migration applied once. fresh returns a
// new, empty database; want is the versions of the store's migrations.
func RunMigrations(t *testing.T, want []int, fresh func(t *testing.T) MigrationTarget) {
	t.Run("Reopen", func(t *testing.T) {
		t.Parallel()
		db := fresh(t)
		ctx := ctxT(t)
		s1, err := db.Open(ctx)
		if err != nil {
			t.Fatalf("first Open = %v", err)
		}
		u := journal.User{ID: journal.NewID(base), Username: "alice", PasswordHash: "h", CreatedAt: journal.StoredTime(base)}
		if err := s1.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		if err := s1.Close(); err != nil {
			t.Fatalf("Close = %v", err)
		}
		s2 := openMigrated(t, db)
		if got, err := s2.UserByID(ctx, u.ID); err != nil || got != u {
			t.Errorf("after reopening, UserByID = %+v, %v; want %+v", got, err, u)
		}
		openMigrated(t, db) // while s2 is open
		if diff := cmp.Diff(want, db.Versions(t)); diff != "" {
			t.Errorf("schema_migrations versions (-want +got):\n%s", diff)
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		t.Parallel()
		db := fresh(t)
		const n = 5
		var wg sync.WaitGroup
		stores := make([]journal.Database, n)
		errs := make([]error, n)
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				stores[i], errs[i] = db.Open(ctx)
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("Open %d = %v", i, err)
				continue
			}
			if err := stores[i].Ping(ctxT(t)); err != nil {
				t.Errorf("Ping %d = %v", i, err)
			}
			stores[i].Close()
		}
		if diff := cmp.Diff(want, db.Versions(t)); diff != "" {
			t.Errorf("schema_migrations versions (-want +got):\n%s", diff)
		}
	})
}

// openMigrated opens a store on db, closed at the end of the test.
func openMigrated(tb testing.TB, db MigrationTarget) journal.Database {
	tb.Helper()
	s, err := db.Open(ctxT(tb))
	if err != nil {
		tb.Fatalf("Open = %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}
