package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/internal/storetest"
	"github.com/journalsvc/journal/sqlite"
	_ "modernc.org/sqlite"
)

func openStore(tb testing.TB, path string) *sqlite.Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		tb.Fatalf("Open(%q) = %v", path, err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close = %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) journal.Store {
		return openStore(t, filepath.Join(t.TempDir(), "journal.db"))
	})
}

// migrationVersions returns the rows of schema_migrations, read without the
// store.
func migrationVersions(tb testing.TB, path string) []int {
	tb.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT version FROM schema_migrations ORDER BY version")
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			tb.Fatal(err)
		}
		vs = append(vs, v)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return vs
}

func TestMigrationsTwice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	ctx := context.Background()
	s1, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("first Open = %v", err)
	}
	u := journal.User{ID: journal.NewID(time.Now()), Username: "alice", PasswordHash: "h", CreatedAt: journal.Now(time.Now())}
	if err := s1.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, path)
	if got, err := s2.UserByID(ctx, u.ID); err != nil || got != u {
		t.Errorf("after reopening, UserByID = %+v, %v; want %+v", got, err, u)
	}
	// A second store on the same file while the first is open.
	openStore(t, path)
	if got, want := migrationVersions(t, path), []int{1}; len(got) != len(want) || got[0] != want[0] {
		t.Errorf("schema_migrations versions = %v, want %v", got, want)
	}
}

func TestMigrationsConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	const n = 5
	var wg sync.WaitGroup
	stores := make([]*sqlite.Store, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = sqlite.Open(context.Background(), path)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d = %v", i, err)
			continue
		}
		if err := stores[i].Ping(context.Background()); err != nil {
			t.Errorf("Ping %d = %v", i, err)
		}
		stores[i].Close()
	}
	if got := migrationVersions(t, path); len(got) != 1 || got[0] != 1 {
		t.Errorf("schema_migrations versions = %v, want [1]", got)
	}
}

func TestOpenRejectsNonFilePaths(t *testing.T) {
	for _, p := range []string{"", ":memory:", "file:x.db", "x.db?mode=ro"} {
		if s, err := sqlite.Open(context.Background(), p); err == nil {
			s.Close()
			t.Errorf("Open(%q) = nil error", p)
		}
	}
}

func TestOpenCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "x.db")); err == nil {
		s.Close()
		t.Errorf("Open(canceled ctx) = nil error")
	}
}

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, openStore(b, filepath.Join(b.TempDir(), "journal.db")))
}
