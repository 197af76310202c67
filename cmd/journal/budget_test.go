package main

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/journalsvc/journal/internal/testenv"
)

// TestRedisBudgetBoundsRequest pauses Redis (it answers nothing) and sends one
// authenticated entry read, which makes four Redis calls (IP decision, token
// lookup, user decision, entry read): together they wait at most
// JOURNAL_REDIS_TIMEOUT, not four times it.
func TestRedisBudgetBoundsRequest(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	const budget = 500 * time.Millisecond
	// Limits whose rate returns a unit every few milliseconds: while Redis
	// is paused and the breaker still closed, the limiter counts Redis as
	// slow and grants only what the rate returns (see "What degraded
	// decisions admit" in the README); this test is about time, not quota.
	env := sharedEnv(t, r.URL(), map[string]string{"JOURNAL_REDIS_TIMEOUT": budget.String(),
		"JOURNAL_RATE_LIMIT_IP": "1000000/1h", "JOURNAL_RATE_LIMIT_USER": "1000000/1h"})
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
		if got := decodeJSON[entryJSON](t, c.do("GET", "/v1/entries/"+id, nil)); got.Title != "during 0" {
			t.Fatalf("after Redis returned, GET shows title %q, want %q", got.Title, "during 0")
		}
	}
}
