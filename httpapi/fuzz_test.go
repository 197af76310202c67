package httpapi

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/journalsvc/journal"
)

// FuzzDecodeJSON feeds arbitrary bodies to the request decoder of every
// request type: it must never panic, every error must map to a 4xx problem,
// and a success must come from one valid JSON object.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"title":"t","body":"b"}`, `{"title":null}`, `{}`, `null`, `[]`, `{"username":"abc","password":"password1"}`,
		`{"title":"t"} {}`, `{"TITLE":"x"}`, `{"title":1e999}`, "{\"title\":\"\xff\"}", `{"title":"\ud800"}`,
		`{"a":{"b":[1,2,{"c":null}]}}`, ` {"body":""}` + "\n",
	} {
		f.Add([]byte(s))
	}
	targets := []func() any{
		func() any { return new(entryCreateRequest) },
		func() any { return new(entryPatchRequest) },
		func() any { return new(credentialsRequest) },
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, target := range targets {
			dst := target()
			r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			err := decodeJSON(httptest.NewRecorder(), r, dst)
			if err != nil {
				if p := problemFor(r, err); p.Status < 400 || p.Status > 499 {
					t.Fatalf("decode %q into %T: error %v maps to %d, want 4xx", body, dst, err, p.Status)
				}
				continue
			}
			if !json.Valid(body) || len(bytes.TrimLeft(body, jsonSpace)) == 0 || bytes.TrimLeft(body, jsonSpace)[0] != '{' {
				t.Fatalf("decode %q into %T succeeded on a body that is not one JSON object", body, dst)
			}
		}
		// The same bodies through a handler never answer 5xx.
		if len(body) < 4096 {
			w := httptest.NewRecorder()
			r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			decodeOnly.ServeHTTP(w, r)
			if w.Code >= 500 {
				t.Fatalf("handler answered %d to %q", w.Code, body)
			}
		}
	})
}

var decodeOnly = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	var in entryPatchRequest
	if err := decodeJSON(w, r, &in); err != nil {
		writeError(w, r, slog.New(slog.DiscardHandler), err)
		return
	}
	if err := validateEntryFields(in.Title, in.Body, false); err != nil {
		writeError(w, r, slog.New(slog.DiscardHandler), err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
})

// FuzzConditionalHeaders: If-Match and If-None-Match are client input on
// every entry route. parseETags never panics and returns only quoted
// entity-tags; parseEntryETag accepts only the canonical strong ETag of a
// version; and a GET or PATCH with any such header answers 200, 304, 412 or
// 400, never 5xx, matching or not as RFC 9110 says.
func FuzzConditionalHeaders(f *testing.F) {
	for _, s := range []string{
		`"v1"`, `W/"v1"`, `*`, `"v1", "v2"`, `"v01"`, `"v0"`, `"v-1"`, `"v9223372036854775807"`, `"v9223372036854775808"`,
		`"x"`, `""`, `"`, `W/`, `W/"`, `"v1",`, `,,,"v1"`, ` "v1" `, `"v1"*`, `*"v1"`, `"v1""v2"`, "\"v1\"\t,\t\"v2\"", `"v+1"`, `"v 1"`,
	} {
		f.Add(s, s)
	}
	ts := newTestServer(f)
	tok := ts.signup(f, "fuzz")
	e, _ := ts.createEntry(f, tok, "t", "b")
	id := e["id"].(string)
	f.Fuzz(func(t *testing.T, a, b string) {
		tags, _ := parseETags([]string{a, b})
		for _, tg := range tags {
			o := tg.opaque
			if len(o) < 2 || o[0] != '"' || o[len(o)-1] != '"' || strings.Contains(o[1:len(o)-1], `"`) {
				t.Fatalf("parseETags(%q, %q) returned the tag %q, not one quoted opaque-tag", a, b, o)
			}
			if v, ok := parseEntryETag(tg); ok && (tg.weak || v < 1 || o != `"v`+strconv.FormatInt(v, 10)+`"`) {
				t.Fatalf("parseEntryETag(%+v) = %d: not the canonical strong ETag of a version", tg, v)
			}
		}

		// The entry's version only grows (PATCHes below may apply).
		r := httptest.NewRequest("GET", "/v1/entries/"+id, nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		cur := serve(ts, r).Header().Get("ETag")
		r = httptest.NewRequest("GET", "/v1/entries/"+id, nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header["If-None-Match"] = []string{a, b}
		w := serve(ts, r)
		if w.Code != http.StatusOK && w.Code != http.StatusNotModified {
			t.Fatalf("GET with If-None-Match %q, %q = %d %s", a, b, w.Code, w.Body)
		}
		if want := noneMatch(r, cur); (w.Code == http.StatusNotModified) != want {
			t.Fatalf("GET with If-None-Match %q, %q (ETag %s) = %d, want 304 %v", a, b, cur, w.Code, want)
		}
		r = httptest.NewRequest("PATCH", "/v1/entries/"+id, strings.NewReader(`{"body":"x"}`))
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("Content-Type", "application/json")
		r.Header["If-Match"] = []string{a, b}
		w = serve(ts, r)
		if w.Code != http.StatusOK && w.Code != http.StatusPreconditionFailed {
			t.Fatalf("PATCH with If-Match %q, %q = %d %s", a, b, w.Code, w.Body)
		}
	})
}

// FuzzBearerToken: the Authorization header is client input on every
// authenticated route. bearerToken never panics and accepts only "Bearer"
// (any case), spaces, and 43 characters of unpadded base64url, so nothing
// else reaches the token store; anything else is 401 without a lookup.
func FuzzBearerToken(f *testing.F) {
	secret, _ := journal.NewTokenSecret()
	for _, s := range []string{
		"Bearer " + secret, "bearer " + secret, "BEARER  " + secret, "Bearer " + secret + " ", "Bearer\t" + secret,
		"Basic " + secret, "Bearer", "Bearer ", "Bearer " + secret[:42], "Bearer " + secret + "A", "Bearer " + secret[:42] + "=",
		"Bearer " + secret[:42] + "\n", "Bearer " + secret[:21] + "\r\n" + secret[21:40], "Bearer " + strings.Repeat("/", 43), "",
	} {
		f.Add(s)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	f.Fuzz(func(t *testing.T, h string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header["Authorization"] = []string{h}
		tok, ok := bearerToken(r)
		if !ok {
			return
		}
		scheme, rest, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") || strings.TrimLeft(rest, " ") != tok {
			t.Fatalf("bearerToken(%q) = %q: not Bearer, spaces and the token", h, tok)
		}
		if len(tok) != 43 || strings.Trim(tok, alphabet) != "" {
			t.Fatalf("bearerToken(%q) = %q: not 43 characters of unpadded base64url", h, tok)
		}
	})
}
