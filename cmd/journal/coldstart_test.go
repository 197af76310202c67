package main

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/journalsvc/journal/internal/testenv"
)

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

// floodFrom sends n concurrent unauthenticated GET /v1/entries spread over
// insts, all from the client address client (the instances trust loopback as
// a proxy), and returns how many the ip policy admitted (401) and how many
// decisions were degraded.
func floodFrom(tb testing.TB, insts []*journalInstance, n int, client string) (admitted, degraded int64) {
	tb.Helper()
	var ok, deg atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			req, _ := http.NewRequest("GET", insts[i%len(insts)].URL+"/v1/entries", nil)
			req.Header.Set("X-Forwarded-For", client)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				tb.Error(err)
				return
			}
			resp.Body.Close()
			if strings.Contains(resp.Header.Get("RateLimit"), "journal-degraded") {
				deg.Add(1)
			}
			switch resp.StatusCode {
			case http.StatusUnauthorized:
				ok.Add(1)
			case http.StatusTooManyRequests:
			default:
				tb.Errorf("flood: status %s", resp.Status)
			}
		})
	}
	close(start)
	wg.Wait()
	return ok.Load(), deg.Load()
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
		admitted, degraded := floodFrom(t, insts, 300, client)
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
	env := sharedEnv(t, "redis://"+testenv.RedisAddr(t), map[string]string{
		"JOURNAL_RATE_LIMIT_IP":    "60/1h",
		"JOURNAL_RATE_LIMIT_LEASE": "300ms",
		"JOURNAL_TRUSTED_PROXIES":  "127.0.0.1/32",
	})
	var insts []*journalInstance
	for range 3 {
		insts = append(insts, startJournal(t, env))
	}
	bound := func(degraded int64) int64 {
		if degraded > 0 {
			return 60 + int64(len(insts))
		}
		return 60
	}
	first, deg1 := floodFrom(t, insts, 300, "198.51.100.3")
	if first > bound(deg1) {
		t.Fatalf("flood: admitted %d (%d degraded), want at most %d", first, deg1, bound(deg1))
	}
	time.Sleep(time.Second) // every lease lapses and its rest goes back
	second, deg2 := floodFrom(t, insts, 300, "198.51.100.3")
	t.Logf("admitted %d in the flood, %d once the leases had lapsed; %d and %d decisions degraded", first, second, deg1, deg2)
	if first+second > bound(deg1+deg2) {
		t.Errorf("admitted %d, then %d once the leases lapsed (%d degraded): more than %d", first, second, deg1+deg2, bound(deg1+deg2))
	}
}
