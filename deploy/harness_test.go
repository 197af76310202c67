package deploy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The harness of the cluster.sh tests: a cluster.sh run directory with
// three instances behind nginx on free ports, requests to it, and
// journal-load runs against it.

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

// sh runs cluster.sh cmd args, bounded by timeout, and returns its combined
// output and error.
func (c *cluster) sh(tb testing.TB, timeout time.Duration, cmd string, args ...string) (string, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	x := exec.CommandContext(ctx, c.script, append([]string{cmd}, args...)...)
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

// freePorts returns a port p such that p..p+n-1 were free a moment ago,
// below Linux's ephemeral range (32768 and up by default), so that no
// outgoing connection of another process takes one of them before the
// cluster binds it.
func freePorts(tb testing.TB, n int) int {
	tb.Helper()
	for attempt := 0; attempt < 50; attempt++ {
		var b [2]byte
		_, _ = rand.Read(b[:])
		base := 10000 + (int(b[0])<<8|int(b[1]))%(32768-10000-n)
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

// answer is a fully read response.
type answer struct {
	code     int
	header   http.Header
	body     []byte
	instance string // X-Instance: the instance that answered
}

// request sends method url with body (JSON; "" for none), a bearer token
// ("" for none) and extra headers as name, value pairs (added: a name may
// repeat), and reads the whole answer. It fails the test if there is none.
func request(tb testing.TB, hc *http.Client, method, url, token, body string, header ...string) answer {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return answer{resp.StatusCode, resp.Header, b, resp.Header.Get("X-Instance")}
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

// loadRun is journal-load running in the background, its output in out
// and its summary written to json.
type loadRun struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	json string
	done chan error // the result of Wait
}

// startLoad starts journal-load with args and -json, bounded by ctx.
func startLoad(t *testing.T, ctx context.Context, bin string, args ...string) *loadRun {
	t.Helper()
	r := &loadRun{json: filepath.Join(t.TempDir(), "load.json"), done: make(chan error, 1)}
	r.cmd = exec.CommandContext(ctx, bin, append(args, "-json", r.json)...)
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	return r
}

// summary reads the summary of a finished run into v.
func (r *loadRun) summary(t *testing.T, v any) {
	t.Helper()
	b, err := os.ReadFile(r.json)
	if err != nil {
		t.Fatalf("journal-load wrote no summary: %v\n%s", err, r.out.String())
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

// needCluster skips the test in -short mode or without nginx (fails it as
// root, who can install it), fails it without curl, and returns nginx's
// path.
func needCluster(t *testing.T) string {
	t.Helper()
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
	return nginx
}

// newCluster prepares (does not start) three instances behind nginx on free
// loopback ports, in a new run directory, with the caller's environment
// but its JOURNAL_* settings replaced by env.
func newCluster(t *testing.T, nginx string, env ...string) *cluster {
	t.Helper()
	script, err := filepath.Abs("cluster.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := &cluster{script: script, runDir: dir}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "JOURNAL_") {
			c.env = append(c.env, kv)
		}
	}
	c.env = append(c.env,
		"INSTANCES=3",
		"RUN_DIR="+filepath.Join(dir, "cluster"),
		"NGINX_BIN="+nginx,
	)
	c.env = append(c.env, env...)
	c.pickPorts(t)
	return c
}

// pickPorts gives nginx and the instances ports that were free a moment
// ago (LB_ADDR, BASE_PORT), replacing those of an earlier pick.
func (c *cluster) pickPorts(t *testing.T) {
	t.Helper()
	lbPort := freePorts(t, 1)
	base := freePorts(t, 3)
	c.lb, c.inst = "http://127.0.0.1:"+strconv.Itoa(lbPort), nil
	for i := 0; i < 3; i++ {
		c.inst = append(c.inst, "http://127.0.0.1:"+strconv.Itoa(base+i))
	}
	env := c.env[:0]
	for _, kv := range c.env {
		if !strings.HasPrefix(kv, "LB_ADDR=") && !strings.HasPrefix(kv, "BASE_PORT=") {
			env = append(env, kv)
		}
	}
	c.env = append(env, "LB_ADDR=127.0.0.1:"+strconv.Itoa(lbPort), "BASE_PORT="+strconv.Itoa(base))
}

// up builds the service and journal-load, runs cluster.sh up (down at the
// end of the test) and returns journal-load's path.
func (c *cluster) up(t *testing.T) string {
	t.Helper()
	// Built here rather than by cluster.sh, so that a slow compile on a
	// busy machine does not count against up's readiness bound.
	loadBin := build(t, c.runDir, "journal-load")
	c.env = append(c.env, "JOURNAL_BIN="+build(t, c.runDir, "journal"))
	out, err := c.sh(t, 100*time.Second, "up")
	// Another test's process may take a port between the pick and the
	// start: pick again.
	for try := 1; err != nil && try < 3 && strings.Contains(strings.ToLower(out), "address already in use"); try++ {
		c.pickPorts(t)
		out, err = c.sh(t, 100*time.Second, "up")
	}
	t.Cleanup(func() {
		if out, err := c.sh(t, 60*time.Second, "down"); err != nil {
			t.Errorf("cluster.sh down: %v\n%s", err, out)
		}
	})
	if err != nil {
		t.Fatalf("cluster.sh up: %v\n%s\n%s", err, out, c.logs())
	}
	return loadBin
}
