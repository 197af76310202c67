package httpapi

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// TestRequestDecoding covers the framing errors of every JSON route.
func TestRequestDecoding(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	tok := ts.signup(t, "alice")
	e, _ := ts.createEntry(t, tok, "t", "b")
	big := `{"title":"t","body":"` + strings.Repeat("x", MaxRequestBytes) + `"}`
	for _, rt := range []struct{ method, target string }{
		{"POST", "/v1/users"}, {"POST", "/v1/tokens"}, {"POST", "/v1/entries"}, {"PATCH", "/v1/entries/" + e["id"].(string)},
	} {
		for _, tc := range []struct {
			name        string
			body        string
			contentType string
			status      int
			detail      string
		}{
			{"no content type", `{"title":"t"}`, "", 415, "Content-Type"},
			{"text/plain", `{"title":"t"}`, "text/plain", 415, "Content-Type"},
			{"json suffix type", `{"title":"t"}`, "application/merge-patch+json", 415, "Content-Type"},
			{"bad media type", `{"title":"t"}`, "application/json; =", 415, "Content-Type"},
			{"too large", big, "application/json", 413, "exceeds 1048576 bytes"},
			{"empty", "", "application/json", 400, "empty"},
			{"blank", " \n\t", "application/json", 400, "empty"},
			{"malformed", `{"title":`, "application/json", 400, "malformed JSON"},
			{"syntax", `{"title" "t"}`, "application/json", 400, "malformed JSON at byte offset"},
			{"trailing data", `{} {}`, "application/json", 400, "after the JSON object"},
			{"trailing garbage", `{}x`, "application/json", 400, "after the JSON object"},
			{"array", `[{"title":"t"}]`, "application/json", 400, "must be a JSON object"},
			{"string", `"t"`, "application/json", 400, "must be a JSON object"},
			{"null", `null`, "application/json", 400, "must be a JSON object"},
			{"invalid utf-8", "{\"title\":\"\xff\"}", "application/json", 400, "UTF-8"},
			{"unknown field", `{"nope":1}`, "application/json", 400, `unknown field "nope"`},
		} {
			r := ts.do(t, rt.method, rt.target, tc.body, hdr(auth(tok), []string{"Content-Type", tc.contentType})...)
			if tc.contentType != "" {
				// do added application/json for non-empty bodies; make it exact.
				req := newReq(rt.method, rt.target, tc.body, hdr(auth(tok), []string{"Content-Type", tc.contentType}))
				r = serve(ts, req)
			}
			p := wantProblem(t, r, tc.status)
			if !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("%s %s %s: detail %q, want it to mention %q", rt.method, rt.target, tc.name, p.Detail, tc.detail)
			}
		}
		// Parameters of application/json are fine.
		req := newReq(rt.method, rt.target, `{"nope":1}`, hdr(auth(tok), []string{"Content-Type", "application/json; charset=utf-8"}))
		if w := serve(ts, req); w.Code != 400 || !strings.Contains(w.Body.String(), "nope") {
			t.Errorf("%s %s with charset: %d %s, want 400 for the unknown field", rt.method, rt.target, w.Code, w.Body)
		}
	}
}

func TestDecodeJSONBytes(t *testing.T) {
	type in struct {
		Title optString `json:"title"`
		N     int       `json:"n"`
		S     string    `json:"s"`
	}
	for _, tc := range []struct {
		body   string
		detail string
		field  string
	}{
		{`{"n":"x"}`, `field "n" must be an integer, not string`, "n"},
		{`{"n":1.5}`, `field "n" must be an integer`, "n"},
		{`{"s":1}`, `field "s" must be a string, not number`, "s"},
		{`{"title":1}`, `field "title" must be a string, not number`, "title"},
		{`{"title":{}}`, `field "title" must be a string, not object`, "title"},
		{`{"title":true}`, `field "title" must be a string, not bool`, "title"},
		{`{"TITLE":"x"}`, `unknown field "TITLE"`, "TITLE"},
		{`{"s":"a","S":"b"}`, `unknown field "S"`, "S"},
		{`{"n":1e400}`, `field "n" must be an integer`, "n"},
	} {
		var v in
		err := decodeJSONBytes([]byte(tc.body), &v)
		var ce *clientError
		if !errors.As(err, &ce) || ce.status != 400 || !strings.Contains(ce.detail, tc.detail) || len(ce.fields) != 1 || ce.fields[0].Field != tc.field {
			t.Errorf("decode %s = %#v, want 400 %q on field %q", tc.body, err, tc.detail, tc.field)
		}
	}
	var v in
	if err := decodeJSONBytes([]byte(" {\"title\":\"x\",\"n\":2,\"s\":\"é\"}\n"), &v); err != nil || v.Title != (optString{Set: true, Value: "x"}) || v.N != 2 || v.S != "é" {
		t.Errorf("decode ok = %v, %+v", err, v)
	}
	v = in{}
	if err := decodeJSONBytes([]byte(`{"title":null}`), &v); err != nil || v.Title != (optString{Set: true, Null: true}) {
		t.Errorf("decode null = %v, %+v; want Set and Null", err, v)
	}
}

func newReq(method, target, body string, header []string) *http.Request {
	r, _ := http.NewRequest(method, target, bytes.NewReader([]byte(body)))
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] != "" {
			r.Header.Set(header[i], header[i+1])
		}
	}
	return r
}
