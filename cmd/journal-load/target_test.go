package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestProbe(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		ignore       bool // the target ignores X-Forwarded-For
		perInstance  bool // two instances behind a balancer, each with its own counters
		fake         bool
		wantBelieved bool
		wantLeft     int // what the probe's last address had left
	}{
		{name: "believed", fake: true, wantBelieved: true, wantLeft: 49},
		{name: "ignored", ignore: true, fake: true, wantBelieved: false, wantLeft: 47},
		{name: "no simulated clients", fake: false, wantBelieved: false, wantLeft: 49},
		{name: "believed, counters per instance", perInstance: true, fake: true, wantBelieved: true, wantLeft: 49},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := newStandin(50)
			st.ignoreForwarded, st.perInstance = tt.ignore, tt.perInstance
			base := st.serve(t, "a", 0).URL
			if tt.perInstance {
				base = balancer(t, st.serve(t, "a", 0), st.serve(t, "b", 0)).URL
			}
			adr, err := probe(context.Background(), newAPI(4, 5*time.Second), base, newClientPool(tt.fake))
			if err != nil {
				t.Fatal(err)
			}
			if !adr.Measured || adr.Believed != tt.wantBelieved || adr.IP.Q != 50 || adr.IP.R != tt.wantLeft {
				t.Errorf("probe = %+v, want measured, believed %v, q 50, %d left", adr, tt.wantBelieved, tt.wantLeft)
			}
			if adr.Local != "127.0.0.1" {
				t.Errorf("local address %q, want 127.0.0.1", adr.Local)
			}
		})
	}
}

func TestProbeUnreachable(t *testing.T) {
	t.Parallel()
	srv := newStandin(10).serve(t, "a", 0)
	srv.Close()
	_, err := probe(context.Background(), newAPI(1, time.Second), srv.URL, newClientPool(true))
	if err == nil || !strings.HasPrefix(err.Error(), "cannot reach "+srv.URL) {
		t.Errorf("probe of a closed server = %v, want cannot reach %s", err, srv.URL)
	}
}

// oneLine asserts that err is set and prints as one line without the
// program's own prefix (main adds it), containing every want.
func oneLine(tb testing.TB, err error, want ...string) {
	tb.Helper()
	if err == nil {
		tb.Fatal("run succeeded, want an error")
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || strings.HasPrefix(msg, "journal-load:") {
		tb.Errorf("error is not one line without a prefix: %q", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			tb.Errorf("error %q lacks %q", msg, w)
		}
	}
}

// trustingNoProxy starts one instance of a stand-in that, like the service
// by default, keys clients by the peer only, with an ip limit and, when
// above 0, a signup limit.
func trustingNoProxy(tb testing.TB, limit, signups int) (*standin, *httptest.Server) {
	tb.Helper()
	st := newStandin(limit)
	st.ignoreForwarded, st.signupLimit = true, signups
	return st, st.serve(tb, "a", 0)
}

// stopsWithOneLine runs the tool with args and asserts that it stops with
// one line (see oneLine) and prints nothing else.
func stopsWithOneLine(tb testing.TB, args []string, want ...string) {
	tb.Helper()
	var stdout, stderr bytes.Buffer
	oneLine(tb, run(context.Background(), args, &stdout, &stderr), want...)
	if stdout.Len()+stderr.Len() != 0 {
		tb.Errorf("the run printed more than its error line: %q %q", stdout.String(), stderr.String())
	}
}

// TestMixedWithinIPLimit: against a target that ignores X-Forwarded-For
// (the service's default), the default scenario signs up one user, lowers
// its rate to what the ip limit leaves, and completes without a 429.
func TestMixedWithinIPLimit(t *testing.T) {
	t.Parallel()
	_, srv := trustingNoProxy(t, 60, 10)
	var stderr bytes.Buffer
	js := filepath.Join(t.TempDir(), "s.json")
	err := run(context.Background(), []string{"-target", srv.URL, "-duration", "2s", "-json", js, "-check"}, &bytes.Buffer{}, &stderr)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	s := readSummary(t, js)
	// The probe used 3 of 60, the user's set-up 5: 52 left, 90% of it over 2 s.
	if p := s.Paced; p.Users != 1 || p.TargetRate != 23.4 {
		t.Errorf("users %d, rate %g: want 1 and 23.4", p.Users, p.TargetRate)
	}
	if s.Failed != 0 || s.ByStatus["429"] != 0 || s.Requests < 30 {
		t.Errorf("requests %d, failed %d, statuses %v: want at least 30, none failed or refused", s.Requests, s.Failed, s.ByStatus)
	}
	for _, want := range []string{"ignores X-Forwarded-For from 127.0.0.1", "-fake-clients is off", "staying within its ip limit of 60 per 3600 s (57 left): 1 user, 23.4 requests/s instead of 100", "JOURNAL_TRUSTED_PROXIES=127.0.0.1/32"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	if len(s.Notes) != 2 {
		t.Errorf("notes %q, want the two adaptations", s.Notes)
	}
}

// TestSignupRefusedSaysWhatToChange: when the sign-ups the scenario needs
// are refused, the run stops with one line naming the limit and the
// settings to change.
func TestSignupRefusedSaysWhatToChange(t *testing.T) {
	t.Parallel()
	_, srv := trustingNoProxy(t, 1000, 2)
	stopsWithOneLine(t, []string{"-target", srv.URL, "-duration", "1s", "-users", "3"},
		"setup: POST /v1/users refused (429)", "signup limit (2 per 3600 s)", "retry in 72 s",
		"JOURNAL_TRUSTED_PROXIES=127.0.0.1/32", "JOURNAL_RATE_LIMIT_SIGNUP")

	// A target that believes the addresses: trusting is not the fix.
	err := advise(&refusedError{What: "POST /v1/users", R: response{Status: 429,
		Header: http.Header{"Retry-After": {"9"}, "Ratelimit-Policy": {`"signup";q=1;w=60`}},
		Body:   []byte(`{"violated-policies":["signup"]}`)}}, addressing{Measured: true, Believed: true})
	oneLine(t, err, "signup limit (1 per 60 s)", "retry in 9 s; or raise JOURNAL_RATE_LIMIT_SIGNUP")
	if strings.Contains(err.Error(), "TRUSTED_PROXIES") {
		t.Errorf("advice %q suggests trusting a target that already believes the addresses", err)
	}
}

// TestTooLittleLeft: when the ip limit leaves too little for the set-up
// and a run, the tool says how long to wait and what to change.
func TestTooLittleLeft(t *testing.T) {
	t.Parallel()
	st, srv := trustingNoProxy(t, 12, 0)
	// 9 left after the probe; one user and a run need 15: 6 more at 12 per hour.
	stopsWithOneLine(t, []string{"-target", srv.URL},
		srv.URL+" ignores X-Forwarded-For from 127.0.0.1, and its ip limit of 12 per 3600 s leaves 9 requests",
		"wait 1800 s", "JOURNAL_TRUSTED_PROXIES=127.0.0.1/32", "JOURNAL_RATE_LIMIT_IP")
	if got := st.used["127.0.0.1"]; got != 3 {
		t.Errorf("the target saw %d requests, want only the probe's 3", got)
	}
}

func TestRatelimitIgnoredAddresses(t *testing.T) {
	t.Parallel()
	_, srv := trustingNoProxy(t, 40, 0)
	s, out, err := runLoad(t, "-scenario", "ratelimit", "-target", srv.URL, "-requests", "100", "-check")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	// The probe used 3, the set-up 2.
	if r := s.Ratelimit; r.Expected != 35 || r.Admitted != 35 || r.Preconsumed != 5 || !r.Exact {
		t.Errorf("expected %d admitted %d preconsumed %d exact %v, want 35, 35, 5, true", r.Expected, r.Admitted, r.Preconsumed, r.Exact)
	}
}

func TestCoherenceFewerPairs(t *testing.T) {
	t.Parallel()
	st := newStandin(80)
	st.ignoreForwarded = true
	a, b := st.serve(t, "a", 0), st.serve(t, "b", 0)
	s, out, err := runLoad(t, "-scenario", "coherence", "-instances", a.URL+","+b.URL, "-check")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	// 77 left after the probe: 90% of 55 over 5 requests a pair.
	if c := s.Coherence; c.Pairs != 9 || s.Failed != 0 {
		t.Errorf("pairs %d, failed %d: want 9 and 0", c.Pairs, s.Failed)
	}
}

func TestReadiness(t *testing.T) {
	tests := []struct {
		r     response
		ready bool
		what  string
	}{
		{response{Status: 200, Body: []byte(`{"status":"ready","checks":{"database":{"status":"up"}}}`)}, true, ""},
		{response{Status: 200, Body: []byte(`{"status":"degraded","checks":{"database":{"status":"up"},"redis":{"status":"down"}}}`)}, false, "redis down"},
		{response{Status: 503, Body: []byte(`{"status":"unready","checks":{"database":{"status":"down"},"redis":{"status":"down"}}}`)}, false, "database down, redis down"},
		{response{Status: 503, Body: []byte(`{"status":"draining","checks":{"database":{"status":"up"}}}`)}, false, "draining"},
		{response{Status: 502, Body: []byte(`Bad Gateway`)}, false, "/readyz 502"},
		{response{Err: errors.New("connection refused")}, false, "no answer"},
	}
	for _, tt := range tests {
		ready, what := readiness(tt.r)
		if ready != tt.ready || what != tt.what {
			t.Errorf("readiness(%d %s) = %v, %q; want %v, %q", tt.r.Status, tt.r.Body, ready, what, tt.ready, tt.what)
		}
	}
}

// TestOutageMarksFaults: the outage scenario records when /readyz stopped
// and started answering "ready", and its report shades that on the charts.
func TestOutageMarksFaults(t *testing.T) {
	t.Parallel()
	st := newStandin(1000000)
	srv := st.serve(t, "a", 0)
	report := filepath.Join(t.TempDir(), "outage.html")
	// The set-up against the stand-in takes milliseconds: the fault begins
	// about 0.8 s into the load and lasts 1 s.
	down := time.AfterFunc(800*time.Millisecond, func() { st.notReady.Store(true) })
	up := time.AfterFunc(1800*time.Millisecond, func() { st.notReady.Store(false) })
	t.Cleanup(func() { down.Stop(); up.Stop() })
	s, out, err := runLoad(t, "-scenario", "outage", "-target", srv.URL, "-rate", "50", "-duration", "3s", "-users", "2", "-report", report)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	f := s.Paced.Faults
	if len(f) != 1 {
		t.Fatalf("faults %+v, want one", f)
	}
	// Polls every 250 ms; generous bounds for a loaded machine.
	if f[0].What != "redis down" || f[0].BeginS < 0.5 || f[0].BeginS > 1.6 || !f[0].Ended() ||
		f[0].EndS-f[0].BeginS < 0.5 || f[0].EndS-f[0].BeginS > 1.8 {
		t.Errorf("fault %+v, want redis down from about 0.8 s for about 1 s", f[0])
	}
	if !strings.Contains(out, "fault seen") || !strings.Contains(out, "redis down from") {
		t.Errorf("summary table lacks the fault:\n%s", out)
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	checkHTML(t, page, "by-status", "latency", "failed")
	if got := strings.Count(page, `class="band"`); got < 3 {
		t.Errorf("%d shaded fault bands, want one on each of the 3 or more charts", got)
	}
	for _, want := range []string{`class="bandline"`, ">redis down</text>", "Faults seen", "faults seen"} {
		if !strings.Contains(page, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// TestMixedHasNoFaultBands: only the outage scenario watches /readyz.
func TestMixedHasNoFaultBands(t *testing.T) {
	t.Parallel()
	st := newStandin(1000000)
	st.notReady.Store(true)
	report := filepath.Join(t.TempDir(), "mixed.html")
	s, out, err := runLoad(t, "-scenario", "mixed", "-target", st.serve(t, "a", 0).URL, "-rate", "20", "-duration", "600ms", "-users", "1", "-report", report)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Paced.Faults) != 0 || strings.Contains(string(b), `class="band"`) {
		t.Errorf("mixed run recorded faults %+v or drew bands", s.Paced.Faults)
	}
}

func TestUsageSaysWhatEachScenarioNeeds(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &bytes.Buffer{}, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run -h = %v, want flag.ErrHelp", err)
	}
	help := stderr.String()
	for _, want := range []string{"what the target must allow", "JOURNAL_TRUSTED_PROXIES", "JOURNAL_RATE_LIMIT_USER", "-fake-clients"} {
		if !strings.Contains(help, want) {
			t.Errorf("-h lacks %q", want)
		}
	}
	// Each scenario's paragraph: its name two spaces in, then lines
	// indented deeper.
	paras := map[string]string{}
	name := ""
	for _, line := range strings.Split(help, "\n") {
		switch {
		case strings.HasPrefix(line, "  ") && len(line) > 2 && line[2] != ' ':
			name = strings.Fields(line)[0]
		case !strings.HasPrefix(line, "    "):
			name = ""
		}
		if name != "" {
			paras[name] += line + "\n"
		}
	}
	for _, sc := range []string{"mixed", "outage", "ratelimit", "coherence"} {
		if !strings.Contains(paras[sc], "Needs") {
			t.Errorf("-h does not say what the %s scenario needs:\n%s", sc, paras[sc])
		}
	}
}

// readSummary reads a -json summary.
func readSummary(tb testing.TB, path string) *summary {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var s summary
	if err := json.Unmarshal(b, &s); err != nil {
		tb.Fatalf("summary JSON: %v", err)
	}
	return &s
}
