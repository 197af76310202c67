package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/journalsvc/journal/internal/config"
	"github.com/journalsvc/journal/internal/testenv"
)

// TestExitCode checks the exit status and the one line report gives each
// kind of error run returns.
func TestExitCode(t *testing.T) {
	_, usageErr := config.Parse([]string{"-x"}, env(nil))
	if ue := (*config.UsageError)(nil); !errors.As(usageErr, &ue) {
		t.Fatalf("config.Parse(-x) = %v, want a *config.UsageError", usageErr)
	}
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("listen tcp :80: bind: permission denied"), 1},
		{&config.Error{Setting: "JOURNAL_ADDR", Value: "x", Want: "y"}, 2},
		{usageErr, 2},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		if got := report(tt.err, &b); got != tt.want {
			t.Errorf("report(%v) = %d, want %d", tt.err, got, tt.want)
		}
		if tt.err == nil {
			if b.Len() != 0 {
				t.Errorf("report(nil) wrote %q", b.String())
			}
			continue
		}
		if got, want := b.String(), "journal: "+tt.err.Error()+"\n"; got != want {
			t.Errorf("report(%v) wrote %q, want %q", tt.err, got, want)
		}
	}
}

// TestInvalidPolicyFileStopsStartUpFirst: an invalid policy file is a
// configuration error, reported before the listener or the database opens.
func TestInvalidPolicyFileStopsStartUpFirst(t *testing.T) {
	dir := t.TempDir()
	policies := filepath.Join(dir, "policies.yaml")
	if err := os.WriteFile(policies, []byte("policies:\n  - name: x\n    rate: nonsense\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "journal.db")
	var stderr bytes.Buffer
	err := run(t.Context(), nil, env(map[string]string{
		"JOURNAL_ADDR":                "127.0.0.1:0",
		"JOURNAL_DATABASE_URL":        "sqlite:" + db,
		"JOURNAL_RATE_LIMIT_POLICIES": policies,
	}), io.Discard, &stderr)
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Setting != "JOURNAL_RATE_LIMIT_POLICIES" {
		t.Fatalf("run = %v, want a *config.Error for JOURNAL_RATE_LIMIT_POLICIES", err)
	}
	if _, err := os.Stat(db); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the database file was created before the policy file was refused (stat: %v)", err)
	}
	if strings.Contains(stderr.String(), `"listening"`) {
		t.Errorf("the listener opened before the policy file was refused: %s", stderr.String())
	}
}

// migrationLockKey is the advisory lock postgres.Open holds while it
// migrates; a test that holds it keeps every instance of that database in
// start-up.
const migrationLockKey int64 = 0x6a6f75726e616c

// holdMigrationLock takes the migration lock of the PostgreSQL database at
// url on a connection of its own, and returns the function that releases it
// (also called at Cleanup).
func holdMigrationLock(tb testing.TB, url string) (release func()) {
	tb.Helper()
	conn, err := pgx.Connect(tb.Context(), url)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := conn.Exec(tb.Context(), "SELECT pg_advisory_lock($1)", migrationLockKey); err != nil {
		tb.Fatal(err)
	}
	release = sync.OnceFunc(func() { _ = conn.Close(context.Background()) })
	tb.Cleanup(release)
	return release
}

// TestServesWhileDatabaseOpens: while the database is still opening (here,
// another instance holds the migration lock), the instance answers at once:
// /livez 200, /readyz 503 with the database "starting", the API 503
// problem+json with Retry-After. Once it opens, the same listener serves the
// API.
func TestServesWhileDatabaseOpens(t *testing.T) {
	for _, split := range []bool{false, true} {
		t.Run(fmt.Sprintf("ops_listener=%t", split), func(t *testing.T) {
			t.Parallel()
			url := testenv.PostgresURL(t)
			release := holdMigrationLock(t, url)
			vars := map[string]string{"JOURNAL_DATABASE_URL": url}
			if split {
				vars["JOURNAL_OPS_ADDR"] = "127.0.0.1:0"
			}
			j := launch(t, hooks{}, vars, []string{"-addr", "127.0.0.1:0"})
			j.waitListening(t)

			if code, body, err := get(j.OpsURL + "/livez"); err != nil || code != http.StatusOK {
				t.Fatalf("GET /livez while the database opens = %d %q, %v; want 200", code, body, err)
			}
			code, body, err := get(j.OpsURL + "/readyz")
			if err != nil || code != http.StatusServiceUnavailable {
				t.Fatalf("GET /readyz while the database opens = %d %q, %v; want 503", code, body, err)
			}
			var ready struct {
				Status string
				Checks map[string]struct{ Status string }
			}
			if err := json.Unmarshal([]byte(body), &ready); err != nil || ready.Status != "unready" || ready.Checks["database"].Status != "starting" {
				t.Errorf("GET /readyz while the database opens = %s (%v); want unready with the database starting", body, err)
			}
			if split {
				if code, body, err := get(j.URL + "/livez"); err != nil || code != http.StatusNotFound {
					t.Errorf("GET /livez on the public listener = %d %q, %v; want 404", code, body, err)
				}
			}
			c := newAPIClient(t, j.URL)
			creds := map[string]string{"username": "early", "password": "correct horse battery"}
			r := c.do("POST", "/v1/users", creds)
			expect(t, "POST /v1/users while the database opens", r, http.StatusServiceUnavailable)
			if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" || r.Header.Get("Retry-After") == "" {
				t.Errorf("503 while the database opens: Content-Type %q, Retry-After %q; want a problem with Retry-After", ct, r.Header.Get("Retry-After"))
			}
			if code, _, err := get(j.URL + "/openapi.json"); err != nil || code != http.StatusOK {
				t.Errorf("GET /openapi.json while the database opens = %d, %v; want 200", code, err)
			}

			release()
			j.waitReady(t, j.OpsURL)
			expect(t, "POST /v1/users once open", c.do("POST", "/v1/users", creds), http.StatusCreated)
		})
	}
}

// TestStopDuringStartUp: a signal while the database opens stops the
// instance promptly, without the shutdown drain, and run returns nil.
func TestStopDuringStartUp(t *testing.T) {
	t.Parallel()
	url := testenv.PostgresURL(t)
	holdMigrationLock(t, url)
	j := launch(t, hooks{}, map[string]string{
		"JOURNAL_DATABASE_URL":   url,
		"JOURNAL_SHUTDOWN_DRAIN": "30s",
	}, []string{"-addr", "127.0.0.1:0"})
	j.waitListening(t)
	if code, _, err := get(j.URL + "/livez"); err != nil || code != http.StatusOK {
		t.Fatalf("GET /livez while the database opens = %d, %v; want 200", code, err)
	}
	start := time.Now()
	if err := j.result(); err != nil {
		t.Fatalf("run = %v, want nil", err)
	}
	j.stopped = true
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("run took %s to stop during start-up; want well under the 30s drain", took)
	}
	if !strings.Contains(j.logs.String(), "stopped during start-up") {
		t.Errorf("no \"stopped during start-up\" line in the logs:\n%s", tail(j.logs.String(), 10))
	}
	if !refused(j.Addr) {
		t.Errorf("the listener at %s still accepts connections after run returned", j.Addr)
	}
}
