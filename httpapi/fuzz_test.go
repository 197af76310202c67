package httpapi

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
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
