package testenv

import (
	"context"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The shared servers of the development machine that [RedisAddr] and
// [PostgresURL] use when JOURNAL_TEST_REDIS_ADDR and JOURNAL_TEST_POSTGRES_URL
// are unset.
const (
	DefaultRedisAddr   = "127.0.0.1:6379"
	DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
)

// getenv returns the value of the environment variable name, or def when it
// is unset or empty: how the shared servers are overridden.
func getenv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// RedisAddr returns the host:port of the shared Redis server for tests:
// $JOURNAL_TEST_REDIS_ADDR, or [DefaultRedisAddr] when it is unset. It checks
// that the server answers PING within a second and otherwise fails the test
// with the command that starts one.
//
// The server is shared by every test and every package: use a random key
// prefix per test and never FLUSHALL or FLUSHDB it. A test that needs to
// break its server uses [StartRedis] instead.
func RedisAddr(tb testing.TB) string {
	tb.Helper()
	addr := getenv("JOURNAL_TEST_REDIS_ADDR", DefaultRedisAddr)
	if err := ping(addr, time.Second); err != nil {
		tb.Fatalf("testenv: the shared Redis at %s does not answer PING (%v): start one with `redis-server --daemonize yes` "+
			"(Debian/Ubuntu: apt-get install redis-server), or point JOURNAL_TEST_REDIS_ADDR at a running server", addr, err)
	}
	return addr
}

// PostgresURL creates a new, empty database with a random name on the
// shared PostgreSQL server ($JOURNAL_TEST_POSTGRES_URL, a postgres:// URL of
// a role allowed to create databases, or [DefaultPostgresURL]) and returns
// the URL of that database. The database is dropped at tb.Cleanup, with
// WITH (FORCE) so connections the test left open do not block it. It fails
// the test, naming the command that starts a server, if the server cannot be
// reached.
//
// Each call gives a separate database, so parallel tests do not see each
// other's tables. A test that needs to break its server uses [StartPostgres].
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	base := getenv("JOURNAL_TEST_POSTGRES_URL", DefaultPostgresURL)
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		tb.Fatalf("testenv: JOURNAL_TEST_POSTGRES_URL=%q is not a postgres:// URL", base)
	}
	name := RandomName("journal_test_")

	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("testenv: cannot connect to the shared PostgreSQL at %s (%v): start it "+
			"(Debian/Ubuntu: apt-get install postgresql, then `pg_ctlcluster <version> main start` or `service postgresql start`; "+
			"trust auth for user postgres on 127.0.0.1), or point JOURNAL_TEST_POSTGRES_URL at a running server", redact(u), err)
	}
	defer conn.Close(context.Background())
	// template0 never has connections, so concurrent CREATE DATABASE calls
	// cannot fail with "source database is being accessed by other users".
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"); err != nil {
		tb.Fatalf("testenv: create database %s on %s: %v", name, redact(u), err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Errorf("testenv: drop database %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	dbURL := *u
	dbURL.Path = "/" + name
	dbURL.RawPath = ""
	return dbURL.String()
}

// redact returns u without its password, for messages.
func redact(u *url.URL) string { return u.Redacted() }
