package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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
