package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// runLoad runs the tool with args plus -json and returns the summary, the
// stdout and run's error.
func runLoad(tb testing.TB, args ...string) (*summary, string, error) {
	tb.Helper()
	js := filepath.Join(tb.TempDir(), "summary.json")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), append(args, "-json", js), &stdout, &stderr)
	if _, serr := os.Stat(js); serr != nil {
		tb.Fatalf("run(%q) wrote no JSON (err %v): stderr:\n%s", args, err, stderr.String())
	}
	return readSummary(tb, js), stdout.String(), err
}

func TestRatelimitExactThroughBalancer(t *testing.T) {
	t.Parallel()
	st := newStandin(37)
	lb := balancer(t, st.serve(t, "a", 0), st.serve(t, "b", 0), st.serve(t, "c", 0))
	s, out, err := runLoad(t, "-scenario", "ratelimit", "-target", lb.URL, "-requests", "300", "-concurrency", "12", "-check")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	r := s.Ratelimit
	if r == nil {
		t.Fatal("no ratelimit section in the summary")
	}
	if r.Limit != 37 || r.WindowS != 3600 || r.Expected != 37 || r.Admitted != 37 || !r.Exact {
		t.Errorf("limit %d/%ds expected %d admitted %d exact %v, want 37/3600s, 37, 37, true", r.Limit, r.WindowS, r.Expected, r.Admitted, r.Exact)
	}
	if r.Denied != 300-37 {
		t.Errorf("denied = %d, want %d", r.Denied, 300-37)
	}
	if got := len(r.AdmittedByInstance); got != 3 {
		t.Errorf("admitted by %d instances (%v), want 3", got, r.AdmittedByInstance)
	}
	if r.RetryAfterMissing != 0 || !s.OK {
		t.Errorf("retry-after missing %d, ok %v (%v)", r.RetryAfterMissing, s.OK, s.Problems)
	}
	if !strings.Contains(out, "admitted") || !strings.Contains(out, "result    OK") && !strings.Contains(out, "OK") {
		t.Errorf("summary table lacks the admitted row or the result:\n%s", out)
	}
}

// TestRatelimitDetectsPerInstanceLimits: instances with separate counters
// admit N x the limit, and the run says so.
func TestRatelimitDetectsPerInstanceLimits(t *testing.T) {
	t.Parallel()
	st := newStandin(20)
	st.perInstance = true
	lb := balancer(t, st.serve(t, "a", 0), st.serve(t, "b", 0))
	s, _, err := runLoad(t, "-scenario", "ratelimit", "-target", lb.URL, "-requests", "200", "-concurrency", "8", "-check")
	if !errors.Is(err, errFailed) {
		t.Errorf("run err = %v, want errFailed", err)
	}
	// The setup came from another client: the flood has 20 on each.
	if got, want := s.Ratelimit.Admitted, 40; got != want {
		t.Errorf("admitted = %d, want %d", got, want)
	}
	if s.OK || s.Ratelimit.Exact {
		t.Errorf("ok %v exact %v, want both false", s.OK, s.Ratelimit.Exact)
	}
}

func TestRatelimitWithoutFakeClientsCountsSetup(t *testing.T) {
	t.Parallel()
	st := newStandin(15)
	s, _, err := runLoad(t, "-scenario", "ratelimit", "-target", st.serve(t, "a", 0).URL, "-requests", "60", "-fake-clients=false")
	if err != nil {
		t.Fatal(err)
	}
	// The probe, the sign-up and the login came from the same address.
	if r := s.Ratelimit; r.Preconsumed != 3 || r.Expected != 12 || r.Admitted != 12 || !r.Exact {
		t.Errorf("preconsumed %d expected %d admitted %d exact %v, want 3, 12, 12, true", r.Preconsumed, r.Expected, r.Admitted, r.Exact)
	}
}

func TestCoherenceCoherent(t *testing.T) {
	t.Parallel()
	st := newStandin(100000)
	a, b := st.serve(t, "a", 0), st.serve(t, "b", 0)
	s, out, err := runLoad(t, "-scenario", "coherence", "-instances", a.URL+","+b.URL, "-pairs", "30", "-check")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	c := s.Coherence
	if c.Pairs != 30 || c.ItemReads != 30 || c.ListReads != 30 {
		t.Errorf("pairs %d item reads %d list reads %d, want 30 each", c.Pairs, c.ItemReads, c.ListReads)
	}
	if c.StaleReads != 0 || c.Revocations != revocationRounds || c.RevokedStill != 0 {
		t.Errorf("stale %d revocations %d still accepted %d, want 0, %d, 0", c.StaleReads, c.Revocations, c.RevokedStill, revocationRounds)
	}
	if len(s.ByInstance) != 2 {
		t.Errorf("answered by %v, want both instances", s.ByInstance)
	}
}

// TestCoherenceErrorsAreNotStale: a read refused with 429 is a failed
// request, not a stale read. Each simulated client may send 3 requests, so
// the first pair's list read after the write (its fourth) is refused, and
// so is every poll of it until the run's 1 s bound ends it.
func TestCoherenceErrorsAreNotStale(t *testing.T) {
	t.Parallel()
	st := newStandin(3)
	a, b := st.serve(t, "a", 0), st.serve(t, "b", 0)
	s, _, err := runLoad(t, "-scenario", "coherence", "-instances", a.URL+","+b.URL, "-pairs", "1", "-duration", "1s", "-check")
	if !errors.Is(err, errFailed) {
		t.Errorf("run err = %v, want errFailed", err)
	}
	c := s.Coherence
	if c.Pairs != 1 || c.ItemReads != 1 || c.ListReads != 1 {
		t.Fatalf("pairs %d item reads %d list reads %d, want 1 each", c.Pairs, c.ItemReads, c.ListReads)
	}
	if c.StaleReads != 0 || c.NeverFresh != 0 {
		t.Errorf("stale %d never fresh %d, want 0 and 0 (the list reads were 429s)", c.StaleReads, c.NeverFresh)
	}
	if s.Failed == 0 || s.ByStatus["429"] == 0 {
		t.Errorf("failed %d, by status %v: want the 429s counted as failed", s.Failed, s.ByStatus)
	}
}

// TestCoherenceDetectsStaleReads: an instance whose cache lags by 60 ms is
// caught, and the lag is measured.
func TestCoherenceDetectsStaleReads(t *testing.T) {
	t.Parallel()
	st := newStandin(100000)
	a, b := st.serve(t, "a", 0), st.serve(t, "b", 60*time.Millisecond)
	s, _, err := runLoad(t, "-scenario", "coherence", "-instances", a.URL+","+b.URL, "-pairs", "12", "-check")
	if !errors.Is(err, errFailed) {
		t.Errorf("run err = %v, want errFailed", err)
	}
	c := s.Coherence
	// Updates and deletes written on a and read on b: b's item copy is the
	// warmed one (pairs 1, 2, 7, 8 of 0..11 use b as reader: k%2==1 is
	// not it; every odd k reads on b).
	if c.StaleItem == 0 || c.StaleList != 0 {
		t.Errorf("stale item %d list %d, want some item and no list reads stale", c.StaleItem, c.StaleList)
	}
	// The copy expires 60 ms after the warming read, so the lag after the
	// write is at most that (3x margin for a loaded machine).
	if c.NeverFresh != 0 || c.LagMaxMs <= 0 || c.LagMaxMs > 180 {
		t.Errorf("never fresh %d, max lag %.1f ms: want 0 and above 0, at most about 60 ms", c.NeverFresh, c.LagMaxMs)
	}
}

func TestMixed(t *testing.T) {
	t.Parallel()
	st := newStandin(1000000)
	lb := balancer(t, st.serve(t, "a", 0), st.serve(t, "b", 0))
	s, out, err := runLoad(t, "-scenario", "mixed", "-target", lb.URL, "-rate", "200", "-duration", "1500ms", "-users", "4", "-concurrency", "8", "-check")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	p := s.Paced
	if got := p.Sent + p.Missed; got != 300 {
		t.Errorf("sent %d + missed %d = %d, want 300 (1.5 s at 200/s)", p.Sent, p.Missed, got)
	}
	// How many are missed depends on the machine's load (2 shared cores,
	// -race); a dead worker pool would miss them all.
	if p.Sent < 30 {
		t.Errorf("sent only %d of 300 against an in-memory server (latency %+v)", p.Sent, s.Latency)
	}
	for _, op := range []string{"get", "list", "create"} {
		if p.ByOp[op] == 0 {
			t.Errorf("no %s requests in %v", op, p.ByOp)
		}
	}
	if s.Failed != 0 || len(s.ByInstance) != 2 {
		t.Errorf("failed %d, instances %v", s.Failed, s.ByInstance)
	}
}

func TestMixedCountsFailures(t *testing.T) {
	t.Parallel()
	st := newStandin(1000000)
	st.failAfter, st.fail5xx = 50, 7 // the setup is 10 requests
	srv := st.serve(t, "a", 0)
	s, _, err := runLoad(t, "-scenario", "outage", "-target", srv.URL, "-rate", "100", "-duration", "1500ms", "-users", "2", "-check")
	if !errors.Is(err, errFailed) {
		t.Errorf("run err = %v, want errFailed", err)
	}
	if s.Failed != 7 || s.ByStatus["500"] != 7 || s.Paced.FirstError == "" {
		t.Errorf("failed %d, 500s %d, first error %q: want 7, 7, set", s.Failed, s.ByStatus["500"], s.Paced.FirstError)
	}
}

// TestSetupRetriesUnavailableLogin: a login refused 503 with Retry-After
// (login fails closed while the limiter cannot reach Redis) is retried
// after the delay, so the setup succeeds.
func TestSetupRetriesUnavailableLogin(t *testing.T) {
	t.Parallel()
	st := newStandin(1000000)
	st.loginUnavailable = 1
	srv := st.serve(t, "a", 0)
	start := time.Now()
	s, out, err := runLoad(t, "-scenario", "mixed", "-target", srv.URL, "-rate", "20", "-duration", "300ms", "-users", "2", "-check")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if s.Paced.Users != 2 || st.loginUnavailable != 0 {
		t.Errorf("users %d, refusals left %d: want 2 and 0", s.Paced.Users, st.loginUnavailable)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("run took %v: the retry did not wait Retry-After (1 s)", d)
	}
}

// checkHTML asserts the report is self-contained and its SVG charts are
// well-formed XML.
func checkHTML(tb testing.TB, page string, wantIDs ...string) {
	tb.Helper()
	if !strings.HasPrefix(page, "<!DOCTYPE html>") || !strings.Contains(page, "</html>") {
		tb.Errorf("not a whole HTML document")
	}
	if strings.Contains(page, "ZgotmplZ") {
		tb.Errorf("html/template rejected a value (ZgotmplZ) in the report")
	}
	ext := regexp.MustCompile(`(?i)(src|href)\s*=|url\(|@import|<script|<link`)
	for _, m := range ext.FindAllString(strings.ReplaceAll(page, `xmlns="http://www.w3.org/2000/svg"`, ""), -1) {
		tb.Errorf("report refers to an external resource: %q", m)
	}
	svgs := regexp.MustCompile(`(?s)<svg .*?</svg>`).FindAllString(page, -1)
	if len(svgs) < len(wantIDs) {
		tb.Errorf("%d charts, want at least %d", len(svgs), len(wantIDs))
	}
	for _, svg := range svgs {
		d := xml.NewDecoder(strings.NewReader(svg))
		shapes := 0
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				tb.Fatalf("chart is not well-formed XML: %v\n%.300s", err, svg)
			}
			if se, ok := tok.(xml.StartElement); ok && (se.Name.Local == "polygon" || se.Name.Local == "polyline") {
				shapes++
			}
		}
		if shapes == 0 {
			tb.Errorf("chart without a polygon or polyline: %.200s", svg)
		}
	}
	for _, id := range wantIDs {
		if !strings.Contains(page, `id="`+id+`"`) {
			tb.Errorf("report lacks the chart %q", id)
		}
	}
}

func TestReports(t *testing.T) {
	t.Parallel()
	st := newStandin(25)
	lb := balancer(t, st.serve(t, "i0", 0), st.serve(t, "i1", 0), st.serve(t, "i2", 0))
	dir := t.TempDir()

	rl := filepath.Join(dir, "ratelimit.html")
	if _, _, err := runLoad(t, "-scenario", "ratelimit", "-target", lb.URL, "-requests", "100", "-report", rl); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(rl)
	if err != nil {
		t.Fatal(err)
	}
	checkHTML(t, string(b), "by-status", "by-instance", "admitted", "latency")
	for _, want := range []string{"limit 25", "i0", "i1", "i2", "admitted / expected", "25 / 25", `class="limit"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("ratelimit report lacks %q", want)
		}
	}

	st2 := newStandin(1000000)
	lb2 := balancer(t, st2.serve(t, "i0", 0), st2.serve(t, "i1", 0))
	mx := filepath.Join(dir, "mixed.html")
	if _, _, err := runLoad(t, "-scenario", "mixed", "-target", lb2.URL, "-rate", "100", "-duration", "2s", "-users", "3", "-report", mx); err != nil {
		t.Fatal(err)
	}
	b, err = os.ReadFile(mx)
	if err != nil {
		t.Fatal(err)
	}
	checkHTML(t, string(b), "by-status", "by-instance", "latency", "failed")
	if !strings.Contains(string(b), "offered rate") {
		t.Errorf("mixed report lacks the offered rate")
	}
}

func TestFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want error
	}{
		{[]string{"-scenario", "nope"}, errUsage},
		{[]string{"-rate", "0"}, errUsage},
		{[]string{"-target", "ftp://x"}, errUsage},
		{[]string{"-concurrency", "0"}, errUsage},
		{[]string{"extra"}, errUsage},
		{[]string{"-scenario", "chaos"}, errUsage}, // no -instances to check at the end
		{[]string{"-h"}, flag.ErrHelp},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), tt.args, &out, &errOut); !errors.Is(err, tt.want) {
			t.Errorf("run(%q) = %v, want %v", tt.args, err, tt.want)
		}
	}
}

func TestQuotas(t *testing.T) {
	h := http.Header{}
	h.Add("RateLimit-Policy", `"ip";q=100;w=60, "user";q=1000;w=3600`)
	h.Add("RateLimit-Policy", `bad, "login";q=10;w=60`)
	h.Add("RateLimit", `"ip";r=97;t=1, "user";r=998;t=4;journal-degraded`)
	got := quotas(h)
	want := []quota{
		{Name: "ip", Q: 100, W: 60, R: 97, T: 1},
		{Name: "user", Q: 1000, W: 3600, R: 998, T: 4, Degraded: true},
		{Name: "login", Q: 10, W: 60, R: -1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("quotas mismatch (-want +got):\n%s", diff)
	}
	if q, ok := findQuota(h, "user"); !ok || q.R != 998 {
		t.Errorf(`findQuota(h, "user") = %+v, %v; want r=998`, q, ok)
	}
	if _, ok := findQuota(h, "signup"); ok {
		t.Errorf(`findQuota(h, "signup") found a policy the header does not name`)
	}
}

func TestPickOpWeights(t *testing.T) {
	counts := map[string]int{}
	for x := 0; x < 100; x++ {
		counts[pickOp(x)]++
	}
	for _, o := range mixedOps {
		if counts[o.Name] != o.Weight {
			t.Errorf("pickOp gives %s %d times in 100, want %d", o.Name, counts[o.Name], o.Weight)
		}
	}
}

func TestNiceCeil(t *testing.T) {
	for _, tt := range []struct{ in, want float64 }{{0, 1}, {0.7, 1}, {1, 1}, {1.2, 2}, {2.2, 2.5}, {3, 5}, {7, 10}, {430, 500}, {2001, 2500}} {
		if got := niceCeil(tt.in); got != tt.want {
			t.Errorf("niceCeil(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestNiceAxis(t *testing.T) {
	tests := []struct {
		in    float64
		top   float64
		steps int
	}{
		{216, 250, 5},
		{0, 1, 4},
		{105, 120, 6},
		{300 * 1.05, 400, 4},
		{4.2, 5, 5},
	}
	for _, tt := range tests {
		top, n := niceAxis(tt.in)
		if top != tt.top || n != tt.steps {
			t.Errorf("niceAxis(%v) = %v, %d, want %v, %d", tt.in, top, n, tt.top, tt.steps)
		}
		if top < tt.in {
			t.Errorf("niceAxis(%v) top %v below the data", tt.in, top)
		}
	}
}
