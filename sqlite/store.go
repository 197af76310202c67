package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/internal/sqlstore"
	sqlite3 "modernc.org/sqlite/lib"
)

// dialect stores times as integer Unix microseconds (UTC).
var dialect = sqlstore.Dialect{
	Name:     "sqlite",
	Now:      "CAST(unixepoch('subsec') * 1000000 AS INTEGER)",
	Time:     func(t time.Time) any { return t.UnixMicro() },
	ScanTime: func(t *time.Time) any { return (*micros)(t) },
	UsernameTaken: func(err error) bool {
		return sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_UNIQUE
	},
	ForeignKeyViolation: func(err error) bool {
		return sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
	},
	// Another process held the file's lock past the busy timeout: a later
	// call may get it.
	Unavailable: func(err error) bool {
		switch sqliteCode(err) & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return true
		}
		return false
	},
}

// micros scans a time column (integer Unix microseconds) into a UTC
// time.Time.
type micros time.Time

// Scan implements sql.Scanner.
func (m *micros) Scan(src any) error {
	us, ok := src.(int64)
	if !ok {
		return fmt.Errorf("time column holds %T, want int64", src)
	}
	*m = micros(time.UnixMicro(us).UTC())
	return nil
}

// db runs sqlstore's statements on a pool or a transaction.
type db struct {
	q interface {
		ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
		QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
		QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	}
}

func (d db) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := d.q.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (d db) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	rows, err := d.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return rowsCloser{rows}, nil
}

func (d db) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return d.q.QueryRowContext(ctx, query, args...)
}

// rowsCloser gives *sql.Rows the Close of [sqlstore.Rows]; an error of Close
// is also reported by Err.
type rowsCloser struct{ *sql.Rows }

func (r rowsCloser) Close() { _ = r.Rows.Close() }

// inTx runs fn in one IMMEDIATE transaction on the writer connection and
// commits when fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(sqlstore.DB) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(db{tx}); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// ApplyChanges implements journal.Outbox. Neither mode holds a transaction
// (and so SQLite's write lock) while apply runs: the changes are read, apply
// runs, and the applied ones are deleted in a short write transaction. A
// replay (userID == "") that finds another replay of this Store running
// skips every row (it returns 0): that one holds them.
func (s *Store) ApplyChanges(ctx context.Context, userID string, limit int, apply func(context.Context, []journal.Change) error) (int, error) {
	if limit < 1 {
		return 0, fmt.Errorf("sqlite: apply changes: limit %d < 1", limit)
	}
	if userID == "" {
		if !s.replaying.TryLock() {
			return 0, nil
		}
		defer s.replaying.Unlock()
	}
	changes, err := sqlstore.ApplyPending(ctx, s.queries, db{s.r}, userID, limit, apply)
	if err != nil || len(changes) == 0 {
		return 0, err
	}
	args := make([]any, len(changes))
	for i, seq := range sqlstore.Seqs(changes) {
		args[i] = seq
	}
	q := "DELETE FROM outbox WHERE seq IN (?" + strings.Repeat(", ?", len(changes)-1) + ")"
	err = sqlstore.Write(ctx, s.queries, "apply changes", func(tx sqlstore.DB) error {
		_, err := tx.Exec(ctx, q, args...)
		return err
	})
	if err != nil && userID == "" {
		// A replay reports it: the outbox did not shrink. On the write path the
		// changes were applied, which is what the caller asked; a replay
		// applies them again later (apply is idempotent).
		return 0, err
	}
	return len(changes), nil
}

// Purge implements journal.Purger. Within this process one Purge runs at a
// time (another returns journal.ErrPurgeRunning); its deletes run in one
// IMMEDIATE transaction, which SQLite runs alone among every process
// writing the file.
func (s *Store) Purge(ctx context.Context, now time.Time, limit int) (int, error) {
	if !s.purging.TryLock() {
		return 0, journal.ErrPurgeRunning
	}
	defer s.purging.Unlock()
	var n int
	err := sqlstore.Write(ctx, s.queries, "purge", func(tx sqlstore.DB) error {
		var err error
		n, err = sqlstore.PurgeBatch(ctx, s.queries, tx, now, limit)
		return err
	})
	return n, err
}
