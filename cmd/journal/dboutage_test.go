package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/journalsvc/journal/internal/testenv"
	"github.com/journalsvc/journal/postgres"
)

// Bounds of the database outage test: the design's figures with the
// margin of a fault test (3x), so it does not flake on a busy machine.
const (
	// outageRecovery bounds the time from the database answering again to
	// the service serving writes and /readyz saying "ready" (2 s promised).
	outageRecovery = 3 * 2 * time.Second
	// outageDetect bounds the time from the database failing to /readyz
	// saying "unready": the readiness check's own timeout (2 s), 3x.
	outageDetect = 3 * 2 * time.Second
	// outageRequest bounds one request while the database is down or
	// paused: the client-side query timeout plus pgx's delay before it
	// closes a connection that does not react to a cancel, 3x.
	outageRequest = 3 * (7 * time.Second)
)

// TestDatabaseOutage runs the service on a private PostgreSQL under a
// steady load of creates, updates and reads, and stops (SIGKILL), restarts,
// pauses (SIGSTOP) and resumes the database. While it is down every request
// that needs it gets 503 temporary-reduced-capacity with Retry-After (never
// another 5xx, never a hang) and /readyz says "unready"; within the
// recovery bound of its return the service is ready and serves writes again
// by itself. At the end every acknowledged write is there as acknowledged,
// and every refused one is either absent or whole.
func TestDatabaseOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test on a private PostgreSQL: skipped in -short mode")
	}
	t.Parallel()
	pg := testenv.StartPostgres(t)
	j := startJournal(t, map[string]string{
		"JOURNAL_DATABASE_URL":       pg.URL(),
		"JOURNAL_DATABASE_MAX_CONNS": "8",
		"JOURNAL_RATE_LIMIT_IP":      "off",
		"JOURNAL_RATE_LIMIT_USER":    "off",
		"JOURNAL_RATE_LIMIT_SIGNUP":  "off",
	})
	c := signup(t, j.URL, "olga")
	c.hc = &http.Client{Timeout: outageRequest} // a request hung past it counts as failed

	ready := watchReadiness(t, j.URL)
	l := startOutageLoad(t, c, 6)
	time.Sleep(time.Second)
	if n := l.count(200, 201); n == 0 {
		t.Fatalf("no request succeeded before the outage: %v", l.statuses())
	}

	for _, fault := range []struct {
		name          string
		fail, restore func(testing.TB)
		// refusedWithin bounds the first 503 after the fault: at once for a
		// stopped server (connections refused), after the client-side
		// query timeout for a paused one, which answers nothing.
		refusedWithin time.Duration
	}{
		{"stopped", pg.Kill, pg.Restart, outageDetect},
		{"paused", pg.Pause, pg.Resume, outageRequest},
	} {
		failed := time.Now()
		fault.fail(t)
		if d, ok := ready.waitFor("unready", failed, outageDetect); !ok {
			t.Fatalf("%s: /readyz did not say unready within %v", fault.name, outageDetect)
		} else {
			t.Logf("%s: /readyz unready %v after the fault", fault.name, d.Round(time.Millisecond))
		}
		before := l.count(503)
		refused := testenv.WaitFor(t, fault.refusedWithin, fault.name+": a 503 while the database is down", func() bool { return l.count(503) > before })
		// Nothing hangs: a worker whose request to the database got no
		// answer would send nothing more. So every worker answers a request
		// it sent once a request sent at the fault could have run out of
		// time (the client-side query timeout and a second).
		quiet := failed.Add(postgres.DefaultQueryTimeout + time.Second)
		time.Sleep(time.Until(quiet))
		all := testenv.WaitFor(t, outageRequest, fault.name+": every worker answered while the database is down", func() bool { return l.allAnsweredSince(quiet) })
		t.Logf("%s: first 503 %v after /readyz said unready; every worker answered a request sent %v after the fault within %v",
			fault.name, refused.Round(time.Millisecond), quiet.Sub(failed), all.Round(time.Millisecond))
		fault.restore(t)
		back := time.Now()
		d, ok := ready.waitFor("ready", back, outageRecovery)
		if !ok {
			t.Fatalf("%s: /readyz not ready within %v of the database's return", fault.name, outageRecovery)
		}
		w := waitWrite(t, c, back, outageRecovery)
		t.Logf("%s: ready %v and a write served %v after the database returned", fault.name, d.Round(time.Millisecond), w.Round(time.Millisecond))
		// Past recovery, the load runs clean again.
		mark := l.statuses()
		time.Sleep(time.Second)
		if got := l.since(mark); got[503] > 0 || got[0] > 0 {
			t.Errorf("%s: a second after recovery, still failures: %v", fault.name, got)
		}
	}
	l.stop()
	t.Logf("statuses over the run: %v", l.statuses())
	if l.count(503) == 0 {
		t.Errorf("no 503 during the outages: the test did not exercise them")
	}
	for status, n := range l.statuses() {
		if status != 200 && status != 201 && status != 503 {
			t.Errorf("%d answers with status %d (first: %s)", n, status, l.first(status))
		}
	}
	if bad := l.bad503.Load(); bad > 0 {
		t.Errorf("%d 503 answers without Retry-After or without the temporary-reduced-capacity type (first: %s)", bad, l.first(-503))
	}
	l.checkLedger(t, c)
}

// readiness polls /readyz and keeps every status it saw, with its time.
type readiness struct {
	mu   sync.Mutex
	seen []readyAt
}

type readyAt struct {
	at     time.Time
	status string // ready, unready, ... or "error"
}

func watchReadiness(tb testing.TB, base string) *readiness {
	r := &readiness{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	tb.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		hc := &http.Client{Timeout: 10 * time.Second}
		for ctx.Err() == nil {
			st := "error"
			if resp, err := hc.Get(base + "/readyz"); err == nil {
				var body struct {
					Status string `json:"status"`
				}
				_ = json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				st = body.Status
			}
			r.mu.Lock()
			r.seen = append(r.seen, readyAt{time.Now(), st})
			r.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return r
}

// waitFor waits up to limit from since until a poll that started after
// since saw status, and returns when it was seen, relative to since.
func (r *readiness) waitFor(status string, since time.Time, limit time.Duration) (time.Duration, bool) {
	for time.Since(since) < limit+time.Second {
		r.mu.Lock()
		for _, s := range r.seen {
			if s.at.After(since) && s.status == status {
				r.mu.Unlock()
				d := s.at.Sub(since)
				return d, d <= limit
			}
		}
		r.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	return 0, false
}

// waitWrite creates entries until one is created, and returns how long
// after since that was; it fails the test after limit.
func waitWrite(tb testing.TB, c *apiClient, since time.Time, limit time.Duration) time.Duration {
	tb.Helper()
	for {
		code := outageCall(c, "POST", "/v1/entries", map[string]string{"title": "probe", "body": "after the outage"}).Code
		if code == http.StatusCreated {
			return time.Since(since)
		}
		if time.Since(since) > limit {
			tb.Fatalf("no write served within %v of the database's return (last status %d)", limit, code)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// outageCall sends one request of c without failing the test: a transport
// error (the request having hung past c's timeout included) is status 0,
// with the error as the body.
func outageCall(c *apiClient, method, path string, body any) apiResponse {
	r, err := c.send(method, path, body)
	if err != nil {
		return apiResponse{Body: []byte(err.Error())}
	}
	return r
}

// outageLoad is a steady load of one user's creates, updates and reads, by
// workers that each own the entries they create, with a ledger of what was
// acknowledged and what was refused.
type outageLoad struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	byStatus map[int]int
	firsts   map[int]string // status (or -503: a malformed 503) -> first answer
	ledgers  []*ledger
	// answered[w] is the start (Unix ns) of worker w's latest answered
	// request.
	answered []atomic.Int64

	bad503 atomic.Int64
}

// ledger is one worker's record. An entry's acked body is the last one a
// 2xx confirmed; unsure holds the bodies of refused updates since then,
// which the database may or may not have applied whole.
type ledger struct {
	acked   map[string]string   // id -> body
	unsure  map[string][]string // id -> bodies of refused updates since the last ack
	refused []string            // titles of refused creates
}

func startOutageLoad(tb testing.TB, c *apiClient, workers int) *outageLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &outageLoad{cancel: cancel, byStatus: map[int]int{}, firsts: map[int]string{}, answered: make([]atomic.Int64, workers)}
	tb.Cleanup(l.stop)
	for w := range workers {
		lg := &ledger{acked: map[string]string{}, unsure: map[string][]string{}}
		l.ledgers = append(l.ledgers, lg)
		rng := rand.New(rand.NewPCG(uint64(w), 7))
		l.wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				start := time.Now()
				if l.step(c, w, n, rng, lg) != 0 {
					l.answered[w].Store(start.UnixNano())
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	return l
}

// step sends one request of worker w and returns its status.
func (l *outageLoad) step(c *apiClient, w, n int, rng *rand.Rand, lg *ledger) int {
	var ids []string
	for id := range lg.acked {
		ids = append(ids, id)
	}
	var r apiResponse
	switch op := rng.IntN(4); {
	case op == 0 || len(ids) == 0:
		title := fmt.Sprintf("w%d-n%d", w, n)
		r = outageCall(c, "POST", "/v1/entries", map[string]string{"title": title, "body": "body of " + title})
		var e entryJSON
		switch {
		case r.Code == http.StatusCreated && json.Unmarshal(r.Body, &e) == nil:
			lg.acked[e.ID] = "body of " + title
		case r.Code == http.StatusCreated:
		default:
			lg.refused = append(lg.refused, title)
		}
	case op == 1:
		id := ids[rng.IntN(len(ids))]
		newBody := fmt.Sprintf("w%d-n%d edited", w, n)
		r = outageCall(c, "PATCH", "/v1/entries/"+id, map[string]string{"body": newBody})
		if r.Code == http.StatusOK {
			lg.acked[id] = newBody
			delete(lg.unsure, id)
		} else {
			lg.unsure[id] = append(lg.unsure[id], newBody)
		}
	case op == 2:
		r = outageCall(c, "GET", "/v1/entries/"+ids[rng.IntN(len(ids))], nil)
	default:
		r = outageCall(c, "GET", "/v1/entries?limit=5", nil)
	}
	l.record(r)
	return r.Code
}

// allAnsweredSince reports whether every worker has an answer to a request
// it sent after t.
func (l *outageLoad) allAnsweredSince(t time.Time) bool {
	for i := range l.answered {
		if l.answered[i].Load() <= t.UnixNano() {
			return false
		}
	}
	return true
}

func (l *outageLoad) record(r apiResponse) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.byStatus[r.Code]++
	if _, ok := l.firsts[r.Code]; !ok {
		l.firsts[r.Code] = string(r.Body)
	}
	if r.Code == http.StatusServiceUnavailable &&
		(r.Header.Get("Retry-After") == "" || !bytes.Contains(r.Body, []byte("temporary-reduced-capacity"))) {
		l.bad503.Add(1)
		if _, ok := l.firsts[-503]; !ok {
			l.firsts[-503] = fmt.Sprintf("Retry-After %q, %s", r.Header.Get("Retry-After"), r.Body)
		}
	}
}

func (l *outageLoad) stop() {
	l.cancel()
	l.wg.Wait()
}

func (l *outageLoad) statuses() map[int]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[int]int, len(l.byStatus))
	for k, v := range l.byStatus {
		out[k] = v
	}
	return out
}

// since returns the answers by status since mark, an earlier statuses().
func (l *outageLoad) since(mark map[int]int) map[int]int {
	out := map[int]int{}
	for k, v := range l.statuses() {
		if d := v - mark[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

func (l *outageLoad) count(statuses ...int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range statuses {
		n += l.byStatus[s]
	}
	return n
}

func (l *outageLoad) first(status int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.firsts[status]
}

// checkLedger reads every entry of the user and checks the ledgers: every
// acknowledged create is there with its last acknowledged body (or the body
// of a refused update since, applied whole); every refused create is absent
// or whole.
func (l *outageLoad) checkLedger(t *testing.T, c *apiClient) {
	t.Helper()
	type stored struct{ Title, Body string }
	all := map[string]stored{}
	byTitle := map[string][]stored{}
	cursor := ""
	for {
		path := "/v1/entries?limit=100"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := c.do("GET", path, nil)
		expect(t, "GET "+path, r, http.StatusOK)
		page := decodeJSON[pageJSON](t, r)
		for _, e := range page.Entries {
			all[e.ID] = stored{e.Title, e.Body}
			byTitle[e.Title] = append(byTitle[e.Title], stored{e.Title, e.Body})
		}
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
	}
	acked, refused := 0, 0
	for _, lg := range l.ledgers {
		for id, body := range lg.acked {
			acked++
			got, ok := all[id]
			if !ok {
				t.Errorf("acknowledged entry %s is lost", id)
				continue
			}
			okBody := got.Body == body
			for _, b := range lg.unsure[id] {
				okBody = okBody || got.Body == b
			}
			if !okBody {
				t.Errorf("entry %s has body %q, want the acknowledged %q or a refused update's whole body %q", id, got.Body, body, lg.unsure[id])
			}
		}
		for _, title := range lg.refused {
			refused++
			for _, e := range byTitle[title] {
				if e.Body != "body of "+title {
					t.Errorf("refused create %q was applied in part: body %q", title, e.Body)
				}
			}
			if len(byTitle[title]) > 1 {
				t.Errorf("refused create %q is stored %d times", title, len(byTitle[title]))
			}
		}
	}
	t.Logf("ledger: %d acknowledged creates all present, %d refused creates absent or whole", acked, refused)
}
