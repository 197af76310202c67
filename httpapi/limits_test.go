package httpapi

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/httplimit"
	"github.com/journalsvc/journal/ratelimit/memorylimit"
)

// recordingLimiter is the in-process limiter, recording each call as
// "decide|peek <subject kind> <policies>" (the subject kind is the subject
// up to its first colon) and each full subject.
type recordingLimiter struct {
	ratelimit.Limiter
	mu       sync.Mutex
	calls    []string
	subjects []string
}

func newRecordingLimiter(tb testing.TB) *recordingLimiter {
	lim := memorylimit.New(memorylimit.Options{SweepInterval: -1})
	tb.Cleanup(func() { _ = lim.Close() })
	return &recordingLimiter{Limiter: lim}
}

func (l *recordingLimiter) note(op, subject string, items []ratelimit.Item) {
	names := make([]string, len(items))
	for i, it := range items {
		names[i] = it.Policy.Name
	}
	kind, _, _ := strings.Cut(subject, ":")
	l.mu.Lock()
	l.calls = append(l.calls, op+" "+kind+" "+strings.Join(names, ","))
	l.subjects = append(l.subjects, subject)
	l.mu.Unlock()
}

func (l *recordingLimiter) Decide(ctx context.Context, d *ratelimit.Decision, subject string, items ...ratelimit.Item) error {
	l.note("decide", subject, items)
	return l.Limiter.Decide(ctx, d, subject, items...)
}

func (l *recordingLimiter) Peek(ctx context.Context, d *ratelimit.Decision, subject string, items ...ratelimit.Item) error {
	l.note("peek", subject, items)
	return l.Limiter.Peek(ctx, d, subject, items...)
}

// take returns the calls and subjects recorded since the last take.
func (l *recordingLimiter) take() (calls, subjects []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	calls, subjects = l.calls, l.subjects
	l.calls, l.subjects = nil, nil
	return calls, subjects
}

func item(name string, n int64, per time.Duration) []ratelimit.Item {
	return []ratelimit.Item{{Policy: ratelimit.Policy{Name: name, Rate: ratelimit.Rate{N: n, Per: per}}, Cost: 1}}
}

// testPolicies are generous everywhere but login-account (3 failures).
func testPolicies() Policies {
	return Policies{
		IP:           item("ip", 1000, time.Minute),
		Signup:       item("signup", 1000, time.Hour),
		Login:        item("login", 1000, time.Minute),
		LoginAccount: item("login-account", 3, time.Hour),
		User:         item("user", 1000, time.Hour),
	}
}

// TestRoutesDeclareTheirLimits checks which decisions each route makes and
// in what order: the IP policies before authentication on every public and
// authenticated route and on unmatched requests (with Signup on POST
// /v1/users), the User policies after authentication, and on the two
// routes that check a password the Login decision and a LoginAccount peek
// before the check, a LoginAccount decision after a failed one; nothing on
// the operational routes.
func TestRoutesDeclareTheirLimits(t *testing.T) {
	t.Parallel()
	lim := newRecordingLimiter(t)
	ts := newTestServer(t, func(o *Options) { o.Limiter, o.Policies = lim, testPolicies() })
	tok := ts.signup(t, "gus")
	me := ts.userID(t, tok)
	lim.take()

	const (
		ip      = "decide ip ip"
		user    = "decide user user"
		login   = "decide login login"
		peek    = "peek login-account login-account"
		account = "decide login-account login-account"
	)
	for _, tc := range []struct {
		method, target, body string
		header               []string
		status               int
		want                 []string
	}{
		{"GET", "/v1/entries", "", auth(tok), 200, []string{ip, user}},
		{"GET", "/v1/entries", "", nil, 401, []string{ip}},
		{"POST", "/v1/users", `{"username":"hal","password":"password-hal"}`, nil, 201, []string{"decide ip ip,signup"}},
		{"POST", "/v1/tokens", `{"username":"gus","password":"password-gus"}`, nil, 201, []string{ip, login, peek}},
		{"POST", "/v1/tokens", `{"username":"gus","password":"wrong-password"}`, nil, 401, []string{ip, login, peek, account}},
		{"POST", "/v1/tokens", `{"username":"nobody","password":"wrong-password"}`, nil, 401, []string{ip, login, peek, account}},
		// Refused before any password is checked: no login decision.
		{"POST", "/v1/tokens", `{"username":"gus"}`, nil, 400, []string{ip}},
		{"POST", "/v1/tokens", `not json`, nil, 400, []string{ip}},
		{"PUT", "/v1/users/me/password", `{"current_password":"wrong-password","new_password":"password-gus-2"}`, auth(tok), 403, []string{ip, user, login, peek, account}},
		{"GET", "/nowhere", "", nil, 404, []string{ip}},
		{"PUT", "/livez", "", nil, 405, []string{ip}},
		{"GET", "/livez", "", nil, 200, nil},
		{"GET", "/readyz", "", nil, 200, nil},
		{"GET", "/metrics", "", nil, 200, nil},
		{"GET", "/openapi.json", "", nil, 200, nil},
	} {
		w := ts.do(t, tc.method, tc.target, tc.body, tc.header...)
		calls, subjects := lim.take()
		if w.Code != tc.status {
			t.Errorf("%s %s %s: %d, want %d; %s", tc.method, tc.target, tc.body, w.Code, tc.status, w.Body)
		}
		if strings.Join(calls, " | ") != strings.Join(tc.want, " | ") {
			t.Errorf("%s %s %s: limiter calls\n\t%q\nwant\n\t%q", tc.method, tc.target, tc.body, calls, tc.want)
		}
		for _, s := range subjects {
			if strings.HasPrefix(s, "user:") && s != "user:"+me {
				t.Errorf("%s %s: user subject %q, want user:%s", tc.method, tc.target, s, me)
			}
			if strings.Contains(s, "gus") || strings.Contains(s, "nobody") {
				t.Errorf("%s %s: subject %q holds the username in clear", tc.method, tc.target, s)
			}
		}
	}
}

// TestLoginAccountLimit: failed password checks of one username, from any
// address, are counted against it; once they reach the limit its logins
// are refused with 429 before the password is checked (the right password
// included), while successful logins before that count nothing and other
// usernames are unaffected.
func TestLoginAccountLimit(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(o *Options) {
		o.Limiter, o.Policies = newRecordingLimiter(t), testPolicies()
		trusted, err := httplimit.ParseTrustedProxies("192.0.2.0/24")
		if err != nil {
			t.Fatal(err)
		}
		o.TrustedProxies = trusted
	})
	ts.signup(t, "gus")
	ts.signup(t, "hal")
	login := func(user, pass, from string) *http.Response {
		w := ts.do(t, "POST", "/v1/tokens", `{"username":"`+user+`","password":"`+pass+`"}`,
			"X-Forwarded-For", from)
		return w.Result()
	}
	for range 5 {
		if r := login("gus", "password-gus", "203.0.113.1"); r.StatusCode != 201 {
			t.Fatalf("right password: %d", r.StatusCode)
		}
	}
	// Three failures, each from another address.
	for i, from := range []string{"203.0.113.2", "203.0.113.3", "2001:db8::1"} {
		r := login("gus", "wrong-password", from)
		if r.StatusCode != 401 {
			t.Fatalf("failure %d: %d, want 401", i, r.StatusCode)
		}
		if got, want := r.Header.Get("RateLimit"), `"login-account";r=`+string(rune('2'-i)); !strings.Contains(got, want) {
			t.Errorf("failure %d: RateLimit %q, want it to contain %s", i, got, want)
		}
	}
	r := login("gus", "password-gus", "203.0.113.9")
	if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("right password after the account's failures: %d %v, want 429 with Retry-After", r.StatusCode, r.Header)
	}
	w := ts.do(t, "POST", "/v1/tokens", `{"username":"gus","password":"password-gus"}`)
	if w.Code != http.StatusTooManyRequests || !strings.Contains(w.Body.String(), `"violated-policies":["login-account"]`) {
		t.Errorf("429 body %s does not name login-account alone", w.Body)
	}
	if r := login("hal", "password-hal", "203.0.113.1"); r.StatusCode != 201 {
		t.Errorf("another username: %d, want 201", r.StatusCode)
	}
}
