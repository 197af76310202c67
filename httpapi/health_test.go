package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/journalsvc/journal/ratelimit/httplimit"
)

func TestLivez(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	w := ts.do(t, "GET", "/livez", "")
	if w.Code != 200 || strings.TrimSpace(w.Body.String()) != `{"status":"up"}` {
		t.Errorf("GET /livez = %d %s", w.Code, w.Body)
	}
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	up := func(context.Context) error { return nil }
	down := func(context.Context) error { return errors.New("down") }
	hang := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	for _, tc := range []struct {
		name                 string
		db, redis            Check
		draining             bool
		status               int
		state                string
		database, redisState string
	}{
		{"ready without redis", up, nil, false, 200, "ready", "up", ""},
		{"ready with redis", up, up, false, 200, "ready", "up", "up"},
		{"redis down", up, down, false, 200, "degraded", "up", "down"},
		{"database down", down, up, false, 503, "unready", "down", "up"},
		{"database hangs", hang, nil, false, 503, "unready", "down", ""},
		{"draining", up, up, true, 503, "draining", "up", "up"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var draining atomic.Bool
			draining.Store(tc.draining)
			ts := newTestServer(t, func(o *Options) {
				o.Database, o.Redis, o.Draining = tc.db, tc.redis, draining.Load
				o.ReadyTimeout = 50 * time.Millisecond
			})
			w := ts.do(t, "GET", "/readyz", "")
			if w.Code != tc.status {
				t.Errorf("status = %d, want %d", w.Code, tc.status)
			}
			var got struct {
				Status string `json:"status"`
				Checks map[string]struct {
					Status    string `json:"status"`
					LatencyMS *int64 `json:"latency_ms"`
				} `json:"checks"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %s: %v", w.Body, err)
			}
			states := map[string]string{}
			for k, c := range got.Checks {
				states[k] = c.Status
				if c.LatencyMS == nil || *c.LatencyMS < 0 {
					t.Errorf("check %s: latency_ms = %v", k, c.LatencyMS)
				}
			}
			want := map[string]string{"database": tc.database}
			if tc.redisState != "" {
				want["redis"] = tc.redisState
			}
			if got.Status != tc.state || !cmp.Equal(states, want) {
				t.Errorf("readyz = %s, want status %s checks %v", w.Body, tc.state, want)
			}
		})
	}
}

func TestReadyzRealDatabase(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	if w := ts.do(t, "GET", "/readyz", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"status":"ready"`) {
		t.Errorf("readyz on a live SQLite = %d %s", w.Code, w.Body)
	}
	_ = ts.store.Close()
	if w := ts.do(t, "GET", "/readyz", ""); w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), `"unready"`) {
		t.Errorf("readyz on a closed SQLite = %d %s", w.Code, w.Body)
	}
}

// TestSplitServer: with an operations handler, /livez, /readyz and
// /metrics are served there only; the API handler answers them 404
// problem+json like any unknown path (rate limited like one), and the
// operations handler serves nothing else.
func TestSplitServer(t *testing.T) {
	t.Parallel()
	lim := newRecordingLimiter(t)
	ts := newTestServer(t)
	api, ops, err := NewSplitServer(Options{
		Logger: ts.opts.Logger, Users: ts.store, Tokens: ts.store, Entries: ts.store, Idempotency: ts.store, Passwords: ts.hasher,
		Metrics: newRegistry(), InstanceID: "split-1", Database: ts.store.Ping,
		Limiter: lim, Policies: testPolicies(),
	})
	if err != nil {
		t.Fatal(err)
	}
	call := func(h http.Handler, method, target string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(method, target, nil))
		return w
	}
	for _, path := range []string{"/livez", "/readyz", "/metrics"} {
		p := wantProblem(t, call(api, "GET", path), http.StatusNotFound)
		if p.Detail != errNoRoute.detail {
			t.Errorf("API GET %s: detail %q, want the unknown path's %q", path, p.Detail, errNoRoute.detail)
		}
		if calls, _ := lim.take(); len(calls) != 1 || calls[0] != "decide ip ip" {
			t.Errorf("API GET %s: limiter calls %q, want the IP decision of any unknown path", path, calls)
		}
		if w := call(ops, "GET", path); w.Code != http.StatusOK {
			t.Errorf("ops GET %s = %d %s, want 200", path, w.Code, w.Body)
		}
		if calls, _ := lim.take(); len(calls) != 0 {
			t.Errorf("ops GET %s was rate limited: %q", path, calls)
		}
		if w := call(ops, "GET", path); w.Header().Get("X-Request-ID") == "" || w.Header().Get("X-Instance") != "split-1" {
			t.Errorf("ops GET %s: headers %v, want X-Request-ID and X-Instance", path, w.Header())
		}
	}
	if w := call(api, "GET", "/openapi.json"); w.Code != http.StatusOK {
		t.Errorf("API GET /openapi.json = %d, want 200", w.Code)
	}
	if w := call(api, "GET", "/v1/entries"); w.Code != http.StatusUnauthorized {
		t.Errorf("API GET /v1/entries = %d, want 401", w.Code)
	}
	for _, target := range []string{"/v1/entries", "/openapi.json", "/nowhere"} {
		wantProblem(t, call(ops, "GET", target), http.StatusNotFound)
	}
	wantProblem(t, call(ops, "POST", "/metrics"), http.StatusMethodNotAllowed)
	// The two share one registry: requests on either are counted there.
	if w := call(ops, "GET", "/metrics"); !strings.Contains(w.Body.String(), `route="GET /v1/entries"`) {
		t.Errorf("ops /metrics does not count the API's requests:\n%.2000s", w.Body)
	}
}

// TestStarting checks every answer of the start-up handlers, with and
// without an operations listener.
func TestStarting(t *testing.T) {
	t.Parallel()
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	api, ops := NewStarting(logger, "test", false)
	if ops != nil {
		t.Fatal("NewStarting without split returned an ops handler")
	}
	splitAPI, splitOps := NewStarting(logger, "test", true)
	for _, tc := range []struct {
		name string
		h    http.Handler
		want map[string]int // "METHOD /path": status
	}{
		{"one listener", api, map[string]int{"GET /livez": 200, "GET /readyz": 503, "GET /openapi.json": 200,
			"POST /v1/users": 503, "GET /v1/entries/x": 503, "GET /metrics": 503}},
		{"operations listener", splitOps, map[string]int{"GET /livez": 200, "GET /readyz": 503, "GET /v1/users/me": 404}},
		{"public listener beside it", splitAPI, map[string]int{"GET /livez": 404, "GET /readyz": 404, "GET /v1/entries": 503}},
	} {
		for req, status := range tc.want {
			method, path, _ := strings.Cut(req, " ")
			w := httptest.NewRecorder()
			tc.h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
			body := strings.TrimSpace(w.Body.String())
			if w.Code != status {
				t.Errorf("%s: %s = %d %s, want %d", tc.name, req, w.Code, body, status)
				continue
			}
			if w.Header().Get("X-Request-ID") == "" || w.Header().Get("X-Instance") != "test" {
				t.Errorf("%s: %s: X-Request-ID %q, X-Instance %q; want an ID and %q", tc.name, req, w.Header().Get("X-Request-ID"), w.Header().Get("X-Instance"), "test")
			}
			var p problem
			switch {
			case path == "/livez" && status == 200:
				if body != `{"status":"up"}` {
					t.Errorf("%s: %s body %s", tc.name, req, body)
				}
			case path == "/readyz" && status == 503:
				if want := `{"status":"unready","checks":{"database":{"status":"starting","latency_ms":0}}}`; body != want {
					t.Errorf("%s: %s body %s, want %s", tc.name, req, body, want)
				}
			case status == 503:
				if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Type != httplimit.ProblemTemporaryReducedCapacity ||
					w.Header().Get("Retry-After") == "" || w.Header().Get("Content-Type") != "application/problem+json" {
					t.Errorf("%s: %s = %v %s (%v); want a %s problem with Retry-After", tc.name, req, w.Header(), body, err, httplimit.ProblemTemporaryReducedCapacity)
				}
			}
		}
	}
}
