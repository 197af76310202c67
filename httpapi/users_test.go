package httpapi

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/password"
)

var timeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)

func TestNewServerRejectsMissingDependencies(t *testing.T) {
	full := func() Options {
		ts := newTestServer(t)
		o := ts.opts
		o.Metrics = prometheus.NewRegistry()
		return o
	}
	for _, tc := range []struct {
		name string
		mod  func(*Options)
	}{
		{"Logger", func(o *Options) { o.Logger = nil }},
		{"Users", func(o *Options) { o.Users = nil }},
		{"Tokens", func(o *Options) { o.Tokens = nil }},
		{"Entries", func(o *Options) { o.Entries = nil }},
		{"Passwords", func(o *Options) { o.Passwords = nil }},
		{"Metrics", func(o *Options) { o.Metrics = nil }},
		{"InstanceID", func(o *Options) { o.InstanceID = "" }},
		{"Database", func(o *Options) { o.Database = nil }},
		{"TokenTTL", func(o *Options) { o.TokenTTL = -time.Second }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := full()
			tc.mod(&o)
			h, err := NewServer(o)
			if err == nil || h != nil || !strings.Contains(err.Error(), tc.name) {
				t.Errorf("NewServer without %s = %v, %v; want an error naming it", tc.name, h, err)
			}
		})
	}
	t.Run("registry used twice", func(t *testing.T) {
		o := full()
		if _, err := NewServer(o); err != nil {
			t.Fatal(err)
		}
		if _, err := NewServer(o); err == nil {
			t.Error("second NewServer on one registry succeeded, want a registration error")
		}
	})
}

func TestUserCreate(t *testing.T) {
	bothStores(t, func(t *testing.T, ts *testServer) {
		w := ts.do(t, "POST", "/v1/users", `{"username":"alice","password":"secret-password"}`)
		var u map[string]any
		wantJSON(t, w, http.StatusCreated, &u)
		if got := w.Header().Get("Content-Type"); got != "application/json" {
			t.Errorf("Content-Type = %q", got)
		}
		if len(u) != 3 || u["username"] != "alice" || !journal.ValidID(u["id"].(string)) || !timeRE.MatchString(u["created_at"].(string)) {
			t.Errorf("user = %v, want {id, username, created_at}", u)
		}
		if got, want := u["created_at"], "2025-03-04T05:06:07.123456Z"; got != want {
			t.Errorf("created_at = %v, want %v (clock truncated to µs)", got, want)
		}
		if strings.Contains(w.Body.String(), "password") || strings.Contains(w.Body.String(), "argon2") {
			t.Errorf("response leaks the password or its hash: %s", w.Body)
		}

		p := wantProblem(t, ts.do(t, "POST", "/v1/users", `{"username":"alice","password":"other-password"}`), http.StatusConflict)
		if len(p.Errors) != 1 || p.Errors[0].Field != "username" {
			t.Errorf("409 errors = %v, want username", p.Errors)
		}

		for _, tc := range []struct {
			body   string
			fields []string
		}{
			{`{"username":"al","password":"secret-password"}`, []string{"username"}},
			{`{"username":"Alice","password":"secret-password"}`, []string{"username"}},
			{`{"username":"bob","password":"short"}`, []string{"password"}},
			{`{"username":"bob","password":"` + strings.Repeat("x", 257) + `"}`, []string{"password"}},
			{`{}`, []string{"username", "password"}},
		} {
			p := wantProblem(t, ts.do(t, "POST", "/v1/users", tc.body), http.StatusBadRequest)
			var got []string
			for _, f := range p.Errors {
				got = append(got, f.Field)
			}
			if strings.Join(got, ",") != strings.Join(tc.fields, ",") {
				t.Errorf("POST /v1/users %.40s: error fields %v, want %v", tc.body, got, tc.fields)
			}
		}
	})
}

func TestUserMe(t *testing.T) {
	bothStores(t, func(t *testing.T, ts *testServer) {
		tok := ts.signup(t, "carol")
		w := ts.do(t, "GET", "/v1/users/me", "", auth(tok)...)
		var u map[string]any
		wantJSON(t, w, http.StatusOK, &u)
		if u["username"] != "carol" || len(u) != 3 {
			t.Errorf("me = %v", u)
		}
		if got := w.Header().Get("Cache-Control"); got != "private, no-cache" {
			t.Errorf("Cache-Control = %q, want private, no-cache", got)
		}
		if got := w.Header().Get("Vary"); got != "Authorization" {
			t.Errorf("Vary = %q, want Authorization", got)
		}
	})
}

func TestTokenCreate(t *testing.T) {
	bothStores(t, func(t *testing.T, ts *testServer) {
		ts.do(t, "POST", "/v1/users", `{"username":"dave","password":"dave-password"}`)

		w := ts.do(t, "POST", "/v1/tokens", `{"username":"dave","password":"dave-password"}`)
		var tok map[string]string
		wantJSON(t, w, http.StatusCreated, &tok)
		if got := w.Header().Get("Cache-Control"); got != "no-store" {
			t.Errorf("Cache-Control = %q, want no-store", got)
		}
		if len(tok) != 4 || !journal.WellFormedTokenSecret(tok["token"]) || !journal.ValidID(tok["id"]) || tok["name"] != "" {
			t.Errorf("token response = %v", tok)
		}
		if got, want := tok["expires_at"], "2025-03-04T06:06:07.123456Z"; got != want {
			t.Errorf("expires_at = %q, want %q (now + TTL)", got, want)
		}

		// Wrong password, unknown user and impossible username: the same 401.
		var first problemBody
		for i, body := range []string{
			`{"username":"dave","password":"wrong-password"}`,
			`{"username":"nobody","password":"dave-password"}`,
			`{"username":"NOT VALID","password":"x"}`,
		} {
			w := ts.do(t, "POST", "/v1/tokens", body)
			p := wantProblem(t, w, http.StatusUnauthorized)
			if got := w.Header().Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("WWW-Authenticate = %q", got)
			}
			p.RequestID = ""
			if i == 0 {
				first = p
			} else if p.Detail != first.Detail || p.Title != first.Title || p.Type != first.Type {
				t.Errorf("401 for %s = %+v, differs from wrong password's %+v", body, p, first)
			}
		}
		p := wantProblem(t, ts.do(t, "POST", "/v1/tokens", `{"username":"dave"}`), http.StatusBadRequest)
		if len(p.Errors) != 1 || p.Errors[0].Field != "password" {
			t.Errorf("missing password: errors %v", p.Errors)
		}
	})
}

// TestUnknownUserCostsLikeWrongPassword checks that an unknown user's 401
// does the password work (DummyVerify): with real argon2id parameters, both
// take comparable time (3x margin), while skipping the hash would be orders
// of magnitude faster.
func TestUnknownUserCostsLikeWrongPassword(t *testing.T) {
	// Not parallel: other tests' load would blur the timing.
	real := password.Params{Memory: 2048, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32}
	ts := newTestServer(t, func(o *Options) { o.Passwords = password.New(password.Options{Params: real}) })
	ts.do(t, "POST", "/v1/users", `{"username":"erin","password":"erin-password"}`)
	// Interleave the two kinds so load from other processes hits both alike.
	var wrongs, unknowns []time.Duration
	timeOne := func(body string) time.Duration {
		start := time.Now()
		if w := ts.do(t, "POST", "/v1/tokens", body); w.Code != http.StatusUnauthorized {
			t.Fatalf("status %d", w.Code)
		}
		return time.Since(start)
	}
	for range 9 {
		wrongs = append(wrongs, timeOne(`{"username":"erin","password":"wrong-password"}`))
		unknowns = append(unknowns, timeOne(`{"username":"frank","password":"wrong-password"}`))
	}
	median := func(ds []time.Duration) time.Duration {
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	wrong, unknown := median(wrongs), median(unknowns)
	if unknown*3 < wrong || wrong*3 < unknown {
		t.Errorf("median 401 time: wrong password %v, unknown user %v; want within 3x", wrong, unknown)
	}
}

func TestTokenRevoke(t *testing.T) {
	bothStores(t, func(t *testing.T, ts *testServer) {
		tok := ts.signup(t, "gina")
		if w := ts.do(t, "DELETE", "/v1/tokens/current", "", auth(tok)...); w.Code != http.StatusNoContent || w.Body.Len() != 0 {
			t.Fatalf("DELETE /v1/tokens/current = %d %q, want 204 and no body", w.Code, w.Body)
		}
		for _, req := range [][2]string{{"GET", "/v1/users/me"}, {"DELETE", "/v1/tokens/current"}, {"GET", "/v1/entries"}} {
			w := ts.do(t, req[0], req[1], "", auth(tok)...)
			wantProblem(t, w, http.StatusUnauthorized)
			if got := w.Header().Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("%s %s with a revoked token: WWW-Authenticate = %q", req[0], req[1], got)
			}
		}
	})
}

func TestAuthentication(t *testing.T) {
	bothStores(t, func(t *testing.T, ts *testServer) {
		tok := ts.signup(t, "hank")
		unknown, _ := journal.NewTokenSecret()
		for _, tc := range []struct {
			name   string
			header []string
		}{
			{"missing", nil},
			{"empty", []string{"Authorization", ""}},
			{"basic scheme", []string{"Authorization", "Basic aGFuazpwdw=="}},
			{"no token", []string{"Authorization", "Bearer"}},
			{"malformed token", []string{"Authorization", "Bearer not-a-token"}},
			{"token with padding", []string{"Authorization", "Bearer " + tok + "="}},
			{"unknown token", auth(unknown)},
			{"two headers", hdr(auth(tok), auth(tok))},
		} {
			t.Run(tc.name, func(t *testing.T) {
				w := ts.do(t, "GET", "/v1/entries", "", tc.header...)
				wantProblem(t, w, http.StatusUnauthorized)
				if got := w.Header().Get("WWW-Authenticate"); got != "Bearer" {
					t.Errorf("WWW-Authenticate = %q, want Bearer", got)
				}
			})
		}
		// The scheme is case-insensitive.
		if w := ts.do(t, "GET", "/v1/entries", "", "Authorization", "bearer "+tok); w.Code != http.StatusOK {
			t.Errorf("lower-case scheme: %d", w.Code)
		}
		// Expiry: valid until TokenTTL has passed.
		ts.clock.Advance(time.Hour - time.Microsecond)
		if w := ts.do(t, "GET", "/v1/entries", "", auth(tok)...); w.Code != http.StatusOK {
			t.Errorf("just before expiry: %d", w.Code)
		}
		ts.clock.Advance(time.Microsecond)
		w := ts.do(t, "GET", "/v1/entries", "", auth(tok)...)
		wantProblem(t, w, http.StatusUnauthorized)
	})
}

func TestBusyHasher(t *testing.T) {
	t.Parallel()
	pw := password.New(password.Options{Params: cheapParams, MaxConcurrent: 1, MaxWaiters: -1})
	ts := newTestServer(t, func(o *Options) { o.Passwords = pw })
	creds := `{"username":"ivan","password":"ivan-password"}`
	ts.do(t, "POST", "/v1/users", creds)
	release, err := pw.Reserve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"/v1/users", "/v1/tokens"} {
		w := ts.do(t, "POST", target, strings.Replace(creds, "ivan", "ivan2", 1))
		if target == "/v1/tokens" {
			w = ts.do(t, "POST", target, creds)
		}
		wantProblem(t, w, http.StatusServiceUnavailable)
		if got := w.Header().Get("Retry-After"); got != "1" {
			t.Errorf("POST %s busy: Retry-After = %q, want 1", target, got)
		}
	}
	release()
	if w := ts.do(t, "POST", "/v1/tokens", creds); w.Code != http.StatusCreated {
		t.Errorf("after release: %d", w.Code)
	}
}

// userGone is a user store whose users all vanished.
type userGone struct{ journal.UserStore }

func (userGone) UserByID(context.Context, string) (journal.User, error) {
	return journal.User{}, journal.ErrNotFound
}

func TestUserMeUserGone(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	tok := ts.signup(t, "judy")
	o := ts.opts
	o.Users = userGone{ts.store}
	o.Metrics = prometheus.NewRegistry()
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	ts.h = h
	wantProblem(t, ts.do(t, "GET", "/v1/users/me", "", auth(tok)...), http.StatusUnauthorized)
}
