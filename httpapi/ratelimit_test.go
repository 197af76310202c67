package httpapi

import (
	"net/http"
	"testing"
	"time"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/httplimit"
	"github.com/journalsvc/journal/ratelimit/memorylimit"
)

// TestWithHTTPLimit wires the real rate-limit middleware into the IPLimit
// slot: its headers and 429 reach the client, operational routes are not
// limited, and the access log carries its outcome.
func TestWithHTTPLimit(t *testing.T) {
	t.Parallel()
	lim := memorylimit.New(memorylimit.Options{SweepInterval: -1})
	t.Cleanup(func() { _ = lim.Close() })
	mw, err := httplimit.New(lim, httplimit.Options{
		Items: httplimit.StaticItems(ratelimit.Item{Policy: ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 2, Per: time.Minute}}}),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, func(o *Options) { o.IPLimit = mw.Handler })
	for i, want := range []int{401, 401, 429} {
		w := ts.do(t, "GET", "/v1/entries", "", "X-Request-ID", "rl-"+string(rune('a'+i)))
		if w.Code != want {
			t.Fatalf("request %d: %d, want %d; %s", i, w.Code, want, w.Body)
		}
		if w.Header().Get("RateLimit-Policy") == "" || w.Header().Get("X-Instance") != "test-1" {
			t.Errorf("request %d headers = %v", i, w.Header())
		}
		if want == 429 && w.Header().Get("Retry-After") == "" {
			t.Errorf("429 without Retry-After")
		}
	}
	for range 3 {
		if w := ts.do(t, "GET", "/livez", ""); w.Code != http.StatusOK || w.Header().Get("RateLimit-Policy") != "" {
			t.Errorf("/livez limited: %d %v", w.Code, w.Header())
		}
	}
	got := map[string]any{}
	for _, l := range ts.logs.lines(t, "request") {
		if id, _ := l["request_id"].(string); len(id) == 4 && id[:3] == "rl-" {
			got[id] = l["ratelimit"]
		}
	}
	want := map[string]any{"rl-a": "allowed", "rl-b": "allowed", "rl-c": "denied"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("access-log ratelimit outcomes = %v, want %v", got, want)
			break
		}
	}
}
