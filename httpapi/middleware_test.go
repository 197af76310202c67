package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/ratelimit/httplimit"
)

func TestRequestIDAndInstance(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	tok := ts.signup(t, "alice")
	long := strings.Repeat("a", 128)
	for _, tc := range []struct {
		in   string
		keep bool
	}{
		{"abc-123_X.y", true},
		{long, true},
		{"", false},
		{long + "a", false},
		{"has space", false},
		{"semi;colon", false},
		{"é", false},
	} {
		for _, target := range []string{"/livez", "/v1/entries", "/nope", "/v1/users/me"} {
			w := ts.do(t, "GET", target, "", hdr(auth(tok), []string{"X-Request-ID", tc.in})...)
			got := w.Header().Get("X-Request-ID")
			if tc.keep && got != tc.in {
				t.Errorf("GET %s X-Request-ID %q: echoed %q", target, tc.in, got)
			}
			if !tc.keep && (got == tc.in || !validRequestID(got)) {
				t.Errorf("GET %s X-Request-ID %q: answered %q, want a new valid one", target, tc.in, got)
			}
			if got := w.Header().Get("X-Instance"); got != "test-1" {
				t.Errorf("GET %s: X-Instance = %q", target, got)
			}
		}
	}
	// Two requests without an ID get different ones.
	a := ts.do(t, "GET", "/livez", "").Header().Get("X-Request-ID")
	b := ts.do(t, "GET", "/livez", "").Header().Get("X-Request-ID")
	if a == b {
		t.Errorf("generated request IDs repeat: %q", a)
	}
}

func TestUnmatchedRoutes(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	tok := ts.signup(t, "bob")
	for _, tc := range []struct {
		method, target string
		status         int
		allow          string
	}{
		{"GET", "/nope", 404, ""},
		{"GET", "/v1/entries/a/b", 404, ""},
		{"POST", "/livez", 405, "GET, HEAD"},
		{"PUT", "/v1/entries", 405, "GET, HEAD, POST"},
		{"PUT", "/v1/entries/x", 405, "DELETE, GET, HEAD, PATCH"},
		{"PATCH", "/v1/tokens", 405, "DELETE, GET, HEAD, POST"},
		{"GET", "/v1/tokens/x", 405, "DELETE"},
	} {
		w := ts.do(t, tc.method, tc.target, "", auth(tok)...)
		wantProblem(t, w, tc.status)
		if got := w.Header().Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow = %q, want %q", tc.method, tc.target, got, tc.allow)
		}
		if got := w.Header().Get("X-Content-Type-Options"); got != "" {
			t.Errorf("%s %s: left X-Content-Type-Options %q of the plain-text answer", tc.method, tc.target, got)
		}
	}
	// A handler's own 404 is not rewritten (it is already a problem).
	p := wantProblem(t, ts.do(t, "GET", "/v1/entries/x", "", auth(tok)...), 404)
	if p.Detail != "not found" {
		t.Errorf("entry 404 detail = %q", p.Detail)
	}
}

func TestUnmatchedOverRealServer(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	srv := httptest.NewServer(ts.h)
	defer srv.Close()
	req, _ := http.NewRequest("DELETE", srv.URL+"/readyz", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" ||
		resp.Header.Get("Content-Type") != "application/problem+json" || !strings.HasPrefix(string(body), `{"type":"about:blank"`) {
		t.Errorf("DELETE /readyz = %d %v %s", resp.StatusCode, resp.Header, body)
	}
}

func TestAccessLog(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	const pw = "very-secret-password"
	ts.do(t, "POST", "/v1/users", `{"username":"carol","password":"`+pw+`"}`)
	w := ts.do(t, "POST", "/v1/tokens", `{"username":"carol","password":"`+pw+`"}`, "X-Request-ID", "login-1")
	var tok struct{ Token string }
	decodeBody(t, w, &tok)
	e, _ := ts.createEntry(t, tok.Token, "t", "b")
	ts.do(t, "GET", "/v1/entries/"+e["id"].(string), "", hdr(auth(tok.Token), []string{"X-Request-ID", "get-1"})...)
	ts.do(t, "GET", "/v1/entries/"+e["id"].(string), "", "X-Request-ID", "unauth-1")
	ts.do(t, "GET", "/nowhere", "", "X-Request-ID", "none-1")

	out := ts.logs.String()
	if strings.Contains(out, pw) || strings.Contains(out, tok.Token) || strings.Contains(out, journal.HashToken(tok.Token)) {
		t.Fatalf("log output holds a password or token:\n%s", out)
	}
	lines := ts.logs.lines(t, "request")
	byID := map[string]map[string]any{}
	for _, l := range lines {
		byID[l["request_id"].(string)] = l
	}
	if len(lines) != 6 {
		t.Errorf("%d access-log lines, want 6 (one per request)", len(lines))
	}
	var userID string
	for _, tc := range []struct {
		id, method, route string
		status            float64
		user              bool
	}{
		{"login-1", "POST", "POST /v1/tokens", 201, true},
		{"get-1", "GET", "GET /v1/entries/{id}", 200, true},
		{"unauth-1", "GET", "GET /v1/entries/{id}", 401, false},
		{"none-1", "GET", "", 404, false},
	} {
		l := byID[tc.id]
		if l == nil {
			t.Errorf("no access-log line for %s", tc.id)
			continue
		}
		if l["method"] != tc.method || l["route"] != tc.route || l["status"] != tc.status || l["instance"] != "test-1" || l["level"] != "INFO" {
			t.Errorf("line %s = %v, want method %s route %q status %v", tc.id, l, tc.method, tc.route, tc.status)
		}
		if _, ok := l["duration_ms"].(float64); !ok {
			t.Errorf("line %s: no duration_ms", tc.id)
		}
		if b, ok := l["bytes"].(float64); !ok || (tc.status != 304 && b <= 0) {
			t.Errorf("line %s: bytes = %v", tc.id, l["bytes"])
		}
		uid, has := l["user_id"].(string)
		if has != tc.user {
			t.Errorf("line %s: user_id %q present=%v, want present=%v", tc.id, uid, has, tc.user)
		}
		if has {
			if userID == "" {
				userID = uid
			} else if uid != userID {
				t.Errorf("line %s: user_id %q, want %q", tc.id, uid, userID)
			}
		}
	}
}

func TestPanicRecovery(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	tok := ts.signup(t, "dan")
	w := ts.getFailingEntry(t, tok, "panic-1", func() (journal.Entry, error) { panic("boom in the store") })
	p := wantProblem(t, w, http.StatusInternalServerError)
	if strings.Contains(p.Detail, "boom") {
		t.Errorf("500 detail leaks the panic: %q", p.Detail)
	}
	if w.Header().Get("X-Request-ID") != "panic-1" || w.Header().Get("X-Instance") != "test-1" {
		t.Errorf("500 headers = %v", w.Header())
	}
	panics := ts.logs.lines(t, "panic")
	if len(panics) != 1 || panics[0]["request_id"] != "panic-1" || !strings.Contains(panics[0]["stack"].(string), "failingEntries") || panics[0]["panic"] != "boom in the store" {
		t.Errorf("panic log = %v", panics)
	}
	var access map[string]any
	for _, l := range ts.logs.lines(t, "request") {
		if l["request_id"] == "panic-1" {
			access = l
		}
	}
	if access == nil || access["status"] != 500.0 || access["panic"] != true || access["route"] != "GET /v1/entries/{id}" {
		t.Errorf("access line of the panic = %v", access)
	}
	// The server keeps serving.
	if w := ts.do(t, "GET", "/livez", ""); w.Code != 200 {
		t.Errorf("after a panic /livez = %d", w.Code)
	}
}

func TestInternalErrorIsGeneric(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	tok := ts.signup(t, "eve")
	w := ts.getFailingEntry(t, tok, "int-1", func() (journal.Entry, error) {
		return journal.Entry{}, errors.New("db: connection to 10.0.0.5 refused")
	})
	p := wantProblem(t, w, 500)
	if p.Detail != "internal server error" {
		t.Errorf("500 detail = %q, want the generic one", p.Detail)
	}
	var found bool
	for _, l := range ts.logs.lines(t, "request failed") {
		if l["request_id"] == "int-1" && strings.Contains(l["error"].(string), "10.0.0.5") && l["level"] == "ERROR" {
			found = true
		}
	}
	if !found {
		t.Errorf("internal error not logged with its request ID:\n%s", ts.logs)
	}
}

// TestDatabaseUnavailable: an error wrapping journal.ErrUnavailable (the
// database is down or too slow) is 503 temporary-reduced-capacity with
// Retry-After, logged as a warning, never a 500.
func TestDatabaseUnavailable(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	tok := ts.signup(t, "uma")
	for _, cause := range []error{
		fmt.Errorf("postgres: entry: %w: %w", journal.ErrUnavailable, errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")),
		fmt.Errorf("postgres: entry: %w", context.DeadlineExceeded),
	} {
		w := ts.getFailingEntry(t, tok, "down-1", func() (journal.Entry, error) { return journal.Entry{}, cause })
		p := wantProblem(t, w, http.StatusServiceUnavailable)
		if p.Type != httplimit.ProblemTemporaryReducedCapacity || w.Header().Get("Retry-After") != "1" || strings.Contains(p.Detail, "127.0.0.1") {
			t.Errorf("%v: problem %+v, Retry-After %q; want type %s, Retry-After 1 and no internals",
				cause, p, w.Header().Get("Retry-After"), httplimit.ProblemTemporaryReducedCapacity)
		}
	}
	for _, l := range ts.logs.lines(t, "request failed") {
		if l["request_id"] == "down-1" && l["level"] != "WARN" {
			t.Errorf("unavailable database logged at %v, want WARN", l["level"])
		}
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	tok := ts.signup(t, "fay")
	e, _ := ts.createEntry(t, tok, "t", "")
	for range 3 {
		ts.do(t, "GET", "/v1/entries/"+e["id"].(string), "", auth(tok)...)
	}
	ts.do(t, "GET", "/v1/entries/"+journal.NewID(ts.clock.Now()), "", auth(tok)...)
	ts.do(t, "GET", "/missing", "")
	w := ts.do(t, "GET", "/metrics", "")
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics = %d %v", w.Code, w.Header())
	}
	body := w.Body.String()
	for _, want := range []string{
		`journal_http_requests_total{code="200",route="GET /v1/entries/{id}"} 3`,
		`journal_http_requests_total{code="404",route="GET /v1/entries/{id}"} 1`,
		`journal_http_requests_total{code="201",route="POST /v1/entries"} 1`,
		`journal_http_requests_total{code="404",route="unmatched"} 1`,
		`journal_http_request_duration_seconds_count{route="GET /v1/entries/{id}"} 4`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
