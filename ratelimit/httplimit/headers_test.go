package httplimit

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/journalsvc/journal/ratelimit"
)

var (
	ipPolicy     = ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 100, Per: time.Minute}}
	signupPolicy = ratelimit.Policy{Name: "signup", Rate: ratelimit.Rate{N: 10, Per: time.Hour}, Algorithm: ratelimit.Fixed}
	userPolicy   = ratelimit.Policy{Name: "user", Rate: ratelimit.Rate{N: 1000, Per: time.Hour}}
	loginPolicy  = ratelimit.Policy{Name: "login", Rate: ratelimit.Rate{N: 10, Per: time.Minute}, Fail: ratelimit.FailClosed}
	hourPolicy   = ratelimit.Policy{Name: "ip-hour", Rate: ratelimit.Rate{N: 2000, Per: time.Hour}, Burst: 200, Shadow: true}
)

// policyResult is a result with the policy it is for.
type policyResult struct {
	p ratelimit.Policy
	r ratelimit.Result
}

// allowed returns an admitting result of p.
func allowed(p ratelimit.Policy, remaining int64, reset time.Duration) policyResult {
	return policyResult{p, ratelimit.Result{Allowed: true, Remaining: remaining, ResetAfter: reset}}
}

// denied returns a denying result of p.
func denied(p ratelimit.Policy, retry, reset time.Duration) policyResult {
	return policyResult{p, ratelimit.Result{RetryAfter: retry, ResetAfter: reset}}
}

func degraded(r policyResult) policyResult { r.r.Degraded = true; return r }

// scripted is a decision with the items it was made for.
type scripted struct {
	items []ratelimit.Item
	d     ratelimit.Decision
}

// decision assembles a decision as a backend would.
func decision(results ...policyResult) scripted {
	s := scripted{d: ratelimit.Decision{Allowed: true}}
	for _, r := range results {
		s.items = append(s.items, ratelimit.Item{Policy: r.p})
		s.d.Results = append(s.d.Results, r.r)
		if !r.r.Allowed && !r.p.Shadow {
			s.d.Allowed = false
			s.d.RetryAfter = max(s.d.RetryAfter, r.r.RetryAfter)
		}
	}
	return s
}

// rateHeaders extracts the rate-limit fields of h; a field absent is "".
func rateHeaders(h http.Header) map[string]string {
	m := map[string]string{}
	for _, k := range []string{HeaderRateLimitPolicy, HeaderRateLimit, HeaderLegacyLimit, HeaderLegacyRemaining, HeaderLegacyReset, HeaderRetryAfter} {
		if vs := h.Values(k); len(vs) > 0 {
			if len(vs) != 1 {
				m[http.CanonicalHeaderKey(k)] = "MULTIPLE LINES"
				continue
			}
			m[http.CanonicalHeaderKey(k)] = vs[0]
		}
	}
	return m
}

// fields returns the rate-limit fields SetHeaders writes, keyed as
// rateHeaders reports them: the members of RateLimit-Policy and RateLimit
// and, when the decision has an enforced policy, legacy: the values of
// X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset.
func fields(policy, limit string, legacy ...int64) map[string]string {
	m := map[string]string{keyRateLimitPolicy: policy, keyRateLimit: limit}
	if len(legacy) == 0 {
		return m
	}
	if len(legacy) != 3 {
		panic("fields: legacy is a limit, a remaining and a reset")
	}
	for i, k := range []string{keyLegacyLimit, keyLegacyRemaining, keyLegacyReset} {
		m[k] = strconv.FormatInt(legacy[i], 10)
	}
	return m
}

// written returns the header SetHeaders writes for s alone, as an earlier
// middleware leaves it.
func written(s scripted) http.Header {
	h := http.Header{}
	SetHeaders(h, s.items, &s.d)
	return h
}

func TestSetHeaders(t *testing.T) {
	tests := []struct {
		name string
		pre  http.Header // headers set by an earlier middleware
		d    scripted
		want map[string]string
	}{
		{
			name: "one policy",
			d:    decision(allowed(ipPolicy, 42, 600*time.Millisecond)),
			want: fields(`"ip";q=100;w=60`, `"ip";r=42;t=1`, 100, 42, 1),
		},
		{
			name: "several policies, legacy has the lowest remaining",
			d:    decision(allowed(ipPolicy, 42, 600*time.Millisecond), allowed(signupPolicy, 3, 1800*time.Second+time.Millisecond)),
			want: fields(`"ip";q=100;w=60, "signup";q=10;w=3600`, `"ip";r=42;t=1, "signup";r=3;t=1801`, 10, 3, 1801),
		},
		{
			name: "equal remaining, legacy has the later reset",
			d:    decision(allowed(ipPolicy, 5, time.Second), allowed(signupPolicy, 5, 9*time.Second)),
			want: fields(`"ip";q=100;w=60, "signup";q=10;w=3600`, `"ip";r=5;t=1, "signup";r=5;t=9`, 10, 5, 9),
		},
		{
			name: "shadow and degraded parameters; shadow not in legacy",
			d:    decision(degraded(allowed(ipPolicy, 7, 0)), denied(hourPolicy, 90*time.Second, 90*time.Second)),
			want: fields(`"ip";q=100;w=60;journal-degraded, "ip-hour";q=200;w=3600;journal-shadow`, `"ip";r=7;t=0;journal-degraded, "ip-hour";r=0;t=90;journal-shadow`, 100, 7, 0),
		},
		{
			name: "shadow and degraded together",
			d:    decision(degraded(allowed(hourPolicy, 150, 18*time.Second))),
			want: fields(`"ip-hour";q=200;w=3600;journal-shadow;journal-degraded`, `"ip-hour";r=150;t=18;journal-shadow;journal-degraded`),
		},
		{
			name: "rounding of t: 0.2s is 1, exact seconds stay",
			d: decision(
				allowed(ratelimit.Policy{Name: "a", Rate: ratelimit.Rate{N: 5, Per: time.Second}}, 4, 200*time.Millisecond),
				allowed(ratelimit.Policy{Name: "b", Rate: ratelimit.Rate{N: 5, Per: 1500 * time.Millisecond}}, 4, time.Second),
				allowed(ratelimit.Policy{Name: "c", Rate: ratelimit.Rate{N: 5, Per: 2 * time.Second}}, 4, time.Second+time.Nanosecond),
				allowed(ratelimit.Policy{Name: "d", Rate: ratelimit.Rate{N: 5, Per: 2 * time.Second}}, 4, 0),
			),
			want: fields(`"a";q=5;w=1, "b";q=5;w=2, "c";q=5;w=2, "d";q=5;w=2`, `"a";r=4;t=1, "b";r=4;t=1, "c";r=4;t=2, "d";r=4;t=0`, 5, 4, 2),
		},
		{
			name: "denied: r=0, t at least the retry, legacy is the violated policy",
			d:    decision(denied(ipPolicy, 1200*time.Millisecond, 600*time.Millisecond), allowed(signupPolicy, 1, time.Hour)),
			want: fields(`"ip";q=100;w=60, "signup";q=10;w=3600`, `"ip";r=0;t=2, "signup";r=1;t=3600`, 100, 0, 2),
		},
		{
			name: "denied by two: legacy is the violated policy with the latest retry",
			d:    decision(denied(ipPolicy, 2*time.Second, time.Second), denied(signupPolicy, 1700*time.Second, 1700*time.Second)),
			want: fields(`"ip";q=100;w=60, "signup";q=10;w=3600`, `"ip";r=0;t=2, "signup";r=0;t=1700`, 10, 0, 1700),
		},
		{
			name: "appended to an earlier middleware's members; lower legacy kept",
			pre:  written(decision(allowed(ipPolicy, 42, 600*time.Millisecond))),
			d:    decision(allowed(userPolicy, 999, 4*time.Second)),
			want: fields(`"ip";q=100;w=60, "user";q=1000;w=3600`, `"ip";r=42;t=1, "user";r=999;t=4`, 100, 42, 1),
		},
		{
			name: "appended; lower remaining replaces legacy; several earlier lines joined",
			pre: http.Header{
				"Ratelimit-Policy":      {`"ip";q=100;w=60`, `"x";q=1;w=1`},
				"Ratelimit":             {`"ip";r=42;t=1`, `"x";r=1;t=0`},
				"X-Ratelimit-Limit":     {"100"},
				"X-Ratelimit-Remaining": {"42"},
				"X-Ratelimit-Reset":     {"1"},
			},
			d:    decision(allowed(userPolicy, 2, 4*time.Second)),
			want: fields(`"ip";q=100;w=60, "x";q=1;w=1, "user";q=1000;w=3600`, `"ip";r=42;t=1, "x";r=1;t=0, "user";r=2;t=4`, 1000, 2, 4),
		},
		{
			name: "appended denial replaces a lower legacy remaining",
			pre:  written(decision(denied(ipPolicy, time.Second, time.Second))),
			d:    decision(denied(userPolicy, 3*time.Second+time.Millisecond, 0)),
			want: fields(`"ip";q=100;w=60, "user";q=1000;w=3600`, `"ip";r=0;t=1, "user";r=0;t=4`, 1000, 0, 4),
		},
		{
			name: "no results: nothing",
			d:    scripted{d: ratelimit.Decision{Allowed: true}},
			want: map[string]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.pre.Clone()
			if h == nil {
				h = http.Header{}
			}
			SetHeaders(h, tt.d.items, &tt.d.d)
			if diff := cmp.Diff(tt.want, rateHeaders(h)); diff != "" {
				t.Errorf("SetHeaders headers mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	tests := []struct {
		name string
		d    scripted
		want int64
	}{
		{"0.2s rounds up to 1", decision(denied(ipPolicy, 200*time.Millisecond, 0)), 1},
		{"1ns rounds up to 1", decision(denied(ipPolicy, time.Nanosecond, 0)), 1},
		{"zero is never 0", decision(denied(ipPolicy, 0, 0)), 1},
		{"exact seconds", decision(denied(ipPolicy, 3*time.Second, 0)), 3},
		{"just over", decision(denied(ipPolicy, 3*time.Second+time.Microsecond, 0)), 4},
		{"latest of the violated", decision(denied(ipPolicy, 2*time.Second, 0), denied(signupPolicy, 59*time.Minute+100*time.Millisecond, 0)), 3541},
		{"shadow retries ignored", decision(denied(ipPolicy, 2*time.Second, 0), denied(hourPolicy, time.Hour, 0)), 2},
		{"decision's own RetryAfter counts", retryAfter(decision(denied(ipPolicy, time.Second, 0)), 5*time.Second), 5},
	}
	for _, tt := range tests {
		if got := RetryAfterSeconds(tt.d.items, &tt.d.d); got != tt.want {
			t.Errorf("%s: RetryAfterSeconds = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func retryAfter(s scripted, d time.Duration) scripted {
	s.d.RetryAfter = d
	return s
}

func TestAppendSFString(t *testing.T) {
	tests := map[string]string{
		"ip":       `"ip"`,
		`a"b\c`:    `"a\"b\\c"`,
		"x\ny\xff": `"x?y?"`,
		"":         `""`,
	}
	for in, want := range tests {
		if got := string(appendSFString(nil, in)); got != want {
			t.Errorf("appendSFString(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestSetHeadersAllocatesTwice: the values of every field share one string
// and one []string array, and adding to one field leaves the others alone.
func TestSetHeadersAllocatesTwice(t *testing.T) {
	s := decision(allowed(ipPolicy, 420, 600*time.Millisecond), allowed(signupPolicy, 399, time.Hour), degraded(allowed(hourPolicy, 1999, time.Hour)))
	h := http.Header{}
	if !raceEnabled {
		if allocs := testing.AllocsPerRun(100, func() {
			clear(h)
			SetHeaders(h, s.items, &s.d)
		}); allocs != 2 {
			t.Errorf("SetHeaders allocates %v times, want 2", allocs)
		}
	}
	clear(h)
	SetHeaders(h, s.items, &s.d)
	want := rateHeaders(h)
	h.Add(HeaderRateLimit, `"other";r=1;t=1`)
	h.Add(HeaderLegacyLimit, "7")
	got := rateHeaders(h)
	want[http.CanonicalHeaderKey(HeaderRateLimit)] = "MULTIPLE LINES"
	want[http.CanonicalHeaderKey(HeaderLegacyLimit)] = "MULTIPLE LINES"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after adding to two fields (-want +got):\n%s", diff)
	}
	if v := h.Values(HeaderRateLimit); len(v) != 2 || v[1] != `"other";r=1;t=1` || h.Get(HeaderRateLimitPolicy) == "" {
		t.Errorf("RateLimit lines %q, RateLimit-Policy %q", v, h.Get(HeaderRateLimitPolicy))
	}
}
