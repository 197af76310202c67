package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/journalsvc/journal"
)

// login returns a new token of username (password "password-"+username)
// named name.
func (ts *testServer) login(tb testing.TB, username, name string) (token, id string) {
	tb.Helper()
	b, _ := json.Marshal(map[string]string{"username": username, "password": "password-" + username, "name": name})
	w := ts.do(tb, "POST", "/v1/tokens", string(b))
	var out struct{ Token, ID, Name string }
	wantJSON(tb, w, http.StatusCreated, &out)
	if out.Name != name || !journal.ValidID(out.ID) {
		tb.Fatalf("POST /v1/tokens = %s, want name %q and an id", w.Body, name)
	}
	return out.Token, out.ID
}

// status returns the status of an authenticated GET /v1/users/me.
func (ts *testServer) status(tb testing.TB, token string) int {
	tb.Helper()
	return ts.do(tb, "GET", "/v1/users/me", "", auth(token)...).Code
}

func TestPasswordChange(t *testing.T) {
	bothStores(t, func(t *testing.T, ts *testServer) {
		cur := ts.signup(t, "alice")
		other, _ := ts.login(t, "alice", "phone")
		put := func(body string) int {
			return ts.do(t, "PUT", "/v1/users/me/password", body, auth(cur)...).Code
		}

		w := ts.do(t, "PUT", "/v1/users/me/password", `{"current_password":"wrong-password","new_password":"new secret 1"}`, auth(cur)...)
		if p := wantProblem(t, w, http.StatusForbidden); len(p.Errors) != 1 || p.Errors[0].Field != "current_password" {
			t.Errorf("wrong current password: errors %+v, want current_password named", p.Errors)
		}
		w = ts.do(t, "PUT", "/v1/users/me/password", `{"current_password":"password-alice","new_password":"short"}`, auth(cur)...)
		if p := wantProblem(t, w, http.StatusBadRequest); len(p.Errors) != 1 || p.Errors[0].Field != "new_password" {
			t.Errorf("short new password: errors %+v, want new_password named", p.Errors)
		}
		w = ts.do(t, "PUT", "/v1/users/me/password", `{"new_password":"new secret 1"}`, auth(cur)...)
		if p := wantProblem(t, w, http.StatusBadRequest); len(p.Errors) != 1 || p.Errors[0].Field != "current_password" {
			t.Errorf("missing current password: errors %+v", p.Errors)
		}
		if got := put(`{"current_password":"password-alice","new_password":"new secret 1","x":1}`); got != http.StatusBadRequest {
			t.Errorf("unknown field: %d, want 400", got)
		}
		if ts.status(t, other) != http.StatusOK {
			t.Fatal("a refused change revoked the other token")
		}

		if got := put(`{"current_password":"password-alice","new_password":"new secret 1"}`); got != http.StatusNoContent {
			t.Fatalf("PUT /v1/users/me/password = %d, want 204", got)
		}
		if got := ts.status(t, cur); got != http.StatusOK {
			t.Errorf("the token that changed the password: %d, want 200", got)
		}
		if got := ts.status(t, other); got != http.StatusUnauthorized {
			t.Errorf("the other token after the change: %d, want 401", got)
		}
		if got := ts.do(t, "POST", "/v1/tokens", `{"username":"alice","password":"password-alice"}`).Code; got != http.StatusUnauthorized {
			t.Errorf("login with the old password: %d, want 401", got)
		}
		if got := ts.do(t, "POST", "/v1/tokens", `{"username":"alice","password":"new secret 1"}`).Code; got != http.StatusCreated {
			t.Errorf("login with the new password: %d, want 201", got)
		}
		if got := put(`{"current_password":"password-alice","new_password":"new secret 2"}`); got != http.StatusForbidden {
			t.Errorf("change with the replaced password: %d, want 403", got)
		}
	})
}

func TestDeleteAccount(t *testing.T) {
	bothStores(t, func(t *testing.T, ts *testServer) {
		tok := ts.signup(t, "alice")
		other, _ := ts.login(t, "alice", "")
		e, _ := ts.createEntry(t, tok, "secret diary", "words")
		bob := ts.signup(t, "bob")
		bobEntry, _ := ts.createEntry(t, bob, "bob's", "words")

		if w := ts.do(t, "DELETE", "/v1/users/me", "", auth(tok)...); w.Code != http.StatusNoContent {
			t.Fatalf("DELETE /v1/users/me = %d %s", w.Code, w.Body)
		}
		for _, token := range []string{tok, other} {
			if got := ts.status(t, token); got != http.StatusUnauthorized {
				t.Errorf("a token of the deleted account: %d, want 401", got)
			}
		}
		again := ts.signup(t, "alice")
		for _, target := range []string{"/v1/entries", "/v1/entries?q=words", "/v1/export"} {
			w := ts.do(t, "GET", target, "", auth(again)...)
			if w.Code != http.StatusOK || strings.Contains(w.Body.String(), "secret") {
				t.Errorf("GET %s for the new alice = %d %s, want nothing of the old account", target, w.Code, w.Body)
			}
		}
		if got := ts.do(t, "GET", "/v1/entries/"+e["id"].(string), "", auth(again)...).Code; got != http.StatusNotFound {
			t.Errorf("the old entry for the new alice: %d, want 404", got)
		}
		var list struct{ Tokens []map[string]any }
		decodeBody(t, ts.do(t, "GET", "/v1/tokens", "", auth(again)...), &list)
		if len(list.Tokens) != 1 {
			t.Errorf("the new alice has %d tokens, want 1", len(list.Tokens))
		}
		if got := ts.do(t, "GET", "/v1/entries/"+bobEntry["id"].(string), "", auth(bob)...).Code; got != http.StatusOK {
			t.Errorf("bob's entry after alice left: %d", got)
		}
	})
}

func TestTokenSessions(t *testing.T) {
	bothStores(t, func(t *testing.T, ts *testServer) {
		ts.signup(t, "alice")
		ts.clock.Advance(time.Second)
		laptop, laptopID := ts.login(t, "alice", "laptop")
		ts.clock.Advance(time.Second)
		phone, phoneID := ts.login(t, "alice", "phone ☎")
		bob := ts.signup(t, "bob")

		for _, body := range []string{
			`{"username":"alice","password":"password-alice","name":"` + strings.Repeat("x", 65) + `"}`,
			`{"username":"alice","password":"password-alice","name":"a\u0000b"}`,
			`{"username":"alice","password":"password-alice","name":1}`,
		} {
			if w := ts.do(t, "POST", "/v1/tokens", body); w.Code != http.StatusBadRequest {
				t.Errorf("POST /v1/tokens %s = %d, want 400", body, w.Code)
			}
		}

		w := ts.do(t, "GET", "/v1/tokens", "", auth(phone)...)
		if w.Code != http.StatusOK || w.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("GET /v1/tokens = %d %v", w.Code, w.Header())
		}
		var list struct {
			Tokens []map[string]any `json:"tokens"`
		}
		decodeBody(t, w, &list)
		// The signup's token is the oldest.
		if len(list.Tokens) != 3 {
			t.Fatalf("GET /v1/tokens = %s, want 3 tokens", w.Body)
		}
		got := list.Tokens[:2]
		want := []map[string]any{
			{"id": phoneID, "name": "phone ☎", "created_at": "2025-03-04T05:06:09.123456Z", "expires_at": "2025-03-04T06:06:09.123456Z", "current": true},
			{"id": laptopID, "name": "laptop", "created_at": "2025-03-04T05:06:08.123456Z", "expires_at": "2025-03-04T06:06:08.123456Z", "current": false},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("GET /v1/tokens, newest first (-want +got):\n%s", diff)
		}
		for _, secret := range []string{phone, laptop, journal.HashToken(phone), journal.HashToken(laptop)} {
			if strings.Contains(w.Body.String(), secret) {
				t.Errorf("GET /v1/tokens shows a secret or its hash")
			}
		}

		// Another user's id, an unknown id and garbage are 404 alike.
		for _, id := range []string{laptopID, journal.NewID(time.Now()), "garbage"} {
			wantProblem(t, ts.do(t, "DELETE", "/v1/tokens/"+id, "", auth(bob)...), http.StatusNotFound)
		}
		if got := ts.status(t, laptop); got != http.StatusOK {
			t.Fatalf("bob revoked alice's token: %d", got)
		}
		if w := ts.do(t, "DELETE", "/v1/tokens/"+laptopID, "", auth(phone)...); w.Code != http.StatusNoContent {
			t.Fatalf("DELETE /v1/tokens/{id} = %d %s", w.Code, w.Body)
		}
		if got := ts.status(t, laptop); got != http.StatusUnauthorized {
			t.Errorf("the revoked token: %d, want 401", got)
		}
		wantProblem(t, ts.do(t, "DELETE", "/v1/tokens/"+laptopID, "", auth(phone)...), http.StatusNotFound)

		// Log out everywhere: the current token too; bob stays.
		if w := ts.do(t, "DELETE", "/v1/tokens", "", auth(phone)...); w.Code != http.StatusNoContent {
			t.Fatalf("DELETE /v1/tokens = %d %s", w.Code, w.Body)
		}
		if got := ts.status(t, phone); got != http.StatusUnauthorized {
			t.Errorf("the current token after logging out everywhere: %d, want 401", got)
		}
		if got := ts.status(t, bob); got != http.StatusOK {
			t.Errorf("bob after alice logged out everywhere: %d", got)
		}
	})
}

func TestIdempotencyKey(t *testing.T) {
	bothStores(t, func(t *testing.T, ts *testServer) {
		tok := ts.signup(t, "alice")
		post := func(key, body string) *httptestRecorder {
			return ts.do(t, "POST", "/v1/entries", body, hdr(auth(tok), []string{"Idempotency-Key", key})...)
		}
		count := func() int {
			var page struct{ Entries []any }
			decodeBody(t, ts.do(t, "GET", "/v1/entries?limit=100", "", auth(tok)...), &page)
			return len(page.Entries)
		}
		first := post(`"k-1"`, `{"title":"once"}`)
		if first.Code != http.StatusCreated || first.Header().Get("Idempotent-Replayed") != "" {
			t.Fatalf("first POST = %d %v", first.Code, first.Header())
		}
		id := strings.TrimPrefix(first.Header().Get("Location"), "/v1/entries/")
		// A retry, the key written as a bare token: the same response.
		ts.clock.Advance(30 * time.Minute)
		again := post(`k-1`, `{"title":"once"}`)
		if again.Code != http.StatusCreated || again.Header().Get("Idempotent-Replayed") != "true" {
			t.Fatalf("retry = %d %v, want 201 replayed", again.Code, again.Header())
		}
		for _, h := range []string{"Location", "ETag", "Content-Type"} {
			if again.Header().Get(h) != first.Header().Get(h) {
				t.Errorf("replayed %s = %q, first %q", h, again.Header().Get(h), first.Header().Get(h))
			}
		}
		if again.Body.String() != first.Body.String() {
			t.Errorf("replayed body = %s, first %s", again.Body, first.Body)
		}
		if got := count(); got != 1 {
			t.Errorf("%d entries after a retry, want 1", got)
		}
		// Still replayed after the entry changed and was deleted.
		ts.do(t, "PATCH", "/v1/entries/"+id, `{"title":"changed"}`, auth(tok)...)
		ts.do(t, "DELETE", "/v1/entries/"+id, "", auth(tok)...)
		if w := post(`"k-1"`, `{"title":"once"}`); w.Code != http.StatusCreated || w.Body.String() != first.Body.String() {
			t.Errorf("retry after the entry was deleted = %d %s, want the first response", w.Code, w.Body)
		}
		if got := count(); got != 0 {
			t.Errorf("a retry re-created the deleted entry: %d entries", got)
		}
		// Another body with the key: 422.
		wantProblem(t, post(`"k-1"`, `{"title":"twice"}`), http.StatusUnprocessableEntity)
		wantProblem(t, post(`"k-1"`, `{"title": "once"}`), http.StatusUnprocessableEntity)
		// Malformed keys: 400 naming the header.
		for _, key := range []string{`""`, `"open`, strings.Repeat("k", 256), `a b`, `"a";p=1`} {
			p := wantProblem(t, post(key, `{"title":"x"}`), http.StatusBadRequest)
			if len(p.Errors) != 1 || p.Errors[0].Field != "Idempotency-Key" {
				t.Errorf("key %q: errors %+v", key, p.Errors)
			}
		}
		w := ts.do(t, "POST", "/v1/entries", `{"title":"x"}`, hdr(auth(tok), []string{"Idempotency-Key", "a"}, []string{"Idempotency-Key", "b"})...)
		wantProblem(t, w, http.StatusBadRequest)

		// A first request that failed stores nothing: the retry runs.
		wantProblem(t, post("k-2", `{"title":""}`), http.StatusBadRequest)
		if w := post("k-2", `{"title":"fixed"}`); w.Code != http.StatusCreated || w.Header().Get("Idempotent-Replayed") != "" {
			t.Errorf("retry of a failed request = %d %v, want a new 201", w.Code, w.Header())
		}

		// While another request holds the key: 409 with Retry-After: 1.
		uid := ts.userID(t, tok)
		now := ts.clock.Now()
		fp := journal.RequestFingerprint("POST", "/v1/entries", []byte(`{"title":"slow"}`))
		if _, ok, err := ts.opts.Idempotency.ClaimIdempotencyKey(t.Context(), journal.IdempotencyRecord{
			UserID: uid, Key: "k-3", Fingerprint: fp, Claim: "elsewhere", ExpiresAt: now.Add(DefaultIdempotencyPending),
		}, now); err != nil || !ok {
			t.Fatalf("claim = %v, %v", ok, err)
		}
		w = post("k-3", `{"title":"slow"}`)
		wantProblem(t, w, http.StatusConflict)
		if got := w.Header().Get("Retry-After"); got != "1" {
			t.Errorf("409 Retry-After = %q, want 1", got)
		}
		wantProblem(t, post("k-3", `{"title":"other"}`), http.StatusUnprocessableEntity)
		// A claim that outlived its bound (the request crashed) frees the key.
		ts.clock.Advance(DefaultIdempotencyPending)
		if w := post("k-3", `{"title":"slow"}`); w.Code != http.StatusCreated || w.Header().Get("Idempotent-Replayed") != "" {
			t.Errorf("after the pending claim expired = %d %v, want a new 201", w.Code, w.Header())
		}
		// Past JOURNAL_IDEMPOTENCY_TTL the key is forgotten.
		ts.clock.Advance(DefaultIdempotencyTTL)
		tok, _ = ts.login(t, "alice", "") // the old one expired too
		if w := post(`"k-1"`, `{"title":"twice"}`); w.Code != http.StatusCreated || w.Header().Get("Idempotent-Replayed") != "" {
			t.Errorf("after the TTL = %d %v, want a new 201", w.Code, w.Header())
		}
		// Keys are per user.
		bob := ts.signup(t, "bob")
		w = ts.do(t, "POST", "/v1/entries", `{"title":"fixed"}`, hdr(auth(bob), []string{"Idempotency-Key", "k-2"})...)
		if w.Code != http.StatusCreated || w.Header().Get("Idempotent-Replayed") != "" {
			t.Errorf("bob's k-2 = %d %v, want his own 201", w.Code, w.Header())
		}
	})
}

// httptestRecorder shortens the type in closures.
type httptestRecorder = httptest.ResponseRecorder

// TestIdempotencyConcurrent: the same key sent many times at once creates
// one entry; every answer is the 201, its replay, or 409.
func TestIdempotencyConcurrent(t *testing.T) {
	bothStores(t, func(t *testing.T, ts *testServer) {
		tok := ts.signup(t, "alice")
		const n = 20
		var wg sync.WaitGroup
		codes := make([]int, n)
		for i := range n {
			wg.Go(func() {
				codes[i] = ts.do(t, "POST", "/v1/entries", `{"title":"once"}`, hdr(auth(tok), []string{"Idempotency-Key", "same"})...).Code
			})
		}
		wg.Wait()
		for _, c := range codes {
			if c != http.StatusCreated && c != http.StatusConflict {
				t.Errorf("answers %v: want only 201 and 409", codes)
				break
			}
		}
		var page struct{ Entries []any }
		decodeBody(t, ts.do(t, "GET", "/v1/entries", "", auth(tok)...), &page)
		if len(page.Entries) != 1 {
			t.Errorf("%d concurrent requests with one key created %d entries, want 1", n, len(page.Entries))
		}
	})
}

// userID returns the id of the user of token.
func (ts *testServer) userID(tb testing.TB, token string) string {
	tb.Helper()
	var me struct{ ID string }
	decodeBody(tb, ts.do(tb, "GET", "/v1/users/me", "", auth(token)...), &me)
	return me.ID
}

func TestSearchAndFilters(t *testing.T) {
	bothStores(t, func(t *testing.T, ts *testServer) {
		tok := ts.signup(t, "alice")
		titles := []string{"Rain in Spain", "Sunny day", "rain again", "RAIN, rain!", "Snow"}
		var times []string
		for _, title := range titles {
			e, _ := ts.createEntry(t, tok, title, "")
			times = append(times, e["created_at"].(string))
			ts.clock.Advance(time.Second)
		}
		list := func(query string) (titles []string, next *string, code int) {
			w := ts.do(t, "GET", "/v1/entries?"+query, "", auth(tok)...)
			if w.Code != http.StatusOK {
				return nil, nil, w.Code
			}
			var page struct {
				Entries    []struct{ Title string } `json:"entries"`
				NextCursor *string                  `json:"next_cursor"`
			}
			decodeBody(t, w, &page)
			for _, e := range page.Entries {
				titles = append(titles, e.Title)
			}
			return titles, page.NextCursor, w.Code
		}
		got, _, _ := list("q=rain")
		if diff := cmp.Diff([]string{"RAIN, rain!", "rain again", "Rain in Spain"}, got); diff != "" {
			t.Errorf("q=rain (-want +got):\n%s", diff)
		}
		got, _, _ = list("q=" + url.QueryEscape("spain RAIN"))
		if diff := cmp.Diff([]string{"Rain in Spain"}, got); diff != "" {
			t.Errorf("q=spain RAIN (-want +got):\n%s", diff)
		}
		got, _, _ = list("from=" + url.QueryEscape(times[1]) + "&to=" + url.QueryEscape(times[3]))
		if diff := cmp.Diff([]string{"rain again", "Sunny day"}, got); diff != "" {
			t.Errorf("from/to (-want +got):\n%s", diff)
		}
		// Pages of one follow the cursor, which carries the filter.
		got, next, _ := list("q=rain&limit=1")
		var all []string
		all = append(all, got...)
		for next != nil {
			got, next, _ = list("limit=1&cursor=" + *next)
			all = append(all, got...)
		}
		if diff := cmp.Diff([]string{"RAIN, rain!", "rain again", "Rain in Spain"}, all); diff != "" {
			t.Errorf("pages of q=rain (-want +got):\n%s", diff)
		}
		_, next, _ = list("q=rain&limit=1")
		if _, _, code := list("q=rain&limit=1&cursor=" + *next); code != http.StatusOK {
			t.Errorf("cursor with its own filter: %d, want 200", code)
		}
		w := ts.do(t, "GET", "/v1/entries?q=snow&cursor="+*next, "", auth(tok)...)
		if p := wantProblem(t, w, http.StatusBadRequest); len(p.Errors) != 1 || p.Errors[0].Field != "cursor" {
			t.Errorf("cursor with another filter: errors %+v", p.Errors)
		}
		// Bad input: 400 naming the parameter; unknown parameters ignored.
		for query, field := range map[string]string{
			"q=" + url.QueryEscape("!!"): "q", "q=a+b+c+d+e+f+g+h+i+j+k": "q", "from=yesterday": "from",
			"to=2025-13-01T00:00:00Z": "to", "from=2026-01-01T00:00:00Z&to=2025-01-01T00:00:00Z": "to",
			"q=a&q=b": "q", "limit=1&limit=2": "limit", "cursor=x": "cursor",
		} {
			p := wantProblem(t, ts.do(t, "GET", "/v1/entries?"+query, "", auth(tok)...), http.StatusBadRequest)
			if len(p.Errors) != 1 || p.Errors[0].Field != field {
				t.Errorf("?%s: errors %+v, want %s named", query, p.Errors, field)
			}
		}
		for _, query := range []string{"q=%zz", "q=rain;limit=1", "limit=%"} {
			wantProblem(t, ts.do(t, "GET", "/v1/entries?"+query, "", auth(tok)...), http.StatusBadRequest)
		}
		if got, _, code := list("q=rain&sort=asc&sort=desc"); code != http.StatusOK || len(got) != 3 {
			t.Errorf("unknown parameters: %d %v, want them ignored", code, got)
		}
		// Every other API route reads no parameter, but refuses a query
		// string that does not parse, before it changes anything.
		entry, _ := ts.createEntry(t, tok, "kept", "")
		before, _, _ := list("")
		var tokens struct{ Tokens []struct{ ID string } }
		decodeBody(t, ts.do(t, "GET", "/v1/tokens", "", auth(tok)...), &tokens)
		bodies := map[string]string{
			"POST /v1/users":            `{"username":"carol","password":"password-carol"}`,
			"POST /v1/tokens":           `{"username":"alice","password":"password-alice"}`,
			"POST /v1/entries":          `{"title":"x"}`,
			"PATCH /v1/entries/{id}":    `{"title":"changed"}`,
			"PUT /v1/users/me/password": `{"current_password":"password-alice","new_password":"another one"}`,
		}
		for _, rt := range routes(ts.opts, nil) {
			if rt.Access != accessPublic && rt.Access != accessAuth {
				continue
			}
			method, path, _ := strings.Cut(rt.Pattern, " ")
			path = strings.Replace(path, "{id}", entry["id"].(string), 1)
			if strings.HasPrefix(path, "/v1/tokens/") && path != "/v1/tokens/current" {
				path = "/v1/tokens/" + tokens.Tokens[0].ID
			}
			wantProblem(t, ts.do(t, method, path+"?x=%zz", bodies[rt.Pattern], auth(tok)...), http.StatusBadRequest)
		}
		if w := ts.do(t, "GET", "/v1/entries/"+entry["id"].(string)+"?x=1&x=2", "", auth(tok)...); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"kept"`) {
			t.Fatalf("after the refused requests: %d %s, want the entry unchanged and the token valid", w.Code, w.Body)
		}
		if got, _, _ := list(""); len(got) != len(before) {
			t.Errorf("after the refused requests: %d entries, want %d", len(got), len(before))
		}
	})
}

func TestExport(t *testing.T) {
	bothStores(t, func(t *testing.T, ts *testServer) {
		tok := ts.signup(t, "alice")
		var want []string
		for i := range exportBatch + 3 {
			want = append(want, fmt.Sprint("entry ", i))
			ts.createEntry(t, tok, want[i], "line one\nline two")
			ts.clock.Advance(time.Microsecond)
		}
		ts.createEntry(t, ts.signup(t, "bob"), "bob's", "")
		w := ts.do(t, "GET", "/v1/export", "", auth(tok)...)
		if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("GET /v1/export = %d %v", w.Code, w.Header())
		}
		var got []string
		sc := bufio.NewScanner(bytes.NewReader(w.Body.Bytes()))
		for sc.Scan() {
			var e entryJSON
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("line %q: %v", sc.Bytes(), err)
			}
			got = append(got, e.Title)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("export, oldest first (-want +got):\n%s", diff)
		}
		if w := ts.do(t, "GET", "/v1/export", ""); w.Code != http.StatusUnauthorized {
			t.Errorf("GET /v1/export without a token = %d", w.Code)
		}
	})
}
