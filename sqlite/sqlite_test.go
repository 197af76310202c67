package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/internal/storetest"
	"github.com/journalsvc/journal/internal/testdb"
	"github.com/journalsvc/journal/sqlite"
	_ "modernc.org/sqlite"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) journal.Database {
		return testdb.SQLite(t)
	})
}

func TestMigrations(t *testing.T) {
	storetest.RunMigrations(t, []int{1, 2}, func(t *testing.T) storetest.MigrationTarget {
		path := filepath.Join(t.TempDir(), "journal.db")
		return storetest.MigrationTarget{
			Open: func(ctx context.Context) (journal.Database, error) { return sqlite.Open(ctx, path) },
			Versions: func(tb testing.TB) []int {
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
			},
		}
	})
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
	storetest.Bench(b, testdb.SQLite(b))
}

// TestReindexOnOpen: entries that an older tokenizer indexed (or none, as
// before the word index existed) are indexed again when the store opens.
func TestReindexOnOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "journal.db")
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	u := storetest.NewUser(t, s, "alice")
	e := storetest.NewEntry(t, s, u.ID, "old words", time.Now())
	s.Close()
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec("DELETE FROM entry_words; UPDATE entries SET words_version = 0"); err != nil {
		t.Fatal(err)
	}
	raw.Close()

	s = testdb.SQLiteAt(t, path)
	f, _ := journal.ParseFilter("words", "", "")
	p, err := s.ListEntries(ctx, u.ID, journal.PageRequest{Limit: 10, Filter: f})
	if err != nil || len(p.Entries) != 1 || p.Entries[0].ID != e.ID {
		t.Errorf("search after reopening = %+v, %v; want the entry", p, err)
	}
}

// benchEntries is the number of entries of the search benchmark's user.
const benchEntries = 100_000

// BenchmarkSearch measures the first page of searches over 100,000 entries
// of one user. The entries are written with SQL in one transaction and
// indexed by the store's Open (Reindex), as an upgraded database would be.
func BenchmarkSearch(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "journal.db")
	s := testdb.SQLiteAt(b, path)
	start := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	u := storetest.NewUser(b, s, "bench")
	testdb.SQLiteEntries(b, path, storetest.BenchCorpus(u.ID, benchEntries, start), false)
	t0 := time.Now()
	octx, cancel := context.WithTimeout(ctx, 10*time.Minute) // Open indexes them all
	defer cancel()
	s, err := sqlite.Open(octx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.Logf("indexed %d entries in %v", benchEntries, time.Since(t0))
	storetest.BenchSearch(b, s, u.ID, start)
}
