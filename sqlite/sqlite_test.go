package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

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
	storetest.RunMigrations(t, []int{1}, func(t *testing.T) storetest.MigrationTarget {
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
