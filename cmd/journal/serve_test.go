package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/journalsvc/journal/internal/testenv"
)

// get returns the status and body of GET url on a new connection, or an error.
func get(url string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// refused reports whether a new TCP connection to addr is refused.
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// startServe runs serve with h on a new loopback listener until cancel, and
// returns the listener's address and serve's result, which serveResult
// waits for.
func startServe(tb testing.TB, h http.Handler, draining *atomic.Bool, drain, timeout time.Duration) (addr string, cancel context.CancelFunc, done <-chan error) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	result := make(chan error, 1)
	go func() { result <- serve(ctx, logger, newHTTPServer(h, logger), ln, draining, drain, timeout) }()
	return ln.Addr().String(), cancel, result
}

// serveResult returns serve's result from done, failing the test if serve
// does not return within 10 seconds.
func serveResult(tb testing.TB, done <-chan error) error {
	tb.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		tb.Fatal("serve did not return within 10s")
		return nil
	}
}

// TestServeGracefulShutdown drives serve with a minimal handler: it checks the
// shutdown order (see serve) independently of httpapi (the end-to-end test checks
// it again through run and the real handler).
func TestServeGracefulShutdown(t *testing.T) {
	t.Parallel()
	var draining atomic.Bool
	started, release := make(chan struct{}), make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready")
	})
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "live") })
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "done")
	})
	const drain = 300 * time.Millisecond
	addr, cancel, done := startServe(t, mux, &draining, drain, 10*time.Second)

	if code, _, err := get("http://" + addr + "/readyz"); err != nil || code != 200 {
		t.Fatalf("GET /readyz before shutdown = %d, %v; want 200", code, err)
	}
	type result struct {
		code int
		body string
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		code, body, err := get("http://" + addr + "/slow")
		slow <- result{code, body, err}
	}()
	<-started
	cancel()

	testenv.WaitFor(t, 3*drain, "readiness 503", func() bool {
		code, _, _ := get("http://" + addr + "/readyz")
		return code == http.StatusServiceUnavailable
	})
	if code, _, err := get("http://" + addr + "/livez"); err != nil || code != 200 {
		t.Errorf("GET /livez while draining = %d, %v; want 200", code, err)
	}
	testenv.WaitFor(t, 10*drain, "the listener to close", func() bool { return refused(addr) })
	select {
	case err := <-done:
		t.Fatalf("serve returned %v with a request in flight", err)
	default:
	}
	close(release)
	if r := <-slow; r.err != nil || r.code != 200 || r.body != "done" {
		t.Errorf("in-flight request = %d %q, %v; want 200 done", r.code, r.body, r.err)
	}
	if err := serveResult(t, done); err != nil {
		t.Errorf("serve = %v, want nil", err)
	}
}

// TestServeShutdownTimeout checks that a request that outlives the shutdown
// timeout is cut off and reported.
func TestServeShutdownTimeout(t *testing.T) {
	t.Parallel()
	var draining atomic.Bool
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done() // the connection is closed by srv.Close
	})
	addr, cancel, done := startServe(t, h, &draining, 0, 100*time.Millisecond)
	go get("http://" + addr + "/")
	<-started
	start := time.Now()
	cancel()
	if err := serveResult(t, done); err == nil || !strings.Contains(err.Error(), "JOURNAL_SHUTDOWN_TIMEOUT") {
		t.Errorf("serve = %v, want an error naming JOURNAL_SHUTDOWN_TIMEOUT", err)
	}
	if got := time.Since(start); got > 3*time.Second {
		t.Errorf("serve took %s to give up, want about 100ms", got)
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
