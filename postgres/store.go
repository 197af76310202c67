package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
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
	Unavailable: unavailable,
}

// unavailable reports whether err says that the server cannot answer now,
// so that the same call may succeed later: the connection was refused, lost
// or timed out (a server that is down, restarting or hung), or the server
// reports that it is shutting down, starting, out of connections or that
// the statement ran out of time. A cancellation by the caller is not.
func unavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) && !pgconn.Timeout(err) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			strings.HasPrefix(pgErr.Code, "53"), // insufficient resources: too many connections
			pgErr.Code == "57014",               // query_canceled: statement_timeout, or our cancel at a deadline
			pgErr.Code == "57P01",               // admin_shutdown
			pgErr.Code == "57P02",               // crash_shutdown
			pgErr.Code == "57P03":               // cannot_connect_now: starting up
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return pgconn.Timeout(err) || pgconn.SafeToRetry(err) || errors.As(err, &connectErr) ||
		errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE)
}

// classify wraps err with journal.ErrUnavailable when the server could not
// answer (see unavailable); other errors, nil included, come back as they
// are.
func classify(err error) error {
	if unavailable(err) {
		return fmt.Errorf("%w: %w", journal.ErrUnavailable, err)
	}
	return err
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

// db runs sqlstore's statements on the pool or a transaction. On the pool,
// each statement is bounded by timeout from its start; in a transaction,
// every statement by the transaction's deadline (see bound).
type db struct {
	q interface {
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
		Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
		QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	}
	timeout  time.Duration
	deadline time.Time // of the transaction; zero on the pool
}

// bound returns ctx bounded as d bounds its statements.
func (d db) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if !d.deadline.IsZero() {
		return boundBy(ctx, d.deadline)
	}
	return bound(ctx, d.timeout)
}

func (d db) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	ctx, cancel := d.bound(ctx)
	defer cancel()
	tag, err := d.q.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

func (d db) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	ctx, cancel := d.bound(ctx)
	rows, err := d.q.Query(ctx, query, args...)
	if err != nil {
		cancel()
		return nil, err
	}
	return boundRows{rows, cancel}, nil
}

func (d db) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	ctx, cancel := d.bound(ctx)
	return boundRow{d.q.QueryRow(ctx, query, args...), cancel}
}

// boundRows releases its deadline when closed.
type boundRows struct {
	pgx.Rows
	cancel context.CancelFunc
}

func (r boundRows) Close() {
	r.Rows.Close()
	r.cancel()
}

// boundRow releases its deadline once scanned.
type boundRow struct {
	pgx.Row
	cancel context.CancelFunc
}

func (r boundRow) Scan(dest ...any) error {
	defer r.cancel()
	return r.Row.Scan(dest...)
}

// bound returns ctx with a deadline timeout from now, unless timeout is 0
// or ctx ends sooner. pgx answers a deadline by cancelling the statement
// and, if the server does not react (a hung or paused server), by closing
// the connection: so a statement never waits longer than that on a server
// that does not answer, whatever statement_timeout says.
func bound(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout <= 0 {
		return ctx, func() {}
	}
	return boundBy(ctx, time.Now().Add(timeout))
}

// boundBy returns ctx with deadline dl, unless ctx ends sooner.
func boundBy(ctx context.Context, dl time.Time) (context.Context, context.CancelFunc) {
	if cdl, ok := ctx.Deadline(); ok && !cdl.After(dl) {
		return ctx, func() {}
	}
	return context.WithDeadline(ctx, dl)
}

// inTx runs fn in one transaction, bounded as a whole by the store's query
// timeout (every statement fn runs, on whatever context, ends by then), and
// commits when fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(sqlstore.DB) error) error {
	dl := time.Now().Add(s.timeout)
	ctx, cancel := boundBy(ctx, dl)
	defer cancel()
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return fn(db{q: tx, deadline: dl}) })
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
		return 0, fmt.Errorf("postgres: apply changes: %w", classify(err))
	}
	return n, nil
}

// applyUserChanges is the write path of ApplyChanges.
func (s *Store) applyUserChanges(ctx context.Context, userID string, limit int, apply func(context.Context, []journal.Change) error) (int, error) {
	changes, err := sqlstore.ApplyPending(ctx, s.queries, s.db(), userID, limit, apply)
	if err != nil || len(changes) == 0 {
		return 0, err
	}
	// Rows a replay holds are its to delete: it applies them too. If the
	// delete fails, the changes stay pending although applied, and a replay
	// applies them again, which is harmless: the caller's apply succeeded, so
	// the call did.
	_, _ = s.db().Exec(ctx, `DELETE FROM outbox WHERE seq IN
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
