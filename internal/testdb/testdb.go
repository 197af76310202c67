// Package testdb opens the project's stores for tests: the stores' own tests
// and those of the packages built on them. Every store is closed at the end
// of the test that opened it, and a failure to close it fails that test.
package testdb

import (
	"context"
	"database/sql"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/internal/sqlstore"

	"github.com/journalsvc/journal/internal/testenv"
	"github.com/journalsvc/journal/postgres"
	"github.com/journalsvc/journal/sqlite"
)

// openTimeout bounds the opening of a store, migrations included.
const openTimeout = 30 * time.Second

// SQLite returns a store on a new SQLite file in a tb.TempDir.
func SQLite(tb testing.TB) *sqlite.Store {
	tb.Helper()
	return SQLiteAt(tb, filepath.Join(tb.TempDir(), "journal.db"))
}

// SQLiteAt returns a store on the SQLite file at path.
func SQLiteAt(tb testing.TB, path string) *sqlite.Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		tb.Fatalf("testdb: sqlite.Open: %v", err)
	}
	closeAtCleanup(tb, s)
	return s
}

// Postgres returns a store with at most 8 connections on a new, empty
// database of the shared PostgreSQL server (see [testenv.PostgresURL]).
func Postgres(tb testing.TB) *postgres.Store {
	tb.Helper()
	return PostgresAt(tb, testenv.PostgresURL(tb))
}

// PostgresAt returns a store with at most 8 connections on the database at
// url.
func PostgresAt(tb testing.TB, url string) *postgres.Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	s, err := postgres.Open(ctx, url, 8)
	if err != nil {
		tb.Fatalf("testdb: postgres.Open: %v", err)
	}
	closeAtCleanup(tb, s)
	return s
}

func closeAtCleanup(tb testing.TB, c io.Closer) {
	tb.Cleanup(func() {
		if err := c.Close(); err != nil {
			tb.Errorf("testdb: Close: %v", err)
		}
	})
}

// SQLiteEntries writes entries into the SQLite file at path with SQL, in one
// transaction, bypassing a store: a fast way to fill a database for a
// benchmark. Their words are not indexed: with indexed false, a store's
// Open indexes them (as it would an upgraded database's); with indexed
// true they are marked indexed, for benchmarks that never search.
func SQLiteEntries(tb testing.TB, path string, entries []journal.Entry, indexed bool) {
	tb.Helper()
	raw, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		tb.Fatal(err)
	}
	defer raw.Close()
	tx, err := raw.Begin()
	if err != nil {
		tb.Fatal(err)
	}
	version := 0
	if indexed {
		version = sqlstore.WordsVersion
	}
	for _, e := range entries {
		if _, err := tx.Exec("INSERT INTO entries (id, user_id, title, body, version, created_at, updated_at, words_version)"+
			" VALUES (?, ?, ?, ?, 1, ?, ?, ?)",
			e.ID, e.UserID, e.Title, e.Body, e.CreatedAt.UnixMicro(), e.UpdatedAt.UnixMicro(), version); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
}
