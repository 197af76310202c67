package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
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

// TestOpsAddrBusy: a busy JOURNAL_OPS_ADDR stops start-up at once with an
// error naming it.
func TestOpsAddrBusy(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = run(ctx, []string{"-addr", "127.0.0.1:0"}, env(map[string]string{
		"JOURNAL_DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "journal.db"),
		"JOURNAL_OPS_ADDR":     ln.Addr().String(),
	}), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "JOURNAL_OPS_ADDR") || exitCode(err) != 1 {
		t.Errorf("run with a busy JOURNAL_OPS_ADDR = %v (exit %d), want an error naming it, exit 1", err, exitCode(err))
	}
}
