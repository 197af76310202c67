package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/journalsvc/journal/internal/config"
	"github.com/journalsvc/journal/internal/testenv"
)

type entryJSON struct {
	ID        string    `json:"id"`
	Title     string    `json:"title"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

type pageJSON struct {
	Entries    []entryJSON `json:"entries"`
	NextCursor *string     `json:"next_cursor"`
}

// databases returns the JOURNAL_DATABASE_URL of each store to test against.
func databases(tb testing.TB) map[string]func() string {
	return map[string]func() string{
		"sqlite":   func() string { return "sqlite:" + filepath.Join(tb.TempDir(), "journal.db") },
		"postgres": func() string { return testenv.PostgresURL(tb) },
	}
}

// TestUserJourney walks one user through the whole API on each database.
func TestUserJourney(t *testing.T) {
	t.Parallel()
	for name, dbURL := range databases(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			j := startJournal(t, map[string]string{
				"JOURNAL_DATABASE_URL": dbURL(),
				"JOURNAL_INSTANCE_ID":  "e2e-" + name,
			})
			userJourney(t, j.URL, "e2e-"+name)
		})
	}
}

func userJourney(t *testing.T, base, instance string) {
	anon := newAPIClient(t, base)
	creds := map[string]string{"username": "alice", "password": "correct horse battery"}

	r := anon.do("POST", "/v1/users", creds)
	expect(t, "signup", r, http.StatusCreated)
	user := decodeJSON[struct {
		ID        string    `json:"id"`
		Username  string    `json:"username"`
		CreatedAt time.Time `json:"created_at"`
	}](t, r)
	if user.ID == "" || user.Username != "alice" || user.CreatedAt.IsZero() {
		t.Errorf("signup body %s: want id, username alice, created_at", r.Body)
	}
	if got := r.Header.Get("X-Instance"); got != instance {
		t.Errorf("X-Instance = %q, want %q", got, instance)
	}
	if r.Header.Get("X-Request-ID") == "" {
		t.Error("no X-Request-ID on the response")
	}
	expect(t, "signup again", anon.do("POST", "/v1/users", creds), http.StatusConflict)
	expect(t, "bad password", anon.do("POST", "/v1/tokens", map[string]string{"username": "alice", "password": "wrong password!"}), http.StatusUnauthorized)

	r = anon.do("POST", "/v1/tokens", creds)
	expect(t, "login", r, http.StatusCreated)
	tok := decodeJSON[struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}](t, r)
	if d := time.Until(tok.ExpiresAt); d < 719*time.Hour || d > 721*time.Hour {
		t.Errorf("token expires in %s, want the default JOURNAL_TOKEN_TTL 720h", d)
	}
	c := newAPIClient(t, base)
	c.token = tok.Token

	expect(t, "no token", anon.do("GET", "/v1/users/me", nil), http.StatusUnauthorized)
	r = c.do("GET", "/v1/users/me", nil)
	expect(t, "me", r, http.StatusOK)
	if me := decodeJSON[struct {
		ID string `json:"id"`
	}](t, r); me.ID != user.ID {
		t.Errorf("me id %q, want %q", me.ID, user.ID)
	}

	// Create three entries.
	var created []entryJSON
	for i := range 3 {
		r := c.do("POST", "/v1/entries", map[string]string{"title": fmt.Sprintf("day %d", i), "body": "text"})
		expect(t, "create", r, http.StatusCreated)
		e := decodeJSON[entryJSON](t, r)
		if got, want := r.Header.Get("Location"), "/v1/entries/"+e.ID; got != want {
			t.Errorf("Location = %q, want %q", got, want)
		}
		if r.Header.Get("ETag") == "" {
			t.Error("create: no ETag")
		}
		created = append(created, e)
	}

	// Get, conditional get.
	first := created[0]
	r = c.do("GET", "/v1/entries/"+first.ID, nil)
	expect(t, "get", r, http.StatusOK)
	if got := decodeJSON[entryJSON](t, r); got != first {
		t.Errorf("get = %+v, want what create returned %+v", got, first)
	}
	etag := r.Header.Get("ETag")
	expect(t, "get If-None-Match", c.do("GET", "/v1/entries/"+first.ID, nil, "If-None-Match", etag), http.StatusNotModified)

	// List in pages of two, newest first.
	r = c.do("GET", "/v1/entries?limit=2", nil)
	expect(t, "list page 1", r, http.StatusOK)
	p1 := decodeJSON[pageJSON](t, r)
	if len(p1.Entries) != 2 || p1.NextCursor == nil || p1.Entries[0].ID != created[2].ID || p1.Entries[1].ID != created[1].ID {
		t.Fatalf("page 1 = %s, want entries 2, 1 and a cursor", r.Body)
	}
	r = c.do("GET", "/v1/entries?limit=2&cursor="+*p1.NextCursor, nil)
	expect(t, "list page 2", r, http.StatusOK)
	p2 := decodeJSON[pageJSON](t, r)
	if len(p2.Entries) != 1 || p2.NextCursor != nil || p2.Entries[0].ID != first.ID {
		t.Errorf("page 2 = %s, want entry 0 and next_cursor null", r.Body)
	}
	expect(t, "bad limit", c.do("GET", "/v1/entries?limit=0", nil), http.StatusBadRequest)

	// Patch: a stale If-Match fails, the current one succeeds.
	expect(t, "patch stale", c.do("PATCH", "/v1/entries/"+first.ID, map[string]string{"title": "x"}, "If-Match", `"stale"`), http.StatusPreconditionFailed)
	r = c.do("PATCH", "/v1/entries/"+first.ID, map[string]string{"title": "renamed"}, "If-Match", etag)
	expect(t, "patch", r, http.StatusOK)
	if e := decodeJSON[entryJSON](t, r); e.Title != "renamed" || e.Body != "text" {
		t.Errorf("patched entry = %+v, want title renamed, body unchanged", e)
	}
	if r.Header.Get("ETag") == etag || r.Header.Get("ETag") == "" {
		t.Errorf("patch ETag %q, want a new one (old %q)", r.Header.Get("ETag"), etag)
	}
	expect(t, "get after patch with old ETag", c.do("GET", "/v1/entries/"+first.ID, nil, "If-None-Match", etag), http.StatusOK)

	// Another user sees none of it.
	bob := signup(t, base, "bob")
	expect(t, "bob reads alice's entry", bob.do("GET", "/v1/entries/"+first.ID, nil), http.StatusNotFound)
	r = bob.do("GET", "/v1/entries", nil)
	expect(t, "bob lists", r, http.StatusOK)
	if p := decodeJSON[pageJSON](t, r); len(p.Entries) != 0 {
		t.Errorf("bob's list = %s, want empty", r.Body)
	}

	// Delete.
	expect(t, "delete", c.do("DELETE", "/v1/entries/"+first.ID, nil), http.StatusNoContent)
	r = c.do("GET", "/v1/entries/"+first.ID, nil)
	expect(t, "get deleted", r, http.StatusNotFound)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("404 Content-Type = %q, want application/problem+json", ct)
	}

	// Revoke the token.
	expect(t, "revoke", c.do("DELETE", "/v1/tokens/current", nil), http.StatusNoContent)
	r = c.do("GET", "/v1/users/me", nil)
	expect(t, "me after revoke", r, http.StatusUnauthorized)
	if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("WWW-Authenticate = %q, want Bearer", r.Header.Get("WWW-Authenticate"))
	}

	// Operational routes.
	for _, path := range []string{"/livez", "/readyz", "/metrics", "/openapi.json"} {
		expect(t, path, anon.do("GET", path, nil), http.StatusOK)
	}
}

// TestRunHelp checks that -h writes the settings (config.Usage, which lists
// every one) on stdout and returns nil.
func TestRunHelp(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"-h"}, env(nil), &stdout, &stderr)
	if err != nil {
		t.Fatalf("run(-h) = %v, want nil", err)
	}
	var want bytes.Buffer
	config.Usage(&want)
	if got := stdout.String(); got != want.String() {
		t.Errorf("run(-h) wrote %q on stdout, want config.Usage's %q", got, want.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("run(-h) wrote to stderr: %q", stderr.String())
	}
}

// TestRunInvalidConfig checks that run refuses bad settings before it binds
// or opens anything.
func TestRunInvalidConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "journal.db")
	err := run(context.Background(), []string{"-addr", "127.0.0.1:0"}, env(map[string]string{
		"JOURNAL_DATABASE_URL":  "sqlite:" + dbPath,
		"JOURNAL_RATE_LIMIT_IP": "abc",
	}), io.Discard, io.Discard)
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Setting != "JOURNAL_RATE_LIMIT_IP" {
		t.Fatalf("run = %v, want a *config.Error for JOURNAL_RATE_LIMIT_IP", err)
	}
	if _, err := os.Stat(dbPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the database file exists after a configuration error (stat: %v)", err)
	}
}

// busyAddr returns the address of a listener held open until the test ends.
func busyAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// TestRunBusyAddress checks that a busy address, public or operations, fails
// at once with exit 1 and an error naming it, before the database is opened.
func TestRunBusyAddress(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		args []string
		vars map[string]string
		want []string // in the error
	}{
		{"public", []string{"-addr", busyAddr(t)}, nil, []string{"address already in use"}},
		{"operations", []string{"-addr", "127.0.0.1:0"}, map[string]string{"JOURNAL_OPS_ADDR": busyAddr(t)},
			[]string{"JOURNAL_OPS_ADDR", "address already in use"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dbPath := filepath.Join(t.TempDir(), "journal.db")
			vars := map[string]string{"JOURNAL_DATABASE_URL": "sqlite:" + dbPath}
			for k, v := range tt.vars {
				vars[k] = v
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // bounds run, should it serve
			defer cancel()
			err := run(ctx, tt.args, env(vars), io.Discard, io.Discard)
			for _, want := range tt.want {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("run = %v, want an error with %q", err, want)
				}
			}
			if got := exitCode(err); got != 1 {
				t.Errorf("exitCode = %d, want 1", got)
			}
			if _, err := os.Stat(dbPath); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the database was opened although the listener failed (stat: %v)", err)
			}
		})
	}
}

// TestGracefulShutdown holds a real API request in flight (its body is not
// yet sent) while run is cancelled, and checks the shutdown order through the
// real handler: /readyz 503 "draining" during the drain while /livez stays 200,
// new connections refused once the listener closes, the in-flight request
// completes with 201, run returns nil.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	const drain = 500 * time.Millisecond
	j := startJournal(t, nil, "-shutdown-drain", drain.String()) // the flag beats the harness's JOURNAL_SHUTDOWN_DRAIN
	addr, base := j.Addr, j.URL
	c := signup(t, base, "carol")

	// Send the headers of POST /v1/entries with Expect: 100-continue and wait
	// for "100 Continue": the handler is then reading the body, past every
	// middleware.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"title":"in flight","body":"sent during the drain"}`
	fmt.Fprintf(conn, "POST /v1/entries HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", addr, c.token, len(body))
	br := bufio.NewReader(conn)
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	cont, err := http.ReadResponse(br, nil)
	if err != nil || cont.StatusCode != http.StatusContinue {
		t.Fatalf("want 100 Continue, got %v, %v", cont, err)
	}

	j.stop()
	testenv.WaitFor(t, 3*drain, "/readyz 503", func() bool { code, _, _ := get(base + "/readyz"); return code == http.StatusServiceUnavailable })
	code, readyBody, err := get(base + "/readyz")
	if err == nil && (code != http.StatusServiceUnavailable || !strings.Contains(readyBody, `"draining"`)) {
		t.Errorf("/readyz while draining = %d %s, want 503 with status draining", code, readyBody)
	}
	if code, _, err := get(base + "/livez"); err == nil && code != http.StatusOK {
		t.Errorf("/livez while draining = %d, want 200", code)
	}
	testenv.WaitFor(t, 10*drain+10*time.Second, "new connections to be refused", func() bool { return refused(addr) })
	select {
	case err := <-j.done:
		j.stopped = true
		t.Fatalf("run returned %v while a request was in flight", err)
	default:
	}

	io.WriteString(conn, body)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("in-flight request: %v", err)
	}
	respBody, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("in-flight request = %d %s, want 201", resp.StatusCode, respBody)
	}
	if err := j.result(); err != nil {
		j.stopped = true
		t.Fatalf("after the in-flight request completed, run = %v, want nil", err)
	}
	for _, line := range strings.Split(j.logs.String(), "\n") {
		if n := strings.Count(line, `"instance":`); n > 1 {
			t.Errorf("log line has %d instance keys: %s", n, line)
		}
	}
	if !strings.Contains(j.logs.String(), "single instance only") {
		t.Errorf("no 'single instance only' log line without JOURNAL_REDIS_URL")
	}
}

// binDir holds the binary built by buildBinary; TestMain removes it.
var binDir = sync.OnceValues(func() (string, error) { return os.MkdirTemp("", "journal-bin-") })

// buildBinary builds cmd/journal once per test process.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := binDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "journal")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

func journalBinary(tb testing.TB) string {
	tb.Helper()
	if testing.Short() {
		tb.Skip("builds the binary; skipped with -short")
	}
	bin, err := buildBinary()
	if err != nil {
		tb.Fatal(err)
	}
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if dir, err := binDir(); err == nil {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// TestBinaryExitCodes runs the real binary: -h exits 0 with the settings on
// stdout, an invalid setting exits 2 with one line naming it, a busy address
// exits 1.
func TestBinaryExitCodes(t *testing.T) {
	t.Parallel()
	bin := journalBinary(t)
	db := "JOURNAL_DATABASE_URL=sqlite:" + filepath.Join(t.TempDir(), "journal.db")
	tests := []struct {
		name       string
		args, env  []string
		wantCode   int
		wantStdout string // substring
		wantStderr string // exact, "" for any
	}{
		{"help", []string{"-h"}, nil, 0, "JOURNAL_RATE_LIMIT_IP", ""},
		{"invalid env", nil, []string{"JOURNAL_RATE_LIMIT_IP=abc"}, 2, "",
			"journal: invalid JOURNAL_RATE_LIMIT_IP \"abc\": want N/DURATION like 100/1m (N >= 1, DURATION >= 1s) or off\n"},
		{"invalid flag value", []string{"-redis-url", "redis://a:1,b:2/3"}, nil, 2, "",
			"journal: invalid -redis-url \"redis://a:1,b:2/3\": a database number (/db) cannot be used with a cluster (several addresses)\n"},
		{"trusted proxies trusting every IPv4 client", nil, []string{"JOURNAL_TRUSTED_PROXIES=127.0.0.1/32,::ffff:0:0/96"}, 2, "",
			"journal: invalid JOURNAL_TRUSTED_PROXIES \"127.0.0.1/32,::ffff:0:0/96\": \"::ffff:0:0/96\" trusts too many addresses: want trusted proxies no wider than /8 (IPv4) or /32 (IPv6)\n"},
		{"tracing over gRPC", nil, []string{db, "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL=grpc"}, 2, "",
			"journal: invalid OTEL_EXPORTER_OTLP_PROTOCOL \"grpc\": want http/protobuf (OTLP over gRPC is not built in)\n"},
		{"unknown flag", []string{"-verbose"}, nil, 2, "",
			"journal: flag provided but not defined: -verbose (run journal -h for the settings)\n"},
		{"busy address", []string{"-addr", busyAddr(t)}, []string{db}, 1, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin, tt.args...)
			cmd.Env = append(os.Environ(), tt.env...)
			cmd.Dir = t.TempDir()
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout %q lacks %q", stdout.String(), tt.wantStdout)
			}
			if tt.wantStderr != "" && stderr.String() != tt.wantStderr {
				t.Errorf("stderr = %q, want %q", stderr.String(), tt.wantStderr)
			}
			if tt.name == "busy address" && !strings.Contains(stderr.String(), "journal: listen tcp") {
				t.Errorf("stderr = %q, want a journal: listen tcp ... line", stderr.String())
			}
		})
	}
}

// TestBinarySIGTERM runs the real binary, waits until it is ready, sends
// SIGTERM and expects exit status 0.
func TestBinarySIGTERM(t *testing.T) {
	t.Parallel()
	bin := journalBinary(t)
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-shutdown-drain", "100ms")
	cmd.Env = append(os.Environ(), "JOURNAL_DATABASE_URL=sqlite:"+filepath.Join(t.TempDir(), "journal.db"))
	logs := newLogSink()
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// exited is closed when the process has been waited for; waitErr is
	// then its result.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})
	var addr string
	select {
	case addr = <-logs.addr:
	case <-exited:
		t.Fatalf("journal exited (%v) before listening; logs:\n%s", waitErr, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("no listening line; logs:\n%s", logs.String())
	}
	testenv.WaitFor(t, 60*time.Second, "/readyz 200", func() bool { code, _, _ := get("http://" + addr + "/readyz"); return code == 200 })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("journal after SIGTERM: %v, want exit 0; logs:\n%s", waitErr, tail(logs.String(), 20))
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("journal did not exit within 30s of SIGTERM")
	}
}
