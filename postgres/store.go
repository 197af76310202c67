package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/internal/sqlstore"
)

// dialect stores times as timestamptz, which pgx reads and writes as
// time.Time.
var dialect = sqlstore.Dialect{
	Name:     "postgres",
	Now:      "now()",
	Time:     func(t time.Time) any { return t },
	ScanTime: func(t *time.Time) any { return t },
	UsernameTaken: func(err error) bool {
		code, constraint := pgCode(err)
		return code == codeUniqueViolation && constraint == "users_username_key"
	},
	ForeignKeyViolation: func(err error) bool {
		code, _ := pgCode(err)
		return code == codeForeignKeyViolation
	},
}

// PostgreSQL error codes (SQLSTATE) the store maps to domain errors.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
)

func pgCode(err error) (code, constraint string) {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code, e.ConstraintName
	}
	return "", ""
}

// db runs sqlstore's statements on the pool or a transaction.
type db struct {
	q interface {
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
		Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
		QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	}
}

func (d db) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := d.q.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

func (d db) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	return d.q.Query(ctx, query, args...)
}

func (d db) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return d.q.QueryRow(ctx, query, args...)
}

// inTx runs fn in one transaction and commits when fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(sqlstore.DB) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return fn(db{tx}) })
}

// ApplyChanges implements journal.Outbox. A replay (userID == "") claims
// rows with FOR UPDATE SKIP LOCKED in a transaction that stays open while
// apply runs: keep apply bounded by ctx. The write path (userID != "") reads
// the user's rows without locking, applies them outside any transaction and
// deletes those no replay holds, so a write never queues behind a replay
// that is waiting on a slow cache.
func (s *Store) ApplyChanges(ctx context.Context, userID string, limit int, apply func(context.Context, []journal.Change) error) (int, error) {
	if limit < 1 {
		return 0, fmt.Errorf("postgres: apply changes: limit %d < 1", limit)
	}
	if userID != "" {
		if !journal.ValidID(userID) {
			return 0, nil // no change can belong to a malformed id
		}
		return s.applyUserChanges(ctx, userID, limit, apply)
	}
	var n int
	var applyErr error
	err := s.inTx(ctx, func(tx sqlstore.DB) error {
		changes, err := sqlstore.Changes(ctx, tx, "", limit, " FOR UPDATE SKIP LOCKED")
		if err != nil || len(changes) == 0 {
			return err
		}
		if err := apply(ctx, changes); err != nil {
			applyErr = err
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM outbox WHERE seq = ANY($1)", sqlstore.Seqs(changes)); err != nil {
			return err
		}
		n = len(changes)
		return nil
	})
	if applyErr != nil {
		return 0, applyErr
	}
	if err != nil {
		return 0, fmt.Errorf("postgres: apply changes: %w", err)
	}
	return n, nil
}

// applyUserChanges is the write path of ApplyChanges.
func (s *Store) applyUserChanges(ctx context.Context, userID string, limit int, apply func(context.Context, []journal.Change) error) (int, error) {
	changes, err := sqlstore.ApplyPending(ctx, s.queries, db{s.pool}, userID, limit, apply)
	if err != nil || len(changes) == 0 {
		return 0, err
	}
	// Rows a replay holds are its to delete: it applies them too. If the
	// delete fails, the changes stay pending although applied, and a replay
	// applies them again, which is harmless: the caller's apply succeeded, so
	// the call did.
	_, _ = s.pool.Exec(ctx, `DELETE FROM outbox WHERE seq IN
		(SELECT seq FROM outbox WHERE seq = ANY($1) FOR UPDATE SKIP LOCKED)`, sqlstore.Seqs(changes))
	return len(changes), nil
}

// Purge implements journal.Purger: its deletes run in one transaction that
// first takes the advisory lock purgeLockKey without waiting
// (pg_try_advisory_xact_lock); when another instance holds it, Purge returns
// journal.ErrPurgeRunning. The lock ends with the transaction.
func (s *Store) Purge(ctx context.Context, now time.Time, limit int) (int, error) {
	var n int
	err := sqlstore.Write(ctx, s.queries, "purge", func(tx sqlstore.DB) error {
		var locked bool
		if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", purgeLockKey).Scan(&locked); err != nil {
			return err
		}
		if !locked {
			return journal.ErrPurgeRunning
		}
		var err error
		n, err = sqlstore.PurgeBatch(ctx, s.queries, tx, now, limit)
		return err
	})
	if errors.Is(err, journal.ErrPurgeRunning) {
		return 0, journal.ErrPurgeRunning
	}
	return n, err
}
