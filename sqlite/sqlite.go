// Package sqlite implements [journal.Database] on an SQLite database file with
// modernc.org/sqlite (pure Go, no cgo).
//
// The database runs in WAL mode with foreign keys on. Writes go through a
// pool of exactly one connection whose transactions begin IMMEDIATE, so
// concurrent writers in one process queue in Go instead of failing with
// SQLITE_BUSY, and writers in other processes wait up to the busy timeout.
// Reads use a separate pool of read-only connections and never wait for a
// writer. Timestamps are stored as integer Unix microseconds (UTC).
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/internal/migrations"
	"github.com/journalsvc/journal/internal/sqlstore"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// BusyTimeoutMillis is how long a connection waits for a lock held by another
// process (or by a WAL checkpoint) before it fails with SQLITE_BUSY.
const BusyTimeoutMillis = 5000

// Store is a [journal.Database] on one SQLite file. It runs the queries it shares
// with the postgres store, and applies outbox changes its own way (see
// [Store.ApplyChanges]). It is safe for concurrent use and must not be used
// after Close.
type Store struct {
	*queries // users, tokens, entries, PendingChanges

	w *sql.DB // exactly one connection; every write transaction is BEGIN IMMEDIATE
	r *sql.DB // read-only connections

	// replaying is held by the one ApplyChanges replay (userID == "") this
	// Store runs at a time; another replay skips every row meanwhile.
	replaying sync.Mutex
	// purging is held by the one Purge this Store runs at a time.
	purging sync.Mutex
}

var _ journal.Database = (*Store)(nil)

// queries are the methods the store shares with the postgres store.
type queries = sqlstore.Store

// Open opens (creating it if needed) the SQLite database file at path, applies
// the pending schema migrations and returns the store. path is a file system
// path (the "sqlite:" URL prefix is the caller's business); ":memory:" and
// paths holding '?' are rejected because the store opens the file through two
// connection pools. Open is safe when several processes open the same file at
// once: migrations run in one IMMEDIATE transaction.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") || strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("sqlite: open %q: need a plain file path", path)
	}
	common := url.Values{}
	common.Set("_busy_timeout", strconv.Itoa(BusyTimeoutMillis))
	common.Set("_foreign_keys", "1")
	common.Set("_synchronous", "FULL")

	wq := url.Values{}
	for k, v := range common {
		wq[k] = v
	}
	wq.Set("_journal_mode", "WAL")
	wq.Set("_txlock", "immediate")
	w, err := sql.Open("sqlite", path+"?"+wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)
	if err := migrate(ctx, w); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}

	rq := common
	rq.Set("_query_only", "1")
	r, err := sql.Open("sqlite", path+"?"+rq.Encode())
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	r.SetConnMaxIdleTime(0)
	r.SetConnMaxLifetime(0)
	if err := r.PingContext(ctx); err != nil {
		_ = w.Close()
		_ = r.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s := &Store{w: w, r: r}
	s.queries = sqlstore.New(dialect, db{r}, db{w}, s.inTx)
	if err := sqlstore.Reindex(ctx, s.queries); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return s, nil
}

// Ping checks that both pools answer.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.r.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	var one int
	if err := s.r.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	return nil
}

// Close closes both connection pools.
func (s *Store) Close() error {
	return errors.Join(s.r.Close(), s.w.Close())
}

// migrate applies every embedded migration not yet recorded in
// schema_migrations, all in one IMMEDIATE transaction so concurrent openers
// (other processes) serialize and each version is applied once.
//
// Where waiting for a lock could deadlock, SQLite returns SQLITE_BUSY at once
// without calling the busy handler (https://sqlite.org/c3ref/busy_handler.html);
// openers of a new file meet that while another converts it to WAL. The
// transaction is then retried, for up to the busy timeout.
func migrate(ctx context.Context, db *sql.DB) error {
	ms, err := migrations.Load(migrationFS)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(BusyTimeoutMillis * time.Millisecond)
	for {
		err := migrateOnce(ctx, db, ms)
		if err == nil || sqliteCode(err)&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func migrateOnce(ctx context.Context, db *sql.DB, ms []migrations.Migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER))
	) STRICT`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	applied := map[int]bool{}
	rows, err := tx.QueryContext(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("migrate: %w", err)
		}
		applied[v] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("migrate %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", m.Version, m.Name); err != nil {
			return fmt.Errorf("migrate %s: %w", m.Name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// sqliteCode returns the extended result code of an SQLite error, or 0.
func sqliteCode(err error) int {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}
