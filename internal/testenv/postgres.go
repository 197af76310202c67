package testenv

import (
	"context"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultPostgresURL is the shared PostgreSQL server used when
// JOURNAL_TEST_POSTGRES_URL is unset.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

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
	base := os.Getenv("JOURNAL_TEST_POSTGRES_URL")
	if base == "" {
		base = DefaultPostgresURL
	}
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

// pgShow returns the value of the setting name of the PostgreSQL server at
// connURL, with a short timeout.
func pgShow(ctx context.Context, connURL, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connURL)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var v string
	err = conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v)
	return v, err
}
