package httplimit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/memorylimit"
	"github.com/journalsvc/journal/ratelimit/ratelimittest"
)

// fakeLimiter is a scripted ratelimit.Limiter: decide answers every call and
// every call is recorded.
type fakeLimiter struct {
	decide func(subject string, items []ratelimit.Item) (scripted, error)

	mu    sync.Mutex
	calls []fakeCall
}

type fakeCall struct {
	Subject  string
	Policies []string
}

var _ ratelimit.Limiter = (*fakeLimiter)(nil)

func (f *fakeLimiter) Decide(_ context.Context, d *ratelimit.Decision, subject string, items ...ratelimit.Item) error {
	f.mu.Lock()
	f.calls = append(f.calls, fakeCall{Subject: subject, Policies: policyNames(items)})
	f.mu.Unlock()
	return f.write(d, subject, items)
}

func (f *fakeLimiter) Peek(_ context.Context, d *ratelimit.Decision, subject string, items ...ratelimit.Item) error {
	return f.write(d, subject, items)
}

// write writes the scripted decision into d as a backend would: in place,
// without results on an error.
func (f *fakeLimiter) write(d *ratelimit.Decision, subject string, items []ratelimit.Item) error {
	s, err := f.decide(subject, items)
	if err == nil && len(s.d.Results) != len(items) {
		err = fmt.Errorf("fakeLimiter: %d results scripted for %d items", len(s.d.Results), len(items))
	}
	d.Allowed, d.RetryAfter = s.d.Allowed, s.d.RetryAfter
	d.Results = append(d.Results[:0], s.d.Results...)
	if err != nil {
		*d = ratelimit.Decision{Results: d.Results[:0]}
	}
	return err
}

func (f *fakeLimiter) Reset(context.Context, string, string) error { return nil }

func (f *fakeLimiter) Calls() []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeCall(nil), f.calls...)
}

// answer returns a fakeLimiter that always answers d, err.
func answer(d scripted, err error) *fakeLimiter {
	return &fakeLimiter{decide: func(string, []ratelimit.Item) (scripted, error) { return d, err }}
}

// okHandler answers 200 "ok" and counts its calls.
type okHandler struct {
	mu sync.Mutex
	n  int
}

func (h *okHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.n++
	h.mu.Unlock()
	io.WriteString(w, "ok")
}

func (h *okHandler) Calls() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

func mustNew(tb testing.TB, l ratelimit.Limiter, opts Options) *Middleware {
	tb.Helper()
	m, err := New(l, opts)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return m
}

// serve runs one request through h with an outcome record and returns the
// recorder and the outcome.
func serve(h http.Handler, r *http.Request) (*httptest.ResponseRecorder, Outcome) {
	r = r.WithContext(WithOutcome(r.Context()))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w, OutcomeFromContext(r.Context())
}

func get(remote string, hdr ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/v1/entries", nil)
	r.RemoteAddr = remote
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	return r
}

// decodeProblem checks that body is one valid JSON object and decodes it.
func decodeProblem(tb testing.TB, w *httptest.ResponseRecorder) map[string]any {
	tb.Helper()
	if got, want := w.Header().Get("Content-Type"), "application/problem+json"; got != want {
		tb.Errorf("Content-Type = %q, want %q", got, want)
	}
	dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	var p map[string]any
	if err := dec.Decode(&p); err != nil {
		tb.Fatalf("problem body %q is not JSON: %v", w.Body.String(), err)
	}
	if dec.More() {
		tb.Fatalf("problem body %q has data after the object", w.Body.String())
	}
	return p
}

// wantRateHeaders checks the rate-limit fields of h against want (see
// rateHeaders).
func wantRateHeaders(tb testing.TB, h http.Header, want map[string]string) {
	tb.Helper()
	if diff := cmp.Diff(want, rateHeaders(h)); diff != "" {
		tb.Errorf("headers (-want +got):\n%s", diff)
	}
}

// wantViolated checks that w's problem body names exactly the policies as
// violated, in order, and returns the body.
func wantViolated(tb testing.TB, w *httptest.ResponseRecorder, policies ...string) map[string]any {
	tb.Helper()
	p := decodeProblem(tb, w)
	want := make([]any, len(policies))
	for i, name := range policies {
		want[i] = name
	}
	if diff := cmp.Diff(want, p["violated-policies"]); diff != "" {
		tb.Errorf("violated-policies (-want +got):\n%s", diff)
	}
	return p
}

func TestNewRejectsBadOptions(t *testing.T) {
	items := StaticItems(ratelimit.Item{Policy: ipPolicy})
	tests := []struct {
		name string
		l    ratelimit.Limiter
		opts Options
	}{
		{"nil limiter", nil, Options{Items: items}},
		{"nil Items", answer(scripted{}, nil), Options{}},
		{"negative retry", answer(scripted{}, nil), Options{Items: items, UnavailableRetryAfter: -time.Second}},
	}
	for _, tt := range tests {
		if _, err := New(tt.l, tt.opts); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: New error = %v, want ErrOptions", tt.name, err)
		}
	}
}

func TestMiddlewareAllowed(t *testing.T) {
	l := answer(decision(allowed(ipPolicy, 99, 600*time.Millisecond)), nil)
	next := &okHandler{}
	m := mustNew(t, l, Options{Items: StaticItems(ratelimit.Item{Policy: ipPolicy})})
	w, o := serve(m.Handler(next), get("203.0.113.7:1234"))
	if w.Code != http.StatusOK || next.Calls() != 1 {
		t.Fatalf("status %d, next called %d times; want 200 and 1", w.Code, next.Calls())
	}
	wantRateHeaders(t, w.Header(), fields(`"ip";q=100;w=60`, `"ip";r=99;t=1`, 100, 99, 1))
	if o != OutcomeAllowed {
		t.Errorf("outcome = %v, want allowed", o)
	}
	if diff := cmp.Diff([]fakeCall{{Subject: "ip:203.0.113.7", Policies: []string{"ip"}}}, l.Calls()); diff != "" {
		t.Errorf("limiter calls (-want +got):\n%s", diff)
	}
}

func TestMiddlewareDenied(t *testing.T) {
	l := answer(decision(denied(ipPolicy, 17200*time.Millisecond, 600*time.Millisecond), allowed(signupPolicy, 9, time.Hour)), nil)
	next := &okHandler{}
	var hooked []string
	m := mustNew(t, l, Options{
		Items: StaticItems(ratelimit.Item{Policy: ipPolicy}, ratelimit.Item{Policy: signupPolicy}),
		OnDecision: func(r *http.Request, o Outcome, _ []ratelimit.Item, d *ratelimit.Decision, err error) {
			hooked = append(hooked, fmt.Sprintf("%s %v %v", o, d.Allowed, err))
		},
	})
	w, o := serve(m.Handler(next), get("203.0.113.7:1234"))
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("status = %d, want 429", w.Code)
	}
	if next.Calls() != 0 {
		t.Errorf("next handler called on a denial")
	}
	want := fields(`"ip";q=100;w=60, "signup";q=10;w=3600`, `"ip";r=0;t=18, "signup";r=9;t=3600`, 100, 0, 18)
	want[HeaderRetryAfter] = "18"
	wantRateHeaders(t, w.Header(), want)
	gotBody := decodeProblem(t, w)
	wantBody := map[string]any{
		"type":              "https://iana.org/assignments/http-problem-types#quota-exceeded",
		"title":             "Too Many Requests",
		"status":            float64(429),
		"detail":            "Quota exceeded for policy ip; retry after 18 seconds.",
		"violated-policies": []any{"ip"},
	}
	if diff := cmp.Diff(wantBody, gotBody); diff != "" {
		t.Errorf("problem body (-want +got):\n%s", diff)
	}
	if o != OutcomeDenied {
		t.Errorf("outcome = %v, want denied", o)
	}
	if diff := cmp.Diff([]string{"denied false <nil>"}, hooked); diff != "" {
		t.Errorf("OnDecision calls (-want +got):\n%s", diff)
	}
}

func TestMiddlewareDeniedBySeveral(t *testing.T) {
	// Retry-After is the LATEST retry of the violated policies.
	s := decision(denied(ipPolicy, 200*time.Millisecond, 0), denied(signupPolicy, 1800*time.Second+time.Millisecond, 0), denied(hourPolicy, 2*time.Hour, 0))
	m := mustNew(t, answer(s, nil), Options{Items: StaticItems(s.items...)})
	w, _ := serve(m.Handler(&okHandler{}), get("203.0.113.7:1234"))
	if got, want := w.Header().Get("Retry-After"), "1801"; got != want {
		t.Errorf("Retry-After = %q, want %q", got, want)
	}
	p := wantViolated(t, w, "ip", "signup")
	if got, want := p["detail"], "Quota exceeded for policies ip, signup; retry after 1801 seconds."; got != want {
		t.Errorf("detail = %q, want %q", got, want)
	}
}

func TestMiddlewareRetryAfterNeverZero(t *testing.T) {
	for _, retry := range []time.Duration{0, time.Nanosecond, 200 * time.Millisecond, time.Second} {
		l := answer(decision(denied(ipPolicy, retry, 0)), nil)
		m := mustNew(t, l, Options{Items: StaticItems(ratelimit.Item{Policy: ipPolicy})})
		w, _ := serve(m.Handler(&okHandler{}), get("203.0.113.7:1234"))
		if got := w.Header().Get("Retry-After"); got != "1" {
			t.Errorf("retry %v: Retry-After = %q, want \"1\"", retry, got)
		}
		if got, want := w.Header().Get("RateLimit"), `"ip";r=0;t=1`; retry > 0 && got != want {
			t.Errorf("retry %v: RateLimit = %q, want %q", retry, got, want)
		}
	}
}

func TestMiddlewareUnavailable(t *testing.T) {
	err := fmt.Errorf("redislimit: login: %w", ratelimit.ErrUnavailable)
	l := answer(scripted{}, err)
	next := &okHandler{}
	var logs bytes.Buffer
	var hookErr error
	m := mustNew(t, l, Options{
		Items:      StaticItems(ratelimit.Item{Policy: loginPolicy}),
		Logger:     slog.New(slog.NewJSONHandler(&logs, nil)),
		OnDecision: func(_ *http.Request, _ Outcome, _ []ratelimit.Item, _ *ratelimit.Decision, err error) { hookErr = err },
	})
	w, o := serve(m.Handler(next), get("203.0.113.7:1234"))
	if w.Code != http.StatusServiceUnavailable || next.Calls() != 0 {
		t.Fatalf("status %d, next called %d times; want 503 and 0", w.Code, next.Calls())
	}
	if got, want := w.Header().Get("Retry-After"), "1"; got != want {
		t.Errorf("Retry-After = %q, want %q", got, want)
	}
	if h := rateHeaders(w.Header()); h["Ratelimit"] != "" || h["X-Ratelimit-Remaining"] != "" {
		t.Errorf("503 carries rate-limit headers of an undecided request: %v", h)
	}
	p := decodeProblem(t, w)
	if got, want := p["type"], "https://iana.org/assignments/http-problem-types#temporary-reduced-capacity"; got != want {
		t.Errorf("type = %v, want %v", got, want)
	}
	if got, want := p["status"], float64(503); got != want {
		t.Errorf("status member = %v, want %v", got, want)
	}
	if _, ok := p["violated-policies"]; ok {
		t.Errorf("503 body names violated policies: %v", p)
	}
	if o != OutcomeUnavailable {
		t.Errorf("outcome = %v, want unavailable", o)
	}
	if !errors.Is(hookErr, ratelimit.ErrUnavailable) {
		t.Errorf("OnDecision err = %v, want ErrUnavailable", hookErr)
	}
	if !strings.Contains(logs.String(), "failing closed") || !strings.Contains(logs.String(), `"level":"WARN"`) {
		t.Errorf("log = %q, want a WARN line about failing closed", logs.String())
	}

	// A configured Retry-After is rounded up to whole seconds.
	m = mustNew(t, l, Options{Items: StaticItems(ratelimit.Item{Policy: loginPolicy}), UnavailableRetryAfter: 2500 * time.Millisecond})
	w, _ = serve(m.Handler(next), get("203.0.113.7:1234"))
	if got, want := w.Header().Get("Retry-After"), "3"; got != want {
		t.Errorf("Retry-After with UnavailableRetryAfter 2.5s = %q, want %q", got, want)
	}
}

// TestMiddlewareOtherErrors: the middleware decides no fail mode; any error
// of the limiter is a 503, whatever the policies (ratelimit.Fallback is
// where fail modes are decided).
func TestMiddlewareOtherErrors(t *testing.T) {
	boom := errors.New("boom")
	for _, items := range [][]ratelimit.Item{
		{{Policy: ipPolicy}},
		{{Policy: ipPolicy}, {Policy: loginPolicy}},
	} {
		var logs bytes.Buffer
		next := &okHandler{}
		m := mustNew(t, answer(scripted{}, boom), Options{
			Items:  StaticItems(items...),
			Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
		})
		w, o := serve(m.Handler(next), get("203.0.113.7:1234"))
		if w.Code != http.StatusServiceUnavailable || next.Calls() != 0 || o != OutcomeUnavailable {
			t.Errorf("%d policies: status %d, next called %d times, outcome %v; want 503, 0, unavailable", len(items), w.Code, next.Calls(), o)
		}
		if !strings.Contains(logs.String(), "failing closed") || !strings.Contains(logs.String(), `"error":"boom"`) {
			t.Errorf("log = %q, want a line with the error", logs.String())
		}
		if h := rateHeaders(w.Header()); h["Ratelimit"] != "" {
			t.Errorf("undecided request carries RateLimit %q", h["Ratelimit"])
		}
	}
}

func TestMiddlewareShadowNeverBlocks(t *testing.T) {
	l := answer(decision(allowed(ipPolicy, 50, time.Second), denied(hourPolicy, time.Hour, time.Hour)), nil)
	next := &okHandler{}
	m := mustNew(t, l, Options{Items: StaticItems(ratelimit.Item{Policy: ipPolicy}, ratelimit.Item{Policy: hourPolicy})})
	w, o := serve(m.Handler(next), get("203.0.113.7:1234"))
	if w.Code != http.StatusOK || next.Calls() != 1 {
		t.Fatalf("status %d, next called %d times; want 200 and 1", w.Code, next.Calls())
	}
	if got, want := w.Header().Get("RateLimit"), `"ip";r=50;t=1, "ip-hour";r=0;t=3600;journal-shadow`; got != want {
		t.Errorf("RateLimit = %q, want %q", got, want)
	}
	if got := w.Header().Get("Retry-After"); got != "" {
		t.Errorf("Retry-After = %q on an admitted request", got)
	}
	if o != OutcomeShadowDenied {
		t.Errorf("outcome = %v, want shadow-denied", o)
	}
}

func TestMiddlewareDegradedResults(t *testing.T) {
	l := answer(decision(degraded(allowed(ipPolicy, 20, time.Second))), nil)
	m := mustNew(t, l, Options{Items: StaticItems(ratelimit.Item{Policy: ipPolicy})})
	w, o := serve(m.Handler(&okHandler{}), get("203.0.113.7:1234"))
	if got, want := w.Header().Get("RateLimit"), `"ip";r=20;t=1;journal-degraded`; got != want {
		t.Errorf("RateLimit = %q, want %q", got, want)
	}
	if o != OutcomeDegraded {
		t.Errorf("outcome = %v, want degraded", o)
	}
}

func TestMiddlewareNotEvaluated(t *testing.T) {
	l := answer(decision(denied(ipPolicy, time.Second, 0)), nil)
	tests := []struct {
		name string
		opts Options
		path string
	}{
		{"skipped route", Options{Items: StaticItems(ratelimit.Item{Policy: ipPolicy}), Skip: func(r *http.Request) bool { return r.URL.Path == "/livez" }}, "/livez"},
		{"no subject", Options{Items: StaticItems(ratelimit.Item{Policy: ipPolicy}), Subject: func(*http.Request) (string, bool) { return "", false }}, "/"},
		{"no items", Options{Items: func(*http.Request) []ratelimit.Item { return nil }}, "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := &okHandler{}
			var hooked int
			tt.opts.OnDecision = func(*http.Request, Outcome, []ratelimit.Item, *ratelimit.Decision, error) { hooked++ }
			m := mustNew(t, l, tt.opts)
			r := httptest.NewRequest(http.MethodGet, tt.path, nil)
			w, o := serve(m.Handler(next), r)
			if w.Code != http.StatusOK || next.Calls() != 1 {
				t.Fatalf("status %d, next called %d times; want 200 and 1", w.Code, next.Calls())
			}
			if h := rateHeaders(w.Header()); len(h) != 0 {
				t.Errorf("headers on a request not evaluated: %v", h)
			}
			if o != OutcomeNone || hooked != 0 {
				t.Errorf("outcome %v, OnDecision called %d times; want none and 0", o, hooked)
			}
		})
	}
	if n := len(l.Calls()); n != 0 {
		t.Errorf("limiter called %d times, want 0", n)
	}
}

func TestMiddlewareIgnoresSpoofedForwarding(t *testing.T) {
	trusted := mustTrusted(t, "10.0.0.0/8")
	l := answer(decision(allowed(ipPolicy, 1, 0)), nil)
	m := mustNew(t, l, Options{Subject: IPSubject(trusted), Items: StaticItems(ratelimit.Item{Policy: ipPolicy})})
	h := m.Handler(&okHandler{})
	reqs := []*http.Request{
		// Untrusted peers: headers ignored.
		get("203.0.113.7:1", "X-Forwarded-For", "198.51.100.1"),
		get("203.0.113.7:1", "X-Forwarded-For", "10.0.0.5"),
		get("203.0.113.7:1", "Forwarded", "for=198.51.100.1"),
		get("[::ffff:203.0.113.7]:1", "X-Real-IP", "198.51.100.1"),
		// A trusted proxy: right-most untrusted wins over the client's prefix.
		get("10.0.0.2:1", "X-Forwarded-For", "198.51.100.1, 203.0.113.9"),
		// IPv6 clients are keyed by their /64.
		get("10.0.0.2:1", "X-Forwarded-For", "2001:db8:1:2:aaaa::1"),
		get("[2001:db8:1:2:bbbb::2]:1"),
	}
	for _, r := range reqs {
		serve(h, r)
	}
	want := []fakeCall{
		{"ip:203.0.113.7", []string{"ip"}},
		{"ip:203.0.113.7", []string{"ip"}},
		{"ip:203.0.113.7", []string{"ip"}},
		{"ip:203.0.113.7", []string{"ip"}},
		{"ip:203.0.113.9", []string{"ip"}},
		{"ip:2001:db8:1:2::/64", []string{"ip"}},
		{"ip:2001:db8:1:2::/64", []string{"ip"}},
	}
	if diff := cmp.Diff(want, l.Calls()); diff != "" {
		t.Errorf("subjects (-want +got):\n%s", diff)
	}
}

// userKey is the context key of the authenticated user in the chaining tests.
type userKey struct{}

// fakeAuth stands for the service's auth middleware: "Authorization: u1"
// authenticates user u1.
func fakeAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u := r.Header.Get("Authorization"); u != "" {
			r = r.WithContext(context.WithValue(r.Context(), userKey{}, u))
		}
		next.ServeHTTP(w, r)
	})
}

func userSubject(r *http.Request) (string, bool) {
	u, ok := r.Context().Value(userKey{}).(string)
	return "user:" + u, ok
}

// chain builds ip limit -> auth -> user limit -> next, as the service does.
func chain(tb testing.TB, l ratelimit.Limiter, next http.Handler) http.Handler {
	tb.Helper()
	ipm := mustNew(tb, l, Options{
		Items: func(r *http.Request) []ratelimit.Item {
			if r.Method == http.MethodPost && r.URL.Path == "/v1/users" {
				return []ratelimit.Item{{Policy: ipPolicy}, {Policy: signupPolicy}}
			}
			return []ratelimit.Item{{Policy: ipPolicy}}
		},
		Skip: func(r *http.Request) bool { return r.URL.Path == "/livez" },
	})
	um := mustNew(tb, l, Options{Subject: userSubject, Items: StaticItems(ratelimit.Item{Policy: userPolicy})})
	return ipm.Handler(fakeAuth(um.Handler(next)))
}

func TestMiddlewareChainFake(t *testing.T) {
	l := &fakeLimiter{decide: func(subject string, items []ratelimit.Item) (scripted, error) {
		if strings.HasPrefix(subject, "user:") {
			return decision(denied(userPolicy, 3*time.Second, 3*time.Second)), nil
		}
		return decision(allowed(ipPolicy, 42, 600*time.Millisecond)), nil
	}}
	next := &okHandler{}
	h := chain(t, l, next)

	// Anonymous: only ip.
	w, o := serve(h, get("203.0.113.7:1"))
	if got, want := w.Header().Get("RateLimit"), `"ip";r=42;t=1`; got != want || o != OutcomeAllowed {
		t.Errorf("anonymous: RateLimit = %q, outcome %v; want %q, allowed", got, o, want)
	}
	// Authenticated and denied by user: 429 carrying both members; legacy
	// describes the violated policy.
	w, o = serve(h, get("203.0.113.7:1", "Authorization", "u1"))
	if w.Code != http.StatusTooManyRequests || o != OutcomeDenied {
		t.Fatalf("user over limit: status %d, outcome %v; want 429, denied", w.Code, o)
	}
	want := fields(`"ip";q=100;w=60, "user";q=1000;w=3600`, `"ip";r=42;t=1, "user";r=0;t=3`, 1000, 0, 3)
	want[HeaderRetryAfter] = "3"
	wantRateHeaders(t, w.Header(), want)
	wantViolated(t, w, "user")
	if next.Calls() != 1 {
		t.Errorf("next called %d times, want 1", next.Calls())
	}
	wantCalls := []fakeCall{
		{"ip:203.0.113.7", []string{"ip"}},
		{"ip:203.0.113.7", []string{"ip"}},
		{"user:u1", []string{"user"}},
	}
	if diff := cmp.Diff(wantCalls, l.Calls()); diff != "" {
		t.Errorf("limiter calls (-want +got):\n%s", diff)
	}
}

func newMemoryLimiter(tb testing.TB) (*memorylimit.Limiter, *ratelimittest.Clock) {
	tb.Helper()
	clock := ratelimittest.NewClock(time.Unix(1_750_000_000, 0))
	l := memorylimit.New(memorylimit.Options{Now: clock.Now, SweepInterval: -1})
	tb.Cleanup(func() { l.Close() })
	return l, clock
}

func TestMiddlewareChainMemory(t *testing.T) {
	l, _ := newMemoryLimiter(t)
	next := &okHandler{}
	h := chain(t, l, next)

	w, o := serve(h, get("203.0.113.7:1", "Authorization", "u1"))
	if w.Code != http.StatusOK || o != OutcomeAllowed {
		t.Fatalf("status %d, outcome %v; want 200, allowed", w.Code, o)
	}
	wantRateHeaders(t, w.Header(), fields(`"ip";q=100;w=60, "user";q=1000;w=3600`, `"ip";r=99;t=1, "user";r=999;t=4`, 100, 99, 1))

	// Signup route: ip and signup in one decision, then user is absent.
	r := httptest.NewRequest(http.MethodPost, "/v1/users", nil)
	r.RemoteAddr = "203.0.113.7:1"
	w, _ = serve(h, r)
	if got, want := w.Header().Get("RateLimit"), `"ip";r=98;t=1, "signup";r=9;t=`; !strings.HasPrefix(got, want) {
		t.Errorf("signup RateLimit = %q, want prefix %q", got, want)
	}
}

func TestMiddlewareIPv6Slash64(t *testing.T) {
	l, _ := newMemoryLimiter(t)
	two := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 2, Per: time.Minute}}
	m := mustNew(t, l, Options{Items: StaticItems(ratelimit.Item{Policy: two})})
	h := m.Handler(&okHandler{})
	for i, tc := range []struct {
		remote string
		want   int
	}{
		{"[2001:db8:1:2::1]:1", 200},
		{"[2001:db8:1:2:ffff::2]:1", 200},
		{"[2001:db8:1:2:1234:5678:9abc:def0]:1", 429}, // rotating inside the /64 does not help
		{"[2001:db8:1:3::1]:1", 200},                  // another /64 has its own quota
		{"203.0.113.7:1", 200},
		{"203.0.113.7:2", 200},
		{"[::ffff:203.0.113.7]:3", 429}, // IPv4-mapped is the same IPv4 client
	} {
		w, _ := serve(h, get(tc.remote))
		if w.Code != tc.want {
			t.Errorf("request %d from %s: status %d, want %d", i, tc.remote, w.Code, tc.want)
		}
	}
}

func TestOutcomeRecordKeepsMostSevere(t *testing.T) {
	ctx := WithOutcome(context.Background())
	rec := recordFrom(ctx)
	for _, o := range []Outcome{OutcomeAllowed, OutcomeShadowDenied, OutcomeDegraded, OutcomeAllowed} {
		rec.raise(o)
	}
	if got := OutcomeFromContext(ctx); got != OutcomeShadowDenied {
		t.Errorf("OutcomeFromContext = %v, want shadow-denied", got)
	}
	if got := OutcomeFromContext(context.Background()); got != OutcomeNone {
		t.Errorf("OutcomeFromContext(no record) = %v, want none", got)
	}
	names := map[Outcome]string{OutcomeNone: "none", OutcomeAllowed: "allowed", OutcomeDegraded: "degraded",
		OutcomeShadowDenied: "shadow-denied", OutcomeUnavailable: "unavailable", OutcomeDenied: "denied", 42: "outcome(42)"}
	for o, want := range names {
		if got := o.String(); got != want {
			t.Errorf("Outcome(%d).String() = %q, want %q", o, got, want)
		}
	}
	b, _ := json.Marshal(map[string]Outcome{"ratelimit": OutcomeShadowDenied})
	if got, want := string(b), `{"ratelimit":"shadow-denied"}`; got != want {
		t.Errorf("json = %s, want %s", got, want)
	}
}

// TestMiddlewareInstallsOutcome checks that without an outer record the
// middleware installs one for the handlers after it.
func TestMiddlewareInstallsOutcome(t *testing.T) {
	l := answer(decision(allowed(ipPolicy, 1, 0)), nil)
	m := mustNew(t, l, Options{Items: StaticItems(ratelimit.Item{Policy: ipPolicy})})
	var seen Outcome
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = OutcomeFromContext(r.Context()) }))
	h.ServeHTTP(httptest.NewRecorder(), get("203.0.113.7:1"))
	if seen != OutcomeAllowed {
		t.Errorf("inner handler sees outcome %v, want allowed", seen)
	}
}

// TestEndToEnd is the seed's scenario through a real HTTP server and the
// memory backend: 100 requests per minute per IP; the 101st gets 429.
func TestEndToEnd(t *testing.T) {
	l, clock := newMemoryLimiter(t)
	trusted := mustTrusted(t, "127.0.0.1/32, ::1")
	m := mustNew(t, l, Options{
		Subject: IPSubject(trusted),
		Items:   StaticItems(ratelimit.Item{Policy: ipPolicy}),
		Skip:    func(r *http.Request) bool { return r.URL.Path == "/livez" },
	})
	srv := httptest.NewServer(m.Handler(&okHandler{}))
	t.Cleanup(srv.Close)
	client := srv.Client()

	do := func(path, xff string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	for i := 1; i <= 100; i++ {
		resp := do("/v1/entries", "203.0.113.7")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d, want 200", i, resp.StatusCode)
		}
		if got, want := resp.Header.Get("RateLimit"), fmt.Sprintf(`"ip";r=%d;t=1`, 100-i); got != want {
			t.Fatalf("request %d: RateLimit = %q, want %q", i, got, want)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/entries", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("request 101: status %d, want 429", resp.StatusCode)
	}
	want := fields(`"ip";q=100;w=60`, `"ip";r=0;t=1`, 100, 0, 1)
	want[HeaderRetryAfter] = "1" // GCRA 100/1m: one emission interval, 0.6s, rounded up
	wantRateHeaders(t, resp.Header, want)
	var p map[string]any
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("429 body %q: %v", body, err)
	}
	if p["type"] != ProblemQuotaExceeded || !cmp.Equal(p["violated-policies"], []any{"ip"}) {
		t.Errorf("429 body = %s", body)
	}

	// Other clients behind the same proxy, operational routes and a spoofed
	// prefix are unaffected; the limited client is still limited.
	if resp := do("/v1/entries", "198.51.100.1"); resp.StatusCode != http.StatusOK {
		t.Errorf("another client: status %d, want 200", resp.StatusCode)
	}
	if resp := do("/v1/entries", "1.2.3.4, 203.0.113.7"); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("spoofed prefix: status %d, want 429", resp.StatusCode)
	}
	if resp := do("/livez", "203.0.113.7"); resp.StatusCode != http.StatusOK || resp.Header.Get("RateLimit") != "" {
		t.Errorf("/livez: status %d, RateLimit %q; want 200 and none", resp.StatusCode, resp.Header.Get("RateLimit"))
	}

	// Honouring Retry-After gets the client in again.
	clock.Advance(time.Second)
	if resp := do("/v1/entries", "203.0.113.7"); resp.StatusCode != http.StatusOK {
		t.Errorf("after Retry-After: status %d, want 200", resp.StatusCode)
	}
}

// TestLimitFromHandler covers a policy whose subject is only known inside the
// handler (login: IP + username), after the ip middleware.
func TestLimitFromHandler(t *testing.T) {
	l, _ := newMemoryLimiter(t)
	ipm := mustNew(t, l, Options{Items: StaticItems(ratelimit.Item{Policy: ipPolicy})})
	login := ratelimit.Policy{Name: "login", Rate: ratelimit.Rate{N: 2, Per: time.Minute}, Fail: ratelimit.FailClosed}
	var served int
	h := ipm.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		subject := "login:" + SubjectForIP(ClientIP(r, nil)) + ":alice"
		if !ipm.Limit(w, r, subject, ratelimit.Item{Policy: login}) {
			return
		}
		served++
	}))
	var w *httptest.ResponseRecorder
	var o Outcome
	for range 3 {
		w, o = serve(h, get("203.0.113.7:1"))
	}
	if served != 2 || w.Code != http.StatusTooManyRequests || o != OutcomeDenied {
		t.Fatalf("served %d, last status %d, outcome %v; want 2, 429, denied", served, w.Code, o)
	}
	want := fields(`"ip";q=100;w=60, "login";q=2;w=60`, `"ip";r=97;t=1, "login";r=0;t=30`, 2, 0, 30)
	want[HeaderRetryAfter] = "30"
	wantRateHeaders(t, w.Header(), want)
	wantViolated(t, w, "login")
}

// TestCheckThenCharge covers a cost known only after the answer (a failed
// password check): Check consumes nothing and sets no header when it
// admits, Charge consumes and sets the headers but writes nothing even when
// it exhausts the policy, and the next Check answers 429.
func TestCheckThenCharge(t *testing.T) {
	l, _ := newMemoryLimiter(t)
	m := mustNew(t, l, Options{Items: StaticItems()})
	account := ratelimit.Item{Policy: ratelimit.Policy{Name: "login-account", Rate: ratelimit.Rate{N: 2, Per: time.Hour}, Fail: ratelimit.FailClosed}, Cost: 1}
	attempt := func(fail bool) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		r := get("203.0.113.7:1")
		var d ratelimit.Decision
		if !m.Check(w, r, &d, "login-account:alice", account) {
			return w
		}
		if len(w.Header()) != 0 {
			t.Errorf("Check admitted and set headers %v", w.Header())
		}
		if fail {
			m.Charge(w, r, "login-account:alice", account)
		}
		w.WriteHeader(http.StatusNoContent)
		return w
	}
	for i, tc := range []struct {
		fail   bool
		status int
		rate   string
	}{
		{false, 204, ""},
		{false, 204, ""}, // a success costs nothing
		{true, 204, `"login-account";r=1;t=1800`},
		{true, 204, `"login-account";r=0;t=1800`}, // charged to zero, not refused
		{false, 429, `"login-account";r=0;t=1800`},
	} {
		w := attempt(tc.fail)
		if w.Code != tc.status || w.Header().Get("RateLimit") != tc.rate {
			t.Errorf("attempt %d: %d %q, want %d %q", i, w.Code, w.Header().Get("RateLimit"), tc.status, tc.rate)
		}
	}
}

// TestLimitDecidesWithoutAllocating: with an in-process limiter, Limit
// allocates exactly what writing the decision's headers does: the decision
// itself, admitted or denied, allocates nothing.
func TestLimitDecidesWithoutAllocating(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates, and sync.Pool drops entries under it")
	}
	mem := memorylimit.New(memorylimit.Options{SweepInterval: -1})
	defer mem.Close()
	wide := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 1 << 30, Per: time.Second}}
	narrow := ratelimit.Policy{Name: "ip-hour", Rate: ratelimit.Rate{N: 3, Per: time.Hour}, Algorithm: ratelimit.Sliding}
	m := mustNew(t, mem, Options{Items: StaticItems(ratelimit.Item{Policy: wide})})
	r := get("203.0.113.7:1234")
	r = r.WithContext(WithOutcome(r.Context()))
	w := &discardWriter{h: make(http.Header, 8)}
	for _, tc := range []struct {
		name    string
		items   []ratelimit.Item
		allowed bool
	}{
		{"admitted", []ratelimit.Item{{Policy: wide}}, true},
		{"denied", []ratelimit.Item{{Policy: wide}, {Policy: narrow}}, false},
	} {
		subject := "ip:192.0.2." + tc.name
		for range 3 { // narrow's quota: every measured decision denies
			m.Limit(w, r, subject, tc.items...)
		}
		limit := testing.AllocsPerRun(100, func() {
			clear(w.h)
			m.Limit(w, r, subject, tc.items...)
		})
		var d ratelimit.Decision
		if err := mem.Peek(context.Background(), &d, subject, tc.items...); err != nil || d.Allowed != tc.allowed {
			t.Fatalf("%s: Peek = %+v, %v; want allowed %v", tc.name, d, err, tc.allowed)
		}
		headers := testing.AllocsPerRun(100, func() {
			clear(w.h)
			SetHeaders(w.h, tc.items, &d)
			if !d.Allowed {
				writeTooManyRequests(w, tc.items, &d)
			}
		})
		t.Logf("%s: Limit allocates %v times, its response alone %v", tc.name, limit, headers)
		if limit != headers {
			t.Errorf("%s: Limit allocates %v times, its response alone %v: the decision allocates", tc.name, limit, headers)
		}
	}
}
