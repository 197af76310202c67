package httpapi

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestAuthorizationIsolatesUsers: user B never gets a 2xx, 304 or 412 on
// user A's resources, for every route of the table, method, conditional
// header and cursor, and no response to B carries anything of A's (entry
// ids, titles, token ids, username). Every authenticated route of the table
// must be covered: a new route fails the test until it is added here.
func TestAuthorizationIsolatesUsers(t *testing.T) {
	bothStores(t, func(t *testing.T, ts *testServer) {
		aTok := ts.signup(t, "alice")
		bTok := ts.signup(t, "bob")
		var aEntries []string
		var aTag string
		for _, title := range []string{"alicesecretone", "alicesecrettwo", "alicesecretthree"} {
			e, tag := ts.createEntry(t, aTok, title, "private words of alice")
			aEntries = append(aEntries, e["id"].(string))
			aTag = tag
		}
		ts.createEntry(t, bTok, "bob's own", "bob")
		// A's cursor, A's token id and A's Idempotency-Key.
		var page struct {
			NextCursor string `json:"next_cursor"`
		}
		decodeBody(t, ts.do(t, "GET", "/v1/entries?limit=1", "", auth(aTok)...), &page)
		var toks struct {
			Tokens []struct{ ID string } `json:"tokens"`
		}
		decodeBody(t, ts.do(t, "GET", "/v1/tokens", "", auth(aTok)...), &toks)
		aTokenID := toks.Tokens[0].ID
		const aKey = `"alice-key-1"`
		if w := ts.do(t, "POST", "/v1/entries", `{"title":"keyed"}`, hdr(auth(aTok), []string{"Idempotency-Key", aKey})...); w.Code != http.StatusCreated {
			t.Fatalf("A's keyed POST = %d", w.Code)
		}
		secrets := append([]string{"alicesecret", "alice\"", aTokenID}, aEntries...)

		// The requests B makes: on A's resources (must not succeed) and on
		// its own (must show nothing of A's).
		conds := [][]string{nil, {"If-Match", aTag}, {"If-None-Match", aTag}, {"If-Match", "*"}, {"If-None-Match", "*"}}
		type req struct {
			method, target, body string
			header               []string
			onA                  bool // targets A's resource: no 2xx, 304 or 412
			fresh                bool // ends B's sessions: made with a new token
		}
		var reqs []req
		covered := map[string]bool{}
		add := func(pattern string, r ...req) {
			covered[pattern] = true
			reqs = append(reqs, r...)
		}
		for _, id := range aEntries {
			for _, c := range conds {
				add("GET /v1/entries/{id}", req{"GET", "/v1/entries/" + id, "", c, true, false})
				add("PATCH /v1/entries/{id}", req{"PATCH", "/v1/entries/" + id, `{"title":"bob was here"}`, c, true, false})
				add("DELETE /v1/entries/{id}", req{"DELETE", "/v1/entries/" + id, "", c, true, false})
			}
		}
		for _, c := range conds {
			add("GET /v1/entries",
				req{"GET", "/v1/entries", "", c, false, false},
				req{"GET", "/v1/entries?cursor=" + url.QueryEscape(page.NextCursor), "", c, false, false},
				req{"GET", "/v1/entries?q=alicesecretone", "", c, false, false},
				req{"GET", "/v1/entries?limit=100&from=2000-01-01T00:00:00Z", "", c, false, false})
		}
		add("POST /v1/entries", req{"POST", "/v1/entries", `{"title":"keyed"}`, []string{"Idempotency-Key", aKey}, false, false})
		add("GET /v1/export", req{"GET", "/v1/export", "", nil, false, false})
		add("GET /v1/users/me", req{"GET", "/v1/users/me", "", nil, false, false})
		add("GET /v1/tokens", req{"GET", "/v1/tokens", "", nil, false, false})
		add("DELETE /v1/tokens/{id}", req{"DELETE", "/v1/tokens/" + aTokenID, "", nil, true, false})
		// The routes that act on B's own account last: they end B's sessions.
		add("PUT /v1/users/me/password", req{"PUT", "/v1/users/me/password", `{"current_password":"password-bob","new_password":"another password"}`, nil, false, true})
		add("DELETE /v1/tokens/current", req{"DELETE", "/v1/tokens/current", "", nil, false, true})
		add("DELETE /v1/tokens", req{"DELETE", "/v1/tokens", "", nil, false, true})
		add("DELETE /v1/users/me", req{"DELETE", "/v1/users/me", "", nil, false, true})
		// Routes without a user's data.
		for _, p := range []string{"POST /v1/users", "POST /v1/tokens", "GET /livez", "GET /readyz", "GET /metrics", "GET /openapi.json"} {
			covered[p] = true
		}
		for _, r := range routes(ts.opts, nil) {
			if !covered[r.Pattern] {
				t.Errorf("route %q is not covered by the authorization test", r.Pattern)
			}
		}

		bobPassword := "password-bob"
		bearer := bTok
		for _, r := range reqs {
			if r.fresh {
				var tok struct{ Token string }
				decodeBody(t, ts.do(t, "POST", "/v1/tokens", `{"username":"bob","password":"`+bobPassword+`"}`), &tok)
				bearer = tok.Token
				if r.method == "PUT" {
					bobPassword = "another password"
				}
			}
			w := ts.do(t, r.method, r.target, r.body, hdr(auth(bearer), r.header)...)
			what := r.method + " " + r.target + " " + strings.Join(r.header, ": ")
			if r.onA && (w.Code/100 == 2 || w.Code == http.StatusNotModified || w.Code == http.StatusPreconditionFailed) {
				t.Errorf("B's %s on A's resource = %d, want no 2xx, 304 or 412", what, w.Code)
			}
			for _, s := range secrets {
				if strings.Contains(w.Body.String(), s) {
					t.Errorf("B's %s = %d, and its body carries A's %q: %s", what, w.Code, s, w.Body)
				}
			}
		}

		// A's data is intact.
		for _, id := range aEntries {
			if w := ts.do(t, "GET", "/v1/entries/"+id, "", auth(aTok)...); w.Code != http.StatusOK {
				t.Errorf("A's GET %s after B's requests = %d, want 200", id, w.Code)
			}
		}
		if w := ts.do(t, "GET", "/v1/users/me", "", auth(aTok)...); w.Code != http.StatusOK {
			t.Errorf("A's token after B's requests = %d, want 200", w.Code)
		}
	})
}
