// Package deploy_test runs deploy/cluster.sh end to end: three journal
// instances behind nginx on the shared Redis and a fresh PostgreSQL
// database, driven by cmd/journal-load (docs/design.md, "Scale-out").
package deploy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/journalsvc/journal/internal/testenv"
)

// loadSummary is the part of journal-load's -json output the test reads.
type loadSummary struct {
	Requests   int            `json:"requests"`
	Failed     int            `json:"failed"`
	ByStatus   map[string]int `json:"by_status"`
	ByInstance map[string]int `json:"by_instance"`
	Problems   []string       `json:"problems"`
	Ratelimit  *struct {
		Limit              int            `json:"limit"`
		Expected           int            `json:"expected"`
		Admitted           int            `json:"admitted"`
		Denied             int            `json:"denied"`
		Exact              bool           `json:"exact"`
		AdmittedByInstance map[string]int `json:"admitted_by_instance"`
		RetryAfterMissing  int            `json:"retry_after_missing"`
	} `json:"ratelimit"`
	Coherence *struct {
		Pairs         int     `json:"pairs"`
		StaleReads    int     `json:"stale_reads"`
		LagMaxMs      float64 `json:"invalidation_lag_max_ms"`
		Revocations   int     `json:"revocations"`
		RevocationMax float64 `json:"revocation_lag_max_ms"`
		RevokedStill  int     `json:"revoked_still_accepted"`
	} `json:"coherence"`
	Paced *struct {
		Sent       int    `json:"sent"`
		Missed     int    `json:"missed"`
		FirstError string `json:"first_error"`
	} `json:"paced"`
}

// cluster is a cluster.sh run directory and its environment.
type cluster struct {
	script string
	env    []string
	lb     string
	inst   []string
	runDir string
}

// sh runs cluster.sh cmd, bounded by timeout, and returns its combined
// output and error.
func (c *cluster) sh(tb testing.TB, timeout time.Duration, cmd string) (string, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	x := exec.CommandContext(ctx, c.script, cmd)
	x.Env = c.env
	x.Dir = c.runDir
	// Do not wait forever for a pipe some daemon inherited.
	x.WaitDelay = 5 * time.Second
	out, err := x.CombinedOutput()
	return string(out), err
}

// logs returns the last lines of every log in the run directory.
func (c *cluster) logs() string {
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(c.runDir, "cluster", "logs", "*.log"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(&b, "==> %s\n%s\n", filepath.Base(f), strings.Join(lines, "\n"))
	}
	return b.String()
}

func findNginx() string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	return ""
}

// freePorts returns a port p such that p..p+n-1 were free a moment ago.
func freePorts(tb testing.TB, n int) int {
	tb.Helper()
	for attempt := 0; attempt < 50; attempt++ {
		var b [2]byte
		_, _ = rand.Read(b[:])
		base := 20000 + int(b[0])<<8%30000 + int(b[1])
		ok := true
		var ls []net.Listener
		for i := 0; i < n; i++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+i))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if ok {
			return base
		}
	}
	tb.Fatal("no run of free loopback ports found")
	return 0
}

// build builds the command ./cmd/name of the module into dir.
func build(tb testing.TB, dir, name string) string {
	tb.Helper()
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/"+name)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build ./cmd/%s: %v\n%s", name, err, out)
	}
	return bin
}

// load runs journal-load with args and returns its summary.
func load(tb testing.TB, bin string, timeout time.Duration, args ...string) (loadSummary, string) {
	tb.Helper()
	js := filepath.Join(tb.TempDir(), "load.json")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(args, "-json", js)...)
	out, err := cmd.CombinedOutput()
	var s loadSummary
	b, rerr := os.ReadFile(js)
	if rerr != nil {
		tb.Fatalf("journal-load %q: no summary (%v, %v):\n%s", args, err, rerr, out)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		tb.Fatalf("journal-load summary: %v", err)
	}
	return s, string(out)
}

func TestClusterEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end cluster test: skipped in -short mode")
	}
	nginx := findNginx()
	if nginx == "" {
		if os.Geteuid() != 0 {
			t.Skip("nginx is not installed (Debian: apt-get install nginx-light; scripts/test installs it when root)")
		}
		t.Fatal("nginx is not installed: run scripts/test (it installs nginx-light) or apt-get install nginx-light")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is not installed: apt-get install curl (cluster.sh polls /readyz with it)")
	}
	script, err := filepath.Abs("cluster.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	lbPort := freePorts(t, 1)
	base := freePorts(t, 3)
	var pfx [6]byte
	_, _ = rand.Read(pfx[:])
	c := &cluster{script: script, runDir: dir, lb: "http://127.0.0.1:" + strconv.Itoa(lbPort)}
	for i := 0; i < 3; i++ {
		c.inst = append(c.inst, "http://127.0.0.1:"+strconv.Itoa(base+i))
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "JOURNAL_") {
			c.env = append(c.env, kv)
		}
	}
	c.env = append(c.env,
		"INSTANCES=3",
		"LB_ADDR=127.0.0.1:"+strconv.Itoa(lbPort),
		"BASE_PORT="+strconv.Itoa(base),
		"RUN_DIR="+filepath.Join(dir, "cluster"),
		"NGINX_BIN="+nginx,
		"JOURNAL_DATABASE_URL="+testenv.PostgresURL(t),
		"JOURNAL_REDIS_URL=redis://"+testenv.RedisAddr(t),
		"JOURNAL_REDIS_PREFIX=e2e-"+hex.EncodeToString(pfx[:])+":",
		"JOURNAL_RATE_LIMIT_IP=50/1h",
		"JOURNAL_SHUTDOWN_DRAIN=500ms",
		"JOURNAL_LOG_LEVEL=warn",
	)
	// Built here rather than by cluster.sh, so that a slow compile on a
	// busy machine does not count against up's readiness bound.
	loadBin := build(t, dir, "journal-load")
	c.env = append(c.env, "JOURNAL_BIN="+build(t, dir, "journal"))

	out, err := c.sh(t, 100*time.Second, "up")
	t.Cleanup(func() {
		if out, err := c.sh(t, 60*time.Second, "down"); err != nil {
			t.Errorf("cluster.sh down: %v\n%s", err, out)
		}
	})
	if err != nil {
		t.Fatalf("cluster.sh up: %v\n%s\n%s", err, out, c.logs())
	}
	if out, err := c.sh(t, 10*time.Second, "up"); err == nil {
		t.Errorf("second cluster.sh up succeeded, want exit 1:\n%s", out)
	}

	t.Run("ratelimit", func(t *testing.T) {
		s, out := load(t, loadBin, 60*time.Second, "-scenario", "ratelimit", "-target", c.lb,
			"-requests", "1000", "-concurrency", "50", "-duration", "50s")
		r := s.Ratelimit
		if r == nil || r.Limit != 50 || r.Admitted != r.Expected || !r.Exact {
			t.Errorf("flood of 1000 through nginx: want exactly 50 admitted:\n%s", out)
		}
		if r != nil && r.RetryAfterMissing != 0 {
			t.Errorf("%d responses 429 without Retry-After", r.RetryAfterMissing)
		}
		if len(s.ByInstance) != 3 {
			t.Errorf("responses came from %v, want all 3 instances", s.ByInstance)
		}
		if s.Failed != 0 {
			t.Errorf("%d failed requests in the flood:\n%s", s.Failed, out)
		}
	})

	t.Run("coherence", func(t *testing.T) {
		s, out := load(t, loadBin, 60*time.Second, "-scenario", "coherence", "-instances", strings.Join(c.inst, ","),
			"-pairs", "30", "-duration", "50s")
		co := s.Coherence
		if co == nil || co.Pairs != 30 || co.StaleReads != 0 || co.RevokedStill != 0 || s.Failed != 0 {
			t.Errorf("coherence across instances: want 30 pairs, 0 stale reads, 0 failures, every revoked token refused:\n%s", out)
		}
		if co != nil {
			t.Logf("invalidation lag max %.1f ms, revocation lag max %.1f ms", co.LagMaxMs, co.RevocationMax)
		}
	})

	t.Run("rolling-restart", func(t *testing.T) {
		js := filepath.Join(t.TempDir(), "mixed.json")
		var loadOut bytes.Buffer
		lc := exec.Command(loadBin, "-scenario", "mixed", "-target", c.lb, "-rate", "80", "-duration", "60s",
			"-users", "8", "-concurrency", "32", "-json", js)
		lc.Stdout, lc.Stderr = &loadOut, &loadOut
		if err := lc.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- lc.Wait() }()
		time.Sleep(3 * time.Second) // sign-ups, then load
		rrOut, rrErr := c.sh(t, 90*time.Second, "rolling-restart")
		time.Sleep(time.Second)
		_ = lc.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = lc.Process.Kill()
			<-done
			t.Fatalf("journal-load did not stop after SIGINT:\n%s", loadOut.String())
		}
		if rrErr != nil {
			t.Fatalf("cluster.sh rolling-restart: %v\n%s", rrErr, rrOut)
		}
		b, err := os.ReadFile(js)
		if err != nil {
			t.Fatalf("journal-load wrote no summary: %v\n%s", err, loadOut.String())
		}
		var s loadSummary
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		if s.Requests < 200 || s.Failed != 0 {
			t.Errorf("mixed load during the rolling restart: %d requests, %d failed; want >= 200 and 0 failed:\n%s\n%s",
				s.Requests, s.Failed, loadOut.String(), rrOut)
		}
		if out, err := c.sh(t, 10*time.Second, "status"); err != nil {
			t.Errorf("cluster.sh status after the rolling restart: %v\n%s", err, out)
		}
		t.Logf("mixed during rolling restart: %d requests, statuses %v, instances %v", s.Requests, s.ByStatus, s.ByInstance)
	})

	out, err = c.sh(t, 60*time.Second, "down")
	if err != nil {
		t.Fatalf("cluster.sh down: %v\n%s", err, out)
	}
	if out, err := c.sh(t, 10*time.Second, "status"); err == nil || !strings.Contains(out, "stopped") {
		t.Errorf("cluster.sh status after down = %v, want exit 3 and every process stopped:\n%s", err, out)
	}
}
