// Package postgres implements [journal.Database] on PostgreSQL with pgx v5
// (pgxpool).
//
// Every statement is bounded by the caller's context and by
// [DefaultQueryTimeout] on the client, the pool sets a server-side
// statement_timeout default ([DefaultStatementTimeout]) unless the URL sets
// one, and a connection attempt gives up after [DefaultConnectTimeout], so
// nothing waits forever on a server that is down, hung or paused. Errors that
// say the server cannot answer now wrap [journal.ErrUnavailable]; once it
// answers again the pool recovers by itself (a connection idle for more than
// a second is pinged before use, a broken one is replaced). Times are timestamptz
// (microseconds), ids uuid. Schema migrations are embedded and applied by
// [Open] under a PostgreSQL advisory lock, so several instances may start at
// once against one database.
package postgres

import (
	"context"
	"embed"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/internal/migrations"
	"github.com/journalsvc/journal/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// DefaultStatementTimeout is the statement_timeout of every pooled
// connection unless the URL sets statement_timeout (as a runtime parameter,
// e.g. ?statement_timeout=2000 or options=-c%20statement_timeout=2s).
const DefaultStatementTimeout = 5 * time.Second

// DefaultQueryTimeout bounds each statement outside a transaction, and each
// transaction as a whole, on the client: a little longer than
// DefaultStatementTimeout, so the server's own timeout normally fires first,
// and a server that does not answer at all (hung, paused, its host gone)
// costs a request at most this long.
const DefaultQueryTimeout = DefaultStatementTimeout + time.Second

// DefaultConnectTimeout bounds one attempt to open a connection (TCP, TLS
// and start-up), unless the URL sets connect_timeout.
const DefaultConnectTimeout = 2 * time.Second

// healthCheckPeriod is how often the pool drops expired idle connections and
// refills to its minimum.
const healthCheckPeriod = time.Second

// migrationLockKey is the pg_advisory_lock key that serializes migration runs
// of every instance on one database ("journal" in ASCII).
const migrationLockKey int64 = 0x6a6f75726e616c

// purgeLockKey is the transaction-level advisory lock that lets one Purge
// run at a time across every instance on one database ("jpurge").
const purgeLockKey int64 = 0x6a7075726765

// Store is a [journal.Database] on a PostgreSQL connection pool. It runs the
// queries it shares with the sqlite store, and applies outbox changes its own
// way (see [Store.ApplyChanges]). It is safe for concurrent use and must not
// be used after Close.
type Store struct {
	*queries // users, tokens, entries, PendingChanges

	pool    *pgxpool.Pool
	timeout time.Duration // DefaultQueryTimeout
}

var _ journal.Database = (*Store)(nil)

// queries are the methods the store shares with the sqlite store.
type queries = sqlstore.Store

// Open connects to the PostgreSQL database at url (a postgres:// URL or a
// key=value connection string), with at most maxConns connections (0 means
// pgxpool's default) and opts, applies the pending schema migrations and
// returns the store. ctx bounds the connection and the migrations.
func Open(ctx context.Context, url string, maxConns int, opts ...Option) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The error may quote the URL; do not repeat it.
		return nil, fmt.Errorf("postgres: parse url: %w", err)
	}
	if maxConns < 0 {
		return nil, fmt.Errorf("postgres: maxConns %d < 0", maxConns)
	}
	if maxConns > 0 {
		cfg.MaxConns = int32(maxConns)
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["statement_timeout"]; !ok && !strings.Contains(cfg.ConnConfig.RuntimeParams["options"], "statement_timeout") {
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(DefaultStatementTimeout.Milliseconds(), 10)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	cfg.HealthCheckPeriod = healthCheckPeriod
	for _, o := range opts {
		o(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	s := &Store{pool: pool, timeout: DefaultQueryTimeout}
	s.queries = sqlstore.New(dialect, s.db(), s.db(), s.inTx)
	if err := sqlstore.Reindex(ctx, s.queries); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	return s, nil
}

// db runs statements on the pool, each bounded by the query timeout.
func (s *Store) db() db { return db{q: s.pool, timeout: s.timeout} }

// Option changes how [Open] sets up the pool.
type Option func(*pgxpool.Config)

// WithTracer has every query of the store reported to t (for example as a
// trace span). A nil t changes nothing.
func WithTracer(t pgx.QueryTracer) Option {
	return func(cfg *pgxpool.Config) {
		if t != nil {
			cfg.ConnConfig.Tracer = t
		}
	}
}

// Pool returns the underlying pool, for metrics and tests. Its connections
// must not be used after Close.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks that the database answers a query. An error that says it
// cannot answer now wraps [journal.ErrUnavailable].
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.db().QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("postgres: ping: %w", classify(err))
	}
	return nil
}

// Close closes the pool, waiting for acquired connections to be released.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// migrate applies every embedded migration not yet recorded in
// schema_migrations, each in its own transaction, while holding
// pg_advisory_lock(migrationLockKey) on one connection, so instances starting
// at once run them one after the other and each version is applied once. The
// lock wait and the migrations are bounded by ctx only (statement_timeout is
// lifted on that connection).
func migrate(ctx context.Context, pool *pgxpool.Pool) (err error) {
	ms, err := migrations.Load(migrationFS)
	if err != nil {
		return err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer func() {
		if err != nil {
			// The session may still hold the lock or a changed setting:
			// close it rather than return it to the pool.
			c := conn.Hijack()
			_ = c.Close(context.Background())
			return
		}
		conn.Release()
	}()
	if _, err := conn.Exec(ctx, "SET statement_timeout = 0"); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLockKey); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	if err := runMigrations(ctx, conn.Conn(), ms); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", migrationLockKey); err != nil {
		return fmt.Errorf("migrate: unlock: %w", err)
	}
	if _, err := conn.Exec(ctx, "RESET statement_timeout"); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

func runMigrations(ctx context.Context, conn *pgx.Conn, ms []migrations.Migration) error {
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	rows, err := conn.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	applied := map[int]bool{}
	for _, v := range versions {
		applied[int(v)] = true
	}
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			// No arguments: pgx sends it with the simple protocol, so a
			// file may hold several statements.
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate %s: %w", m.Name, err)
		}
	}
	return nil
}
