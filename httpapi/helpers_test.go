package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/internal/testdb"
	"github.com/journalsvc/journal/password"
	"github.com/journalsvc/journal/ratelimit/ratelimittest"
	"github.com/journalsvc/journal/sqlite"
)

// cheapParams keep password hashing fast in HTTP tests; the password
// package tests the real parameters.
var cheapParams = password.Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

// syncBuffer is a bytes.Buffer safe for concurrent use (log output).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lines returns the JSON log lines whose msg is msg.
func (s *syncBuffer) lines(tb testing.TB, msg string) []map[string]any {
	tb.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			tb.Fatalf("log line is not JSON: %q: %v", l, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

type testServer struct {
	h      http.Handler
	store  *sqlite.Store
	clock  *ratelimittest.Clock
	logs   *syncBuffer
	reg    *prometheus.Registry
	hasher *password.Hasher
	opts   Options
}

// newTestServer returns a server on a fresh SQLite file with a fake clock,
// captured logs and cheap password hashing; mod may change the options.
func newTestServer(tb testing.TB, mod ...func(*Options)) *testServer {
	tb.Helper()
	st := testdb.SQLite(tb)
	ts := &testServer{
		store:  st,
		clock:  ratelimittest.NewClock(time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)),
		logs:   &syncBuffer{},
		reg:    prometheus.NewRegistry(),
		hasher: password.New(password.Options{Params: cheapParams}),
	}
	ts.opts = Options{
		Logger:      slog.New(slog.NewJSONHandler(ts.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Users:       st,
		Tokens:      st,
		Entries:     st,
		Idempotency: st,
		Passwords:   ts.hasher,
		Metrics:     ts.reg,
		InstanceID:  "test-1",
		TokenTTL:    time.Hour,
		Now:         ts.clock.Now,
		Database:    st.Ping,
	}
	for _, m := range mod {
		m(&ts.opts)
	}
	var err error
	ts.h, err = NewServer(ts.opts)
	if err != nil {
		tb.Fatalf("NewServer: %v", err)
	}
	return ts
}

// do sends one request through the handler. Header pairs follow the body;
// a non-empty body gets Content-Type: application/json unless given.
func (ts *testServer) do(tb testing.TB, method, target, body string, header ...string) *httptest.ResponseRecorder {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, target, rd)
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			r.Header.Del(header[i])
			continue
		}
		r.Header.Add(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	ts.h.ServeHTTP(w, r)
	if err := loadDoc(tb).checkResponse(r, w); err != nil {
		tb.Errorf("the response departs from openapi.json: %v", err)
	}
	return w
}

// auth returns the header pair of a bearer token.
func auth(token string) []string { return []string{"Authorization", "Bearer " + token} }

func hdr(pairs ...[]string) []string {
	var out []string
	for _, p := range pairs {
		out = append(out, p...)
	}
	return out
}

// signup registers username (password "password-"+username) and logs in.
func (ts *testServer) signup(tb testing.TB, username string) (token string) {
	tb.Helper()
	creds := `{"username":"` + username + `","password":"password-` + username + `"}`
	if w := ts.do(tb, "POST", "/v1/users", creds); w.Code != http.StatusCreated {
		tb.Fatalf("POST /v1/users = %d %s", w.Code, w.Body)
	}
	w := ts.do(tb, "POST", "/v1/tokens", creds)
	var tok struct{ Token string }
	wantJSON(tb, w, http.StatusCreated, &tok)
	return tok.Token
}

// createEntry creates an entry and returns its JSON and ETag.
func (ts *testServer) createEntry(tb testing.TB, token, title, body string) (map[string]any, string) {
	tb.Helper()
	b, _ := json.Marshal(map[string]string{"title": title, "body": body})
	w := ts.do(tb, "POST", "/v1/entries", string(b), auth(token)...)
	var e map[string]any
	wantJSON(tb, w, http.StatusCreated, &e)
	return e, w.Header().Get("ETag")
}

// wantJSON checks that w answers status and decodes its JSON body into v.
func wantJSON(tb testing.TB, w *httptest.ResponseRecorder, status int, v any) {
	tb.Helper()
	if w.Code != status {
		tb.Fatalf("status %d, want %d: %s", w.Code, status, w.Body)
	}
	decodeBody(tb, w, v)
}

func decodeBody(tb testing.TB, w *httptest.ResponseRecorder, v any) {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	if err := dec.Decode(v); err != nil {
		tb.Fatalf("response body %q: %v", w.Body, err)
	}
}

// problemBody is the decoded shape of a problem answer.
type problemBody struct {
	Type      string               `json:"type"`
	Title     string               `json:"title"`
	Status    int                  `json:"status"`
	Detail    string               `json:"detail"`
	Errors    []journal.FieldError `json:"errors"`
	RequestID string               `json:"request_id"`
}

// wantProblem checks that w is a problem+json answer with status and
// returns it.
func wantProblem(tb testing.TB, w *httptest.ResponseRecorder, status int) problemBody {
	tb.Helper()
	if w.Code != status {
		tb.Fatalf("status = %d, want %d; body %s", w.Code, status, w.Body)
	}
	if got := w.Header().Get("Content-Type"); got != "application/problem+json" {
		tb.Errorf("Content-Type = %q, want application/problem+json", got)
	}
	var p problemBody
	dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		tb.Fatalf("problem body %q: %v", w.Body, err)
	}
	if p.Status != status || p.Type == "" || p.Title == "" || p.Detail == "" {
		tb.Errorf("problem = %+v, want status %d and type, title, detail set", p, status)
	}
	if p.RequestID != w.Header().Get("X-Request-ID") {
		tb.Errorf("problem request_id = %q, X-Request-ID = %q", p.RequestID, w.Header().Get("X-Request-ID"))
	}
	return p
}

// failingEntries wraps an entry store; fn, when set, replaces Entry.
type failingEntries struct {
	journal.EntryStore
	entry func() (journal.Entry, error)
}

func (f failingEntries) Entry(ctx context.Context, userID, id string) (journal.Entry, error) {
	if f.entry != nil {
		return f.entry()
	}
	return f.EntryStore.Entry(ctx, userID, id)
}

// getFailingEntry rebuilds ts's handler (with a fresh metrics registry) so
// that reading an entry calls entry instead of the store, and GETs an entry
// of tok's user with X-Request-ID requestID.
func (ts *testServer) getFailingEntry(tb testing.TB, tok, requestID string, entry func() (journal.Entry, error)) *httptest.ResponseRecorder {
	tb.Helper()
	o := ts.opts
	o.Metrics = newRegistry()
	o.Entries = failingEntries{EntryStore: ts.store, entry: entry}
	h, err := NewServer(o)
	if err != nil {
		tb.Fatal(err)
	}
	ts.h = h
	return ts.do(tb, "GET", "/v1/entries/"+journal.NewID(ts.clock.Now()), "", hdr(auth(tok), []string{"X-Request-ID", requestID})...)
}

func newRegistry() *prometheus.Registry { return prometheus.NewRegistry() }

func serve(ts *testServer, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	ts.h.ServeHTTP(w, r)
	return w
}

// bothStores runs test in parallel subtests on SQLite and on PostgreSQL (a
// fresh database on the test server, see testenv.PostgresURL).
func bothStores(t *testing.T, test func(t *testing.T, ts *testServer)) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		test(t, newTestServer(t))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		st := testdb.Postgres(t)
		test(t, newTestServer(t, func(o *Options) { o.Users, o.Tokens, o.Entries, o.Idempotency, o.Database = st, st, st, st, st.Ping }))
	})
}
