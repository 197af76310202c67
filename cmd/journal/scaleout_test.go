package main

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/journalsvc/journal/internal/testenv"
)

// The tests of this file run several instances sharing one Redis, and flood
// them from one client IP: the instances admit the limit between them, not
// each.

// TestThreeInstancesShareOneLimit is the seed scenario: one client IP sends a
// flood spread over 3 instances sharing Redis; exactly the limit is admitted
// across them, and every 429 carries correct headers.
func TestThreeInstancesShareOneLimit(t *testing.T) {
	t.Parallel()
	env := sharedEnv(t, "", map[string]string{"JOURNAL_RATE_LIMIT_IP": "100/1h", "JOURNAL_RATE_LIMIT_LEASE": "0"})
	insts := startJournals(t, 3, env)
	f := floodIP(t, insts, 150, "", func(h http.Header) string {
		if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 || ra > 36 {
			return "Retry-After " + h.Get("Retry-After")
		}
		if got := h.Get("RateLimit-Policy"); got != `"ip";q=100;w=3600` {
			return "RateLimit-Policy " + got
		}
		if got := h.Get("RateLimit"); !strings.HasPrefix(got, `"ip";r=0;t=`) {
			return "RateLimit " + got
		}
		if h.Get("X-RateLimit-Limit") != "100" || h.Get("X-RateLimit-Remaining") != "0" {
			return "X-RateLimit " + h.Get("X-RateLimit-Limit") + "/" + h.Get("X-RateLimit-Remaining")
		}
		return ""
	})
	if f.degraded != 0 {
		t.Errorf("%d decisions were degraded (decided without Redis), so exactness cannot hold", f.degraded)
	}
	if got, want := f.admitted(), int64(100); got != want {
		t.Errorf("admitted %d of 150 across 3 instances, want exactly %d (denied %d)", got, want, f.denied)
	}
	// The 101st request, on any instance, is refused.
	resp, err := http.Get(insts[1].URL + "/v1/entries")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("request after the limit: %s, want 429", resp.Status)
	}
}

// redisCounters reads what a cold start shows in Redis: connections
// accepted so far and the scripts sent in full (EVAL: the script was not
// loaded yet).
func redisCounters(tb testing.TB, c rueidis.Client) (conns, evals int64) {
	tb.Helper()
	info, err := c.Do(context.Background(), c.B().Info().Section("all").Build()).ToString()
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "total_connections_received:"); ok {
			conns, _ = strconv.ParseInt(v, 10, 64)
		}
		if v, ok := strings.CutPrefix(line, "cmdstat_eval:calls="); ok {
			v, _, _ = strings.Cut(v, ",")
			evals, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return conns, evals
}

// TestNoColdStart: three instances flood-tested right after they report
// ready, and again right after one of them restarted, admit exactly the
// limit, with no decision degraded; the flood dials no connection to Redis
// and sends no script in full: readiness waited for the limiter to be warm.
func TestNoColdStart(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{r.Addr()}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	env := sharedEnv(t, r.URL(), map[string]string{
		"JOURNAL_RATE_LIMIT_LEASE": "0", // exact mode: the first decisions are the point
		"JOURNAL_RATE_LIMIT_IP":    "60/1h",
		"JOURNAL_TRUSTED_PROXIES":  "127.0.0.1/32",
	})
	var insts []*journalInstance
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 3 { // started together, as cluster.sh up does
		wg.Go(func() {
			j := startJournal(t, env)
			mu.Lock()
			insts = append(insts, j)
			mu.Unlock()
		})
	}
	wg.Wait()
	flood := func(what, client string) {
		t.Helper()
		conns, evals := redisCounters(t, c)
		f := floodIP(t, insts, 300, client, nil)
		admitted, degraded := f.admitted(), f.degraded
		conns2, evals2 := redisCounters(t, c)
		t.Logf("%s: admitted %d, degraded %d; Redis accepted %d connections and %d EVALs meanwhile", what, admitted, degraded, conns2-conns, evals2-evals)
		if admitted != 60 || degraded != 0 {
			t.Errorf("%s: admitted %d of 300 (%d degraded), want exactly 60 and none degraded", what, admitted, degraded)
		}
		if conns2 != conns || evals2 != evals {
			t.Errorf("%s: the flood made Redis accept %d connections and %d EVALs: the instances were not warm when ready", what, conns2-conns, evals2-evals)
		}
	}
	flood("after start-up", "198.51.100.1")

	if err := insts[0].result(); err != nil {
		t.Fatal(err)
	}
	insts[0] = startJournal(t, env)
	flood("after a restart", "198.51.100.2")
}

// TestLeasesNeverOverAdmit: with leased quotas (the default), three
// instances flooded by one client never admit more than the limit, not in the
// flood and not after every lease lapsed and went back. A process starved of
// CPU may see its Redis calls time out (a connection's 500 ms write deadline);
// those decisions are degraded as Redis slow, which grants no share of the
// quota but at most one unit per instance (see "What degraded decisions
// admit" in the README): then the bound is the limit plus one per instance.
func TestLeasesNeverOverAdmit(t *testing.T) {
	t.Parallel()
	env := sharedEnv(t, "", map[string]string{
		"JOURNAL_RATE_LIMIT_IP":    "60/1h",
		"JOURNAL_RATE_LIMIT_LEASE": "300ms",
		"JOURNAL_TRUSTED_PROXIES":  "127.0.0.1/32",
	})
	insts := startJournals(t, 3, env)
	bound := func(degraded int64) int64 {
		if degraded > 0 {
			return 60 + int64(len(insts))
		}
		return 60
	}
	f := floodIP(t, insts, 300, "198.51.100.3", nil)
	first, deg1 := f.admitted(), f.degraded
	if first > bound(deg1) {
		t.Fatalf("flood: admitted %d (%d degraded), want at most %d", first, deg1, bound(deg1))
	}
	time.Sleep(time.Second) // every lease lapses and its rest goes back
	f = floodIP(t, insts, 300, "198.51.100.3", nil)
	second, deg2 := f.admitted(), f.degraded
	t.Logf("admitted %d in the flood, %d once the leases had lapsed; %d and %d decisions degraded", first, second, deg1, deg2)
	if first+second > bound(deg1+deg2) {
		t.Errorf("admitted %d, then %d once the leases lapsed (%d degraded): more than %d", first, second, deg1+deg2, bound(deg1+deg2))
	}
}
