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
	"errors"
	"net/http"
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

// degradedDecisions sums the degraded rate-limit decisions of policy that
// the instances' /metrics report.
func degradedDecisions(tb testing.TB, c *cluster, policy string) int {
	tb.Helper()
	n := 0
	for _, base := range c.inst {
		metrics := request(tb, http.DefaultClient, "GET", base+"/metrics", "", "")
		for _, line := range strings.Split(string(metrics.body), "\n") {
			if strings.HasPrefix(line, "journal_ratelimit_decisions_total{") && strings.Contains(line, `mode="degraded"`) &&
				strings.Contains(line, `policy="`+policy+`"`) {
				f := strings.Fields(line)
				v, _ := strconv.ParseFloat(f[len(f)-1], 64)
				n += int(v)
			}
		}
	}
	return n
}

// floodUser floods a fresh user's requests through nginx and checks that
// exactly the user limit of 200 is admitted across the three instances. On a
// machine so loaded that some of the flood's Redis calls time out, those
// decisions are degraded (the instances' metrics count them): a call Redis
// charged for a caller that gave up is quota no one spends, and a degraded
// decision grants at most one unit per instance (see "What degraded
// decisions admit" in the README). Then the flood must admit at most the
// limit plus one per instance, and may admit less.
func floodUser(t *testing.T, c *cluster, loadBin string) {
	before := degradedDecisions(t, c, "user")
	s, out := load(t, loadBin, 60*time.Second, "-scenario", "ratelimit", "-policy", "user", "-target", c.lb,
		"-requests", "1000", "-concurrency", "50", "-duration", "50s")
	degraded := degradedDecisions(t, c, "user") - before
	r := s.Ratelimit
	switch {
	case r == nil || r.Limit != 200 || r.Expected != 200:
		t.Errorf("flood of 1000 through nginx: want the user limit of 200 expected:\n%s", out)
	case degraded == 0 && (r.Admitted != r.Expected || !r.Exact):
		t.Errorf("flood of 1000 through nginx: want exactly the user limit of 200 admitted:\n%s", out)
	case degraded > 0 && r.Admitted > r.Expected+len(c.inst):
		t.Errorf("flood of 1000 through nginx with %d degraded decisions: want at most %d admitted:\n%s", degraded, r.Expected+len(c.inst), out)
	case degraded > 0:
		t.Logf("flood: admitted %d of the limit of %d with %d decisions degraded (Redis calls timed out on a loaded machine)", r.Admitted, r.Expected, degraded)
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
}

func TestClusterEndToEnd(t *testing.T) {
	nginx := needCluster(t)
	var pfx [6]byte
	_, _ = rand.Read(pfx[:])
	c := newCluster(t, nginx,
		"JOURNAL_DATABASE_URL="+testenv.PostgresURL(t),
		"JOURNAL_REDIS_URL=redis://"+testenv.RedisAddr(t),
		"JOURNAL_REDIS_PREFIX=e2e-"+hex.EncodeToString(pfx[:])+":",
		// nginx replaces X-Forwarded-For, so every request of this test
		// counts against 127.0.0.1 under ip: make it roomy, and prove
		// exactness on the user policy, which a fresh user starts whole
		// (the coherence run's one user and the mixed load, spread over
		// enough users, stay under it).
		"JOURNAL_RATE_LIMIT_IP=1000000/1h",
		"JOURNAL_RATE_LIMIT_USER=200/1h",
		// Per 127.0.0.1 too: the edge subtest's, the flood's and the
		// mixed load's 16 sign-ups.
		"JOURNAL_RATE_LIMIT_SIGNUP=100/1h",
		"JOURNAL_SHUTDOWN_DRAIN=500ms",
		"JOURNAL_LOG_LEVEL=warn",
	)
	loadBin := c.up(t)
	if out, err := c.sh(t, 10*time.Second, "up"); err == nil {
		t.Errorf("second cluster.sh up succeeded, want exit 1:\n%s", out)
	}

	t.Run("edge", func(t *testing.T) { testEdge(t, c) })
	t.Run("accounts", func(t *testing.T) { testAccounts(t, c) })

	t.Run("ratelimit", func(t *testing.T) { floodUser(t, c, loadBin) })

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
		// 16 users: each must stay under the user limit of 200 an hour.
		lr := startLoad(t, context.Background(), loadBin, "-scenario", "mixed", "-target", c.lb, "-rate", "80", "-duration", "60s",
			"-users", "16", "-concurrency", "32")
		time.Sleep(3 * time.Second) // sign-ups, then load
		rrOut, rrErr := c.sh(t, 90*time.Second, "rolling-restart")
		time.Sleep(time.Second)
		_ = lr.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-lr.done:
		case <-time.After(30 * time.Second):
			_ = lr.cmd.Process.Kill()
			<-lr.done
			t.Fatalf("journal-load did not stop after SIGINT:\n%s", lr.out.String())
		}
		if rrErr != nil {
			t.Fatalf("cluster.sh rolling-restart: %v\n%s", rrErr, rrOut)
		}
		var s loadSummary
		lr.summary(t, &s)
		if s.Requests < 200 || s.Failed != 0 {
			t.Errorf("mixed load during the rolling restart: %d requests, %d failed; want >= 200 and 0 failed:\n%s\n%s",
				s.Requests, s.Failed, lr.out.String(), rrOut)
		}
		if out, err := c.sh(t, 10*time.Second, "status"); err != nil {
			t.Errorf("cluster.sh status after the rolling restart: %v\n%s", err, out)
		}
		t.Logf("mixed during rolling restart: %d requests, statuses %v, instances %v", s.Requests, s.ByStatus, s.ByInstance)
	})

	// Every instance restarted: a fresh user's flood admits exactly its
	// limit again, from the first request.
	t.Run("ratelimit-after-restart", func(t *testing.T) { floodUser(t, c, loadBin) })

	out, err := c.sh(t, 60*time.Second, "down")
	if err != nil {
		t.Fatalf("cluster.sh down: %v\n%s", err, out)
	}
	if out, err := c.sh(t, 10*time.Second, "status"); err == nil || !strings.Contains(out, "stopped") {
		t.Errorf("cluster.sh status after down = %v, want exit 3 and every process stopped:\n%s", err, out)
	}
}

// testEdge checks nginx as the edge: it does not proxy /metrics (each
// instance still serves it), and it replaces the client's X-Forwarded-For
// and ignores its Forwarded, so requests that forge different addresses all
// count against the one address nginx saw.
func testEdge(t *testing.T, c *cluster) {
	hc := &http.Client{Timeout: 10 * time.Second}
	for _, path := range []string{"/metrics", "//metrics", "/%6detrics", "/metrics?x=1"} {
		a := request(t, hc, "GET", c.lb+path, "", "")
		if a.code != http.StatusNotFound || a.header.Get("Content-Type") != "application/problem+json" || bytes.Contains(a.body, []byte("journal_")) {
			t.Errorf("GET %s through nginx = %d %s %.100q, want 404 problem+json", path, a.code, a.header.Get("Content-Type"), a.body)
		}
	}
	if a := request(t, hc, "GET", c.inst[0]+"/metrics", "", ""); a.code != http.StatusOK || !bytes.Contains(a.body, []byte("journal_")) {
		t.Errorf("GET /metrics on instance 0 = %d, want 200 with the metrics", a.code)
	}

	// remaining returns what the signup policy (per client address, slow
	// to refill) had left after a sign-up that forges header and is refused
	// as invalid (the limit is decided before the body is read), and its
	// quota.
	remaining := func(header ...string) (r, q int) {
		t.Helper()
		a := request(t, hc, "POST", c.lb+"/v1/users", "", "{}", header...)
		r, q = policyParam(a.header.Values("RateLimit"), "signup", "r"), policyParam(a.header.Values("RateLimit-Policy"), "signup", "q")
		if a.code != http.StatusBadRequest || r < 0 || q <= 0 {
			t.Fatalf("POST /v1/users {} = %d with %v, want 400 and the signup policy's headers", a.code, a.header)
		}
		return r, q
	}
	// Each forged address is new: believed, it would start a whole quota
	// (q-1 left after the request). Replaced by nginx, every request
	// spends the one quota of 127.0.0.1.
	forged := []([]string){
		{"X-Forwarded-For", randomTestNet()},
		{"X-Forwarded-For", randomTestNet() + ", " + randomTestNet()},
		{"X-Forwarded-For", randomTestNet(), "X-Forwarded-For", randomTestNet()},
		{"Forwarded", "for=" + randomTestNet()},
	}
	prev, q := remaining()
	for _, h := range forged {
		r, _ := remaining(h...)
		if r >= prev || r == q-1 {
			t.Errorf("sign-up forging %q: signup had %d left after %d (quota %d): the forged address was believed", h, r, prev, q)
		}
		prev = r
	}
}

// policyParam returns the integer parameter param of policy's member of a
// RateLimit or RateLimit-Policy field, or -1.
func policyParam(values []string, policy, param string) int {
	for _, m := range strings.Split(strings.Join(values, ","), ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(m), ";")
		if name != `"`+policy+`"` {
			continue
		}
		for _, p := range strings.Split(params, ";") {
			if v, ok := strings.CutPrefix(p, param+"="); ok {
				if n, err := strconv.Atoi(v); err == nil {
					return n
				}
			}
		}
	}
	return -1
}

// randomTestNet returns a random address of TEST-NET-3 (203.0.113.0/24).
func randomTestNet() string {
	var b [1]byte
	_, _ = rand.Read(b[:])
	return "203.0.113." + strconv.Itoa(int(b[0]))
}

// TestClusterRefusesOpsAddr: cluster.sh up refuses JOURNAL_OPS_ADDR (every
// instance would bind it, and up polls /readyz on each instance's port) with
// one line, exit 1, before starting anything.
func TestClusterRefusesOpsAddr(t *testing.T) {
	nginx := findNginx()
	if nginx == "" {
		t.Skip("nginx is not installed (Debian: apt-get install nginx-light)")
	}
	script, err := filepath.Abs("cluster.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := &cluster{script: script, runDir: dir, env: []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "INSTANCES=1", "NGINX_BIN=" + nginx,
		"RUN_DIR=" + filepath.Join(dir, "cluster"), "JOURNAL_OPS_ADDR=127.0.0.1:9090",
	}}
	out, err := c.sh(t, 30*time.Second, "up")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(out, "JOURNAL_OPS_ADDR is not supported") {
		t.Errorf("cluster.sh up with JOURNAL_OPS_ADDR = %v:\n%s\nwant exit 1 and a line naming JOURNAL_OPS_ADDR", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "cluster", "bin", "journal")); err == nil {
		t.Errorf("cluster.sh built the service before refusing")
	}
}

// testAccounts walks accounts, sessions, safe retries and search through
// nginx, so consecutive requests of one client land on different instances:
// a retried create replays the first response on every instance, a search
// finds a new entry on every instance, a password change refuses the user's
// other tokens on every instance, and a deleted account leaves nothing a new
// account of the same name can see.
func testAccounts(t *testing.T, c *cluster) {
	hc := &http.Client{Timeout: 10 * time.Second}
	do := func(method, path, token, body string, header ...string) answer {
		t.Helper()
		return request(t, hc, method, c.lb+path, token, body, header...)
	}
	want := func(what string, a answer, code int) answer {
		t.Helper()
		if a.code != code {
			t.Fatalf("%s: %d on %s, want %d; %s", what, a.code, a.instance, code, a.body)
		}
		return a
	}
	field := func(a answer, name string) string {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal(a.body, &m); err != nil {
			t.Fatalf("%s: %v", a.body, err)
		}
		s, _ := m[name].(string)
		return s
	}
	// everywhere sends the request until three instances have answered
	// (nginx balances round robin) and checks each answer.
	everywhere := func(what string, send func() answer, check func(answer) bool) {
		t.Helper()
		seen := map[string]bool{}
		for i := 0; len(seen) < 3; i++ {
			if i == 30 {
				t.Fatalf("%s: 30 requests reached only %v", what, seen)
			}
			a := send()
			if !check(a) {
				t.Fatalf("%s on %s: %d %s", what, a.instance, a.code, a.body)
			}
			seen[a.instance] = true
		}
	}
	// refusedEverywhere allows the revocation lag (100 ms by design; 2 s
	// here for a busy machine) before the token must be refused by every
	// instance.
	refusedEverywhere := func(what, token string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for {
			refused := map[string]bool{}
			for range 6 {
				if a := do("GET", "/v1/users/me", token, ""); a.code == http.StatusUnauthorized {
					refused[a.instance] = true
				} else {
					refused = nil
					break
				}
			}
			if len(refused) == 3 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: still accepted by an instance after 2 s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	name := "acct" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	creds := func(pw, token string) string {
		if token == "" { // sign-up: no token name
			return `{"username":"` + name + `","password":"` + pw + `"}`
		}
		return `{"username":"` + name + `","password":"` + pw + `","name":"` + token + `"}`
	}
	want("sign up", do("POST", "/v1/users", "", creds("correct horse battery", "")), http.StatusCreated)
	laptop := field(want("login laptop", do("POST", "/v1/tokens", "", creds("correct horse battery", "laptop")), http.StatusCreated), "token")
	phone := field(want("login phone", do("POST", "/v1/tokens", "", creds("correct horse battery", "phone")), http.StatusCreated), "token")

	// A retried create: one entry, the first response replayed everywhere.
	first := want("create with a key", do("POST", "/v1/entries", laptop, `{"title":"rainy monday"}`, "Idempotency-Key", "k-"+name), http.StatusCreated)
	id := field(first, "id")
	everywhere("the retried create", func() answer {
		return do("POST", "/v1/entries", laptop, `{"title":"rainy monday"}`, "Idempotency-Key", "k-"+name)
	}, func(a answer) bool {
		return a.code == http.StatusCreated && a.header.Get("Idempotent-Replayed") == "true" && field(a, "id") == id
	})
	want("the key with another body", do("POST", "/v1/entries", laptop, `{"title":"sunny"}`, "Idempotency-Key", "k-"+name), http.StatusUnprocessableEntity)

	// A new entry is found by a search on every instance at once.
	want("create", do("POST", "/v1/entries", phone, `{"title":"sunny tuesday"}`), http.StatusCreated)
	everywhere("search", func() answer { return do("GET", "/v1/entries?q=sunny", laptop, "") }, func(a answer) bool {
		return a.code == http.StatusOK && strings.Count(string(a.body), `"title":"sunny tuesday"`) == 1 && !strings.Contains(string(a.body), "rainy")
	})
	everywhere("export", func() answer { return do("GET", "/v1/export", phone, "") }, func(a answer) bool {
		return a.code == http.StatusOK && strings.Count(string(a.body), "\n") == 2
	})

	// Sessions: both listed; the password change revokes the other one.
	everywhere("the sessions", func() answer { return do("GET", "/v1/tokens", laptop, "") }, func(a answer) bool {
		return a.code == http.StatusOK && strings.Contains(string(a.body), `"name":"laptop"`) && strings.Contains(string(a.body), `"name":"phone"`)
	})
	want("password change", do("PUT", "/v1/users/me/password", laptop, `{"current_password":"correct horse battery","new_password":"staple battery horse"}`), http.StatusNoContent)
	refusedEverywhere("the phone's token after the password change", phone)
	everywhere("the laptop's token", func() answer { return do("GET", "/v1/users/me", laptop, "") }, func(a answer) bool { return a.code == http.StatusOK })

	// Delete the account; the name is free, and the new account sees nothing.
	want("delete the account", do("DELETE", "/v1/users/me", laptop, ""), http.StatusNoContent)
	refusedEverywhere("the laptop's token after the account was deleted", laptop)
	want("sign up again", do("POST", "/v1/users", "", creds("another password", "")), http.StatusCreated)
	again := field(want("login again", do("POST", "/v1/tokens", "", creds("another password", "again")), http.StatusCreated), "token")
	everywhere("the new account's entries", func() answer { return do("GET", "/v1/entries", again, "") }, func(a answer) bool {
		return a.code == http.StatusOK && strings.Contains(string(a.body), `"entries":[]`)
	})
	everywhere("the old entry", func() answer { return do("GET", "/v1/entries/"+id, again, "") }, func(a answer) bool { return a.code == http.StatusNotFound })
	everywhere("the old key", func() answer {
		return do("POST", "/v1/entries", again, `{"title":"fresh"}`, "Idempotency-Key", "k-"+name)
	}, func(a answer) bool { return a.code == http.StatusCreated && field(a, "id") != id })
}
