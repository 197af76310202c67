package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/journalsvc/journal/internal/testenv"
)

// TestOpsAddr runs the service with JOURNAL_OPS_ADDR: /metrics, /livez and
// /readyz answer on the operations listener only, the public listener
// answers them 404 problem+json, and the operations listener reports
// "draining" through the shutdown drain.
func TestOpsAddr(t *testing.T) {
	t.Parallel()
	j := startJournal(t, map[string]string{"JOURNAL_OPS_ADDR": "127.0.0.1:0", "JOURNAL_SHUTDOWN_DRAIN": "1s"})
	if j.OpsURL == j.URL {
		t.Fatalf("no ops_addr in the listening line:\n%s", tail(j.logs.String(), 5))
	}
	for _, path := range []string{"/metrics", "/livez", "/readyz"} {
		resp, err := http.Get(j.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("public GET %s = %d %s %s, want 404 problem+json", path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		if code, body, err := get(j.OpsURL + path); err != nil || code != http.StatusOK {
			t.Errorf("ops GET %s = %d %.200s %v, want 200", path, code, body, err)
		}
	}
	if code, _, err := get(j.URL + "/openapi.json"); err != nil || code != http.StatusOK {
		t.Errorf("public GET /openapi.json = %d %v, want 200", code, err)
	}
	if code, _, err := get(j.URL + "/v1/users/me"); err != nil || code != http.StatusUnauthorized {
		t.Errorf("public GET /v1/users/me = %d %v, want 401", code, err)
	}
	if code, _, err := get(j.OpsURL + "/v1/users/me"); err != nil || code != http.StatusNotFound {
		t.Errorf("ops GET /v1/users/me = %d %v, want 404", code, err)
	}
	// The metrics count the public listener's requests.
	if _, body, _ := get(j.OpsURL + "/metrics"); !strings.Contains(body, `route="GET /v1/users/me"`) {
		t.Errorf("ops /metrics lacks the public requests")
	}

	j.stop()
	if _, sawDraining := testenv.Poll(900*time.Millisecond, 20*time.Millisecond, func() bool {
		code, body, err := get(j.OpsURL + "/readyz")
		return err == nil && code == http.StatusServiceUnavailable && strings.Contains(body, `"draining"`)
	}); !sawDraining {
		t.Errorf("ops /readyz never said draining during the drain")
	}
	if err := j.result(); err != nil {
		t.Fatalf("run = %v", err)
	}
	if opsAddr := strings.TrimPrefix(j.OpsURL, "http://"); !refused(opsAddr) {
		t.Errorf("the operations listener %s still accepts after run returned", opsAddr)
	}
}
