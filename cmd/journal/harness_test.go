package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/journalsvc/journal/internal/testenv"
)

// env returns a getenv reading from m.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// logSink collects run's JSON log lines (up to a bound, then it drops them)
// and reports the address of the first "listening" line.
type logSink struct {
	mu      sync.Mutex
	buf     bytes.Buffer // complete and partial lines, bounded
	partial []byte
	addr    chan string
	opsAddr string // of the listening line, "" without JOURNAL_OPS_ADDR
	found   bool
}

const logSinkMax = 1 << 20

func newLogSink() *logSink { return &logSink{addr: make(chan string, 1)} }

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.buf.Len() < logSinkMax {
		s.buf.Write(p)
	}
	if s.found {
		return len(p), nil
	}
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		line := s.partial[:i]
		s.partial = s.partial[i+1:]
		var rec struct {
			Msg     string `json:"msg"`
			Addr    string `json:"addr"`
			OpsAddr string `json:"ops_addr"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "listening" && rec.Addr != "" {
			s.found, s.opsAddr = true, rec.OpsAddr
			s.partial = nil
			s.addr <- rec.Addr
			break
		}
	}
	return len(p), nil
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// journalInstance is one run() serving in-process on a loopback port.
type journalInstance struct {
	Addr string // host:port
	URL  string // http://host:port
	// OpsURL is http://host:port of the operations listener
	// (JOURNAL_OPS_ADDR), which serves /readyz; URL when there is none.
	OpsURL string
	logs   *logSink
	stop   context.CancelFunc
	done   chan error // run's result, once
	// result stops the instance and returns run's result (every call).
	result func() error
	// stopped is set once the test has reported that run returned, so
	// that Cleanup does not report it again.
	stopped bool
}

// startJournal calls run on 127.0.0.1:0 with the environment vars (on top of
// a SQLite file in a temporary directory and no shutdown drain) and extra
// args, waits for the listening line and for /readyz (on the operations
// listener when vars set JOURNAL_OPS_ADDR) to answer 200, and stops
// it at Cleanup, failing the test if run does not return nil.
func startJournal(tb testing.TB, vars map[string]string, args ...string) *journalInstance {
	tb.Helper()
	return startJournalWith(tb, hooks{}, vars, args...)
}

// startJournalWith is startJournal with run's hooks replaced by h.
func startJournalWith(tb testing.TB, h hooks, vars map[string]string, args ...string) *journalInstance {
	tb.Helper()
	j := launch(tb, h, vars, append([]string{"-addr", "127.0.0.1:0"}, args...))
	j.waitListening(tb)
	j.waitReady(tb, j.OpsURL)
	return j
}

// waitListening waits for the listening line and sets Addr, URL and
// OpsURL. It fails the test if run returns first or after 30 seconds.
func (j *journalInstance) waitListening(tb testing.TB) {
	tb.Helper()
	select {
	case j.Addr = <-j.logs.addr:
	case err := <-j.done:
		j.stopped = true
		tb.Fatalf("run returned %v before listening; logs:\n%s", err, tail(j.logs.String(), 30))
	case <-time.After(30 * time.Second):
		tb.Fatalf("no listening line within 30s; logs:\n%s", tail(j.logs.String(), 30))
	}
	j.URL, j.OpsURL = "http://"+j.Addr, "http://"+j.Addr
	j.logs.mu.Lock()
	if j.logs.opsAddr != "" {
		j.OpsURL = "http://" + j.logs.opsAddr
	}
	j.logs.mu.Unlock()
}

// launch calls runWith with h in a goroutine, with the environment vars (on
// top of a SQLite file in a temporary directory and no shutdown drain) and
// args, and stops it at Cleanup, failing the test if run does not return
// nil. It neither learns the address nor waits for readiness: the caller
// does.
func launch(tb testing.TB, h hooks, vars map[string]string, args []string) *journalInstance {
	tb.Helper()
	envm := map[string]string{
		"JOURNAL_DATABASE_URL":   "sqlite:" + filepath.Join(tb.TempDir(), "journal.db"),
		"JOURNAL_SHUTDOWN_DRAIN": "0s",
	}
	for k, v := range vars {
		envm[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	j := &journalInstance{logs: newLogSink(), stop: cancel, done: make(chan error, 1)}
	j.result = func() error {
		cancel()
		select {
		case err := <-j.done:
			j.done <- err // for the next caller
			return err
		case <-time.After(30 * time.Second):
			return errors.New("run did not return within 30s of cancellation")
		}
	}
	go func() { j.done <- runWith(ctx, args, env(envm), io.Discard, j.logs, h) }()
	tb.Cleanup(func() {
		if j.stopped {
			return
		}
		if err := j.result(); err != nil {
			tb.Errorf("run returned %v at cleanup; logs:\n%s", err, tail(j.logs.String(), 30))
		}
	})
	return j
}

// waitReady polls base's /readyz until it answers 200. It fails the test if
// run returns first or after 60 seconds.
func (j *journalInstance) waitReady(tb testing.TB, base string) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, _, err := get(base + "/readyz")
		if err == nil && code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("/readyz not 200 within 60s (last %d, %v); logs:\n%s", code, err, tail(j.logs.String(), 30))
		}
		select {
		case err := <-j.done:
			j.stopped = true
			tb.Fatalf("run returned %v before ready; logs:\n%s", err, tail(j.logs.String(), 30))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// apiClient speaks JSON to one instance, optionally with a bearer token.
type apiClient struct {
	tb    testing.TB
	base  string
	token string
	hc    *http.Client
}

func newAPIClient(tb testing.TB, base string) *apiClient {
	return &apiClient{tb: tb, base: base, hc: &http.Client{Timeout: 30 * time.Second}}
}

// apiResponse is a fully read response.
type apiResponse struct {
	Code   int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a new T, failing the test if it does not decode.
func decodeJSON[T any](tb testing.TB, r apiResponse) T {
	tb.Helper()
	var v T
	if err := json.Unmarshal(r.Body, &v); err != nil {
		tb.Fatalf("decode %T from %q: %v", v, r.Body, err)
	}
	return v
}

// do sends method path with body (JSON-encoded unless it is a string or nil)
// and extra headers given as name, value pairs, failing the test if it gets
// no response.
func (c *apiClient) do(method, path string, body any, headers ...string) apiResponse {
	c.tb.Helper()
	r, err := c.send(method, path, body, headers...)
	if err != nil {
		c.tb.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// send is do returning an error instead of failing the test: for load
// goroutines, and for requests that a fault may leave without an answer.
func (c *apiClient) send(method, path string, body any, headers ...string) (apiResponse, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return apiResponse{}, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return apiResponse{}, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return apiResponse{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return apiResponse{}, fmt.Errorf("read body: %w", err)
	}
	return apiResponse{Code: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// on returns a client of the same user (token and connections) on the
// instance at base.
func (c *apiClient) on(base string) *apiClient {
	onBase := *c
	onBase.base = base
	return &onBase
}

// expect fails the test unless r has the status code want.
func expect(tb testing.TB, what string, r apiResponse, want int) {
	tb.Helper()
	if r.Code != want {
		tb.Fatalf("%s: status %d, want %d; body %s", what, r.Code, want, r.Body)
	}
}

// signup creates a user and logs in, returning a client holding its token.
func signup(tb testing.TB, base, username string) *apiClient {
	tb.Helper()
	c := newAPIClient(tb, base)
	creds := map[string]string{"username": username, "password": "correct horse battery"}
	expect(tb, "POST /v1/users", c.do("POST", "/v1/users", creds), http.StatusCreated)
	r := c.do("POST", "/v1/tokens", creds)
	expect(tb, "POST /v1/tokens", r, http.StatusCreated)
	c.token = decodeJSON[struct {
		Token string `json:"token"`
	}](tb, r).Token
	if c.token == "" {
		tb.Fatalf("POST /v1/tokens gave no token: %s", r.Body)
	}
	return c
}

// sharedEnv is the environment of instances sharing one PostgreSQL database
// and one Redis under a fresh key prefix: the Redis at redisURL, or with
// redisURL "" the test Redis (testenv.RedisAddr).
func sharedEnv(tb testing.TB, redisURL string, extra map[string]string) map[string]string {
	tb.Helper()
	if redisURL == "" {
		redisURL = "redis://" + testenv.RedisAddr(tb)
	}
	m := map[string]string{
		"JOURNAL_DATABASE_URL": testenv.PostgresURL(tb),
		"JOURNAL_REDIS_URL":    redisURL,
		"JOURNAL_REDIS_PREFIX": testenv.RandomPrefix(),
		// Under -race on 2 shared cores, with other packages' tests running, a
		// Redis reply can take over a second (seen in CI). A missed deadline
		// makes the decision degraded (local fallback), which is by design but
		// not what these tests are about; the fault tests use the default.
		"JOURNAL_REDIS_TIMEOUT": "5s",
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// startJournals starts n instances with the same environment, one after
// the other (see startJournal).
func startJournals(tb testing.TB, n int, vars map[string]string) []*journalInstance {
	tb.Helper()
	insts := make([]*journalInstance, n)
	for i := range insts {
		insts[i] = startJournal(tb, vars)
	}
	return insts
}

// floodResult tallies a flood of one client IP over several instances.
type floodResult struct {
	admittedBy []int64 // admitted per instance
	denied     int64   // 429s
	degraded   int64   // responses whose RateLimit says ;journal-degraded
}

func (f floodResult) admitted() int64 {
	var n int64
	for _, a := range f.admittedBy {
		n += a
	}
	return n
}

// floodIP sends n concurrent unauthenticated GET /v1/entries, released at
// once and spread round-robin over insts, all from one client IP: client,
// sent as X-Forwarded-For (the instances must trust loopback as a proxy), or
// with client "" the test's own loopback address. A 401 is admitted (the IP
// limit let it through to authentication), a 429 denied; check429, if set,
// inspects each 429's headers and returns what is wrong, or "". The test
// fails on a transport error, any other status or a wrong 429, and if an
// instance answered nothing (the flood did not reach it).
func floodIP(tb testing.TB, insts []*journalInstance, n int, client string, check429 func(http.Header) string) floodResult {
	tb.Helper()
	answered, admitted := make([]atomic.Int64, len(insts)), make([]atomic.Int64, len(insts))
	var denied, degraded, bad atomic.Int64
	var lastBad atomic.Value
	wrong := func(msg string) {
		bad.Add(1)
		lastBad.Store(msg)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		in := i % len(insts)
		wg.Go(func() {
			<-start
			req, _ := http.NewRequest("GET", insts[in].URL+"/v1/entries", nil)
			if client != "" {
				req.Header.Set("X-Forwarded-For", client)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				wrong(err.Error())
				return
			}
			resp.Body.Close()
			answered[in].Add(1)
			if strings.Contains(resp.Header.Get("RateLimit"), "journal-degraded") {
				degraded.Add(1)
			}
			switch resp.StatusCode {
			case http.StatusUnauthorized:
				admitted[in].Add(1)
			case http.StatusTooManyRequests:
				denied.Add(1)
				if check429 != nil {
					if msg := check429(resp.Header); msg != "" {
						wrong(msg)
					}
				}
			default:
				wrong("status " + resp.Status)
			}
		})
	}
	close(start)
	wg.Wait()
	if n := bad.Load(); n > 0 {
		tb.Errorf("flood: %d bad responses, the last: %v", n, lastBad.Load())
	}
	f := floodResult{denied: denied.Load(), degraded: degraded.Load()}
	for i := range insts {
		if answered[i].Load() == 0 {
			tb.Errorf("flood: instance %d answered nothing: the flood did not reach every instance", i)
		}
		f.admittedBy = append(f.admittedBy, admitted[i].Load())
	}
	return f
}
