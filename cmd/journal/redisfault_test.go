package main

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/journalsvc/journal/internal/testenv"
)

// The tests of this file break the Redis of a running instance (killed,
// down at start-up, paused): requests keep being answered, in bounded time,
// and the instance recovers by itself when Redis returns.

// TestRedisKilledUnderService kills the service's Redis: entry reads still
// answer 200 (limiter in its local fallback, cache reading the database),
// login fails closed with 503, no request hangs; after Redis returns the
// limiter and the readiness check recover.
func TestRedisKilledUnderService(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	env := sharedEnv(t, r.URL(), nil)
	delete(env, "JOURNAL_REDIS_TIMEOUT") // production deadline: 50ms
	j := startJournal(t, env)
	c := signup(t, j.URL, "alice")
	created := c.do("POST", "/v1/entries", map[string]string{"title": "t", "body": "b"})
	expect(t, "POST /v1/entries", created, http.StatusCreated)
	id := decodeJSON[entryJSON](t, created).ID
	expect(t, "GET before the outage", c.do("GET", "/v1/entries/"+id, nil), http.StatusOK)

	r.Kill(t)
	var slowest time.Duration
	var degraded bool
	for range 30 {
		start := time.Now()
		resp := c.do("GET", "/v1/entries/"+id, nil)
		if d := time.Since(start); d > slowest {
			slowest = d
		}
		expect(t, "GET during the outage", resp, http.StatusOK)
		if strings.Contains(resp.Header.Get("RateLimit"), ";journal-degraded") {
			degraded = true
		}
	}
	if !degraded {
		t.Errorf("no response during the outage was marked ;journal-degraded")
	}
	if slowest > time.Second { // deadline + DB time; generous margin under -race
		t.Errorf("slowest GET during the outage took %v", slowest)
	}
	login := newAPIClient(t, j.URL).do("POST", "/v1/tokens", map[string]string{"username": "alice", "password": "correct horse battery"})
	expect(t, "login during the outage (fails closed)", login, http.StatusServiceUnavailable)
	if login.Header.Get("Retry-After") == "" || !strings.Contains(string(login.Body), "temporary-reduced-capacity") {
		t.Errorf("login 503 lacks Retry-After or problem type: %v %s", login.Header, login.Body)
	}
	ready := c.do("GET", "/readyz", nil)
	expect(t, "/readyz during the outage", ready, http.StatusOK)
	if !strings.Contains(string(ready.Body), `"degraded"`) {
		t.Errorf("/readyz during the outage = %s, want degraded", ready.Body)
	}

	r.Restart(t)
	recovered := time.Now()
	for {
		resp := c.do("GET", "/v1/entries/"+id, nil)
		expect(t, "GET after Redis returned", resp, http.StatusOK)
		if !strings.Contains(resp.Header.Get("RateLimit"), "journal-degraded") {
			break
		}
		if time.Since(recovered) > 5*time.Second {
			t.Fatalf("still degraded 5s after Redis returned: %s", resp.Header.Get("RateLimit"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("limiter recovered %v after Redis returned", time.Since(recovered))
	login = newAPIClient(t, j.URL).do("POST", "/v1/tokens", map[string]string{"username": "alice", "password": "correct horse battery"})
	expect(t, "login after Redis returned", login, http.StatusCreated)
}

// TestRedisDownAtStartup: the service starts without Redis (readiness
// "degraded"), serves, and connects when Redis comes up.
func TestRedisDownAtStartup(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	r.Kill(t)
	j := startJournal(t, sharedEnv(t, r.URL(), nil))
	ready := newAPIClient(t, j.URL).do("GET", "/readyz", nil)
	if ready.Code != http.StatusOK || !strings.Contains(string(ready.Body), `"degraded"`) {
		t.Fatalf("/readyz with Redis down = %d %s, want 200 degraded", ready.Code, ready.Body)
	}
	c := newAPIClient(t, j.URL)
	expect(t, "signup with Redis down (fails local)", c.do("POST", "/v1/users",
		map[string]string{"username": "bob", "password": "correct horse battery"}), http.StatusCreated)
	r.Restart(t)
	if _, ok := testenv.Poll(10*time.Second, 50*time.Millisecond, func() bool {
		ready = c.do("GET", "/readyz", nil)
		return ready.Code == http.StatusOK && strings.Contains(string(ready.Body), `"ready"`)
	}); !ok {
		t.Fatalf("/readyz not ready 10s after Redis came up: %s", ready.Body)
	}
	c = signup(t, j.URL, "carol") // login works once connected
	expect(t, "GET /v1/users/me", c.do("GET", "/v1/users/me", nil), http.StatusOK)
}

// TestRedisBudgetBoundsRequest pauses Redis (it answers nothing) and sends one
// authenticated entry read, which makes four Redis calls (IP decision, token
// lookup, user decision, entry read): together they wait at most
// JOURNAL_REDIS_TIMEOUT, not four times it.
func TestRedisBudgetBoundsRequest(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	const budget = 500 * time.Millisecond
	// Limits whose rate returns a unit every microsecond: while Redis is
	// paused (and for a moment after it resumes) the limiter counts it as
	// slow and grants only what the rate returns (see "What degraded
	// decisions admit" in the README), and two requests a few milliseconds
	// apart must both pass; this test is about time, not quota.
	env := sharedEnv(t, r.URL(), map[string]string{"JOURNAL_REDIS_TIMEOUT": budget.String(),
		"JOURNAL_RATE_LIMIT_IP": "1000000/1s", "JOURNAL_RATE_LIMIT_USER": "1000000/1s"})
	j := startJournal(t, env)
	c := signup(t, j.URL, "alice")
	created := c.do("POST", "/v1/entries", map[string]string{"title": "t"})
	expect(t, "POST /v1/entries", created, http.StatusCreated)
	id := decodeJSON[entryJSON](t, created).ID

	r.Pause(t)
	start := time.Now()
	expect(t, "GET with Redis paused", c.do("GET", "/v1/entries/"+id, nil), http.StatusOK)
	took := time.Since(start)
	t.Logf("authenticated GET with Redis paused took %v (budget %v)", took, budget)
	// Budget + database time + -race slack: a request waits on Redis once,
	// for its whole budget, then reads the database; a second budget wait
	// (e.g. behind an outbox row lock) would take about twice the budget, and
	// without the shared budget the four calls would wait about 4 x the
	// budget.
	if took > budget+300*time.Millisecond {
		t.Errorf("GET with Redis paused took %v, want about the %v budget", took, budget)
	}
	// Writes too: the invalidation after the commit must not wait for Redis
	// beyond the budget (the change stays in the outbox).
	for i, method := range []string{"PATCH", "POST"} {
		start = time.Now()
		path, want := "/v1/entries/"+id, http.StatusOK
		if method == "POST" {
			path, want = "/v1/entries", http.StatusCreated
		}
		expect(t, method+" with Redis paused", c.do(method, path, map[string]string{"title": "during " + strconv.Itoa(i)}), want)
		took = time.Since(start)
		t.Logf("%s with Redis paused took %v (budget %v)", method, took, budget)
		if took > budget+300*time.Millisecond {
			t.Errorf("%s with Redis paused took %v, want about the %v budget", method, took, budget)
		}
	}
	r.Resume(t)
	// After Redis returns, every read for a second shows the write made
	// during the pause: the outbox is replayed before the cache is trusted.
	for until := time.Now().Add(time.Second); time.Now().Before(until); time.Sleep(50 * time.Millisecond) {
		resp := c.do("GET", "/v1/entries/"+id, nil)
		expect(t, "GET after Redis returned", resp, http.StatusOK)
		if got := decodeJSON[entryJSON](t, resp); got.Title != "during 0" {
			t.Fatalf("after Redis returned, GET shows title %q, want %q", got.Title, "during 0")
		}
	}
}
