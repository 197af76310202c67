package postgres_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/internal/storetest"
	"github.com/journalsvc/journal/internal/testdb"
	"github.com/journalsvc/journal/internal/testenv"
	"github.com/journalsvc/journal/postgres"
)

// TestConformance gives each subtest a schema of its own in one fresh
// database: a schema is far cheaper to create than a database.
func TestConformance(t *testing.T) {
	base := testenv.PostgresURL(t)
	storetest.Run(t, func(t *testing.T) journal.Database {
		return testdb.PostgresAt(t, schemaURL(t, base))
	})
}

// schemaURL creates a new schema in the database at base and returns a URL
// whose connections use it as their search_path.
func schemaURL(tb testing.TB, base string) string {
	tb.Helper()
	schema := testenv.RandomName("t_")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := connect(tb, ctx, base)
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatal(err)
	}
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// connect opens a connection to the database at url, failing the test if it
// cannot. The caller closes it.
func connect(tb testing.TB, ctx context.Context, url string) *pgx.Conn {
	tb.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	return conn
}

func TestMigrations(t *testing.T) {
	storetest.RunMigrations(t, []int{1, 2}, func(t *testing.T) storetest.MigrationTarget {
		url := testenv.PostgresURL(t)
		return storetest.MigrationTarget{
			Open: func(ctx context.Context) (journal.Database, error) { return postgres.Open(ctx, url, 2) },
			Versions: func(tb testing.TB) []int {
				tb.Helper()
				ctx := context.Background()
				conn := connect(tb, ctx, url)
				defer conn.Close(ctx)
				rows, err := conn.Query(ctx, "SELECT version FROM schema_migrations ORDER BY version")
				if err != nil {
					tb.Fatal(err)
				}
				vs, err := pgx.CollectRows(rows, pgx.RowTo[int])
				if err != nil {
					tb.Fatal(err)
				}
				return vs
			},
		}
	})
}

func TestStatementTimeoutDefault(t *testing.T) {
	t.Parallel()
	url := testenv.PostgresURL(t)
	s := testdb.PostgresAt(t, url)
	var got string
	if err := s.Pool().QueryRow(context.Background(), "SHOW statement_timeout").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := "5s"; got != want {
		t.Errorf("statement_timeout = %q, want %q", got, want)
	}
	// A URL that sets it wins.
	s2 := testdb.PostgresAt(t, url+"&statement_timeout=1500")
	if err := s2.Pool().QueryRow(context.Background(), "SHOW statement_timeout").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := "1500ms"; got != want {
		t.Errorf("statement_timeout with URL override = %q, want %q", got, want)
	}
}

func TestContextBoundsQueries(t *testing.T) {
	t.Parallel()
	s := testdb.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Pool().Exec(ctx, "SELECT pg_sleep(10)")
	if err == nil {
		t.Fatal("pg_sleep(10) with a 200ms deadline = nil error")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("canceled query returned after %v", d)
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Errorf("Ping after a canceled query = %v", err)
	}
}

func TestOpenBadURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, url := range []string{"postgres://postgres@127.0.0.1:1/nope?connect_timeout=2", "::not a url"} {
		if s, err := postgres.Open(ctx, url, 1); err == nil {
			s.Close()
			t.Errorf("Open(%q) = nil error", url)
		}
	}
}

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, testdb.Postgres(b))
}

// TestApplyChangesSkipsLockedRows checks that ApplyChanges("") does not wait
// for rows another call holds (FOR UPDATE SKIP LOCKED) but claims the others.
func TestApplyChangesSkipsLockedRows(t *testing.T) {
	t.Parallel()
	s := testdb.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u := storetest.NewUser(t, s, "alice")
	now := journal.StoredTime(time.Now())
	for range 6 {
		storetest.NewEntry(t, s, u.ID, "t", now)
	}
	claimed, release := make(chan []journal.Change, 1), make(chan struct{})
	firstDone := make(chan error, 1)
	go func() {
		_, err := s.ApplyChanges(ctx, "", 3, func(_ context.Context, cs []journal.Change) error {
			claimed <- cs
			<-release
			return nil
		})
		firstDone <- err
	}()
	held := <-claimed
	var second []journal.Change
	n, err := s.ApplyChanges(ctx, "", 100, func(_ context.Context, cs []journal.Change) error {
		second = cs
		return nil
	})
	close(release)
	if err != nil || n != 3 {
		t.Fatalf("ApplyChanges while 3 rows are held = %d, %v; want 3, nil", n, err)
	}
	for _, c := range second {
		for _, h := range held {
			if c.Seq == h.Seq {
				t.Errorf("change %d claimed by both calls", c.Seq)
			}
		}
	}
	if err := <-firstDone; err != nil {
		t.Fatalf("first ApplyChanges = %v", err)
	}
	if n, err := s.PendingChanges(ctx); err != nil || n != 0 {
		t.Errorf("PendingChanges = %d, %v; want 0", n, err)
	}
}

// TestPurgeOneAtATime: while another session holds the purge lock, Purge
// deletes nothing and says so.
func TestPurgeOneAtATime(t *testing.T) {
	t.Parallel()
	url := testenv.PostgresURL(t)
	s := testdb.PostgresAt(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := connect(t, ctx, url)
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(0x6a7075726765)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Purge(ctx, time.Now(), 10); !errors.Is(err, journal.ErrPurgeRunning) || n != 0 {
		t.Errorf("Purge while another holds the lock = %d, %v; want 0, ErrPurgeRunning", n, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Purge(ctx, time.Now(), 10); err != nil {
		t.Errorf("Purge after the lock was released = %v", err)
	}
}

// benchEntries is the number of entries of the search benchmark's user.
const benchEntries = 100_000

// BenchmarkSearch measures the first page of searches over 100,000 entries
// of one user. The entries are copied in with COPY and indexed by the
// store's Open (Reindex), as an upgraded database would be; ANALYZE then
// gives the planner the statistics autovacuum would gather.
func BenchmarkSearch(b *testing.B) {
	ctx := context.Background()
	url := testenv.PostgresURL(b)
	s := testdb.PostgresAt(b, url)
	start := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	u := storetest.NewUser(b, s, "bench")
	conn := connect(b, ctx, url)
	defer conn.Close(ctx)
	corpus := storetest.BenchCorpus(u.ID, benchEntries, start)
	_, err := conn.CopyFrom(ctx, pgx.Identifier{"entries"}, []string{"id", "user_id", "title", "body", "version", "created_at", "updated_at"},
		pgx.CopyFromSlice(len(corpus), func(i int) ([]any, error) {
			e := corpus[i]
			return []any{e.ID, e.UserID, e.Title, e.Body, e.Version, e.CreatedAt, e.UpdatedAt}, nil
		}))
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	octx, cancel := context.WithTimeout(ctx, 10*time.Minute) // Open indexes them all
	defer cancel()
	s, err = postgres.Open(octx, url, 8)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.Logf("indexed %d entries in %v", benchEntries, time.Since(t0))
	if _, err := conn.Exec(ctx, "ANALYZE"); err != nil {
		b.Fatal(err)
	}
	storetest.BenchSearch(b, s, u.ID, start)
}
