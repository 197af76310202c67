package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/journalsvc/journal"
)

func TestEntryLifecycle(t *testing.T) {
	bothStores(t, func(t *testing.T, ts *testServer) {
		tok := ts.signup(t, "alice")

		w := ts.do(t, "POST", "/v1/entries", `{"title":"First <day>","body":"Hello & welcome"}`, auth(tok)...)
		var created map[string]any
		wantJSON(t, w, http.StatusCreated, &created)
		id, _ := created["id"].(string)
		if !journal.ValidID(id) {
			t.Fatalf("id = %q", id)
		}
		if got, want := w.Header().Get("Location"), "/v1/entries/"+id; got != want {
			t.Errorf("Location = %q, want %q", got, want)
		}
		if got, want := w.Header().Get("ETag"), `"v1"`; got != want {
			t.Errorf("ETag = %q, want %q", got, want)
		}
		if got := w.Header().Get("Cache-Control"); got != "private, no-cache" {
			t.Errorf("Cache-Control = %q", got)
		}
		wantEntry := map[string]any{
			"id": id, "title": "First <day>", "body": "Hello & welcome",
			"created_at": "2025-03-04T05:06:07.123456Z", "updated_at": "2025-03-04T05:06:07.123456Z",
		}
		if diff := cmp.Diff(wantEntry, created); diff != "" {
			t.Errorf("created entry (-want +got):\n%s", diff)
		}

		// GET returns exactly what POST returned.
		w = ts.do(t, "GET", "/v1/entries/"+id, "", auth(tok)...)
		var got map[string]any
		wantJSON(t, w, http.StatusOK, &got)
		if diff := cmp.Diff(created, got); diff != "" {
			t.Errorf("GET differs from POST (-post +get):\n%s", diff)
		}
		if w.Header().Get("ETag") != `"v1"` || w.Header().Get("Vary") != "Authorization" {
			t.Errorf("GET headers: %v", w.Header())
		}

		// If-None-Match.
		for _, inm := range []string{`"v1"`, `W/"v1"`, `"v0", "v1"`, `*`, `"x,y", "v1"`} {
			w := ts.do(t, "GET", "/v1/entries/"+id, "", hdr(auth(tok), []string{"If-None-Match", inm})...)
			if w.Code != http.StatusNotModified || w.Body.Len() != 0 || w.Header().Get("ETag") != `"v1"` {
				t.Errorf("If-None-Match %s: %d %q ETag %q, want 304, no body, ETag", inm, w.Code, w.Body, w.Header().Get("ETag"))
			}
		}
		for _, inm := range []string{`"v2"`, `"1"`, `v1`} {
			if w := ts.do(t, "GET", "/v1/entries/"+id, "", hdr(auth(tok), []string{"If-None-Match", inm})...); w.Code != http.StatusOK {
				t.Errorf("If-None-Match %s: %d, want 200", inm, w.Code)
			}
		}

		// PATCH.
		ts.clock.Advance(1500 * time.Microsecond)
		w = ts.do(t, "PATCH", "/v1/entries/"+id, `{"title":"Renamed"}`, auth(tok)...)
		var patched map[string]any
		wantJSON(t, w, http.StatusOK, &patched)
		if patched["title"] != "Renamed" || patched["body"] != "Hello & welcome" ||
			patched["created_at"] != created["created_at"] || patched["updated_at"] != "2025-03-04T05:06:07.124956Z" {
			t.Errorf("patched = %v", patched)
		}
		if got := w.Header().Get("ETag"); got != `"v2"` {
			t.Errorf("PATCH ETag = %q, want \"v2\"", got)
		}

		// If-Match.
		wantProblem(t, ts.do(t, "PATCH", "/v1/entries/"+id, `{"body":"x"}`, hdr(auth(tok), []string{"If-Match", `"v1"`})...), http.StatusPreconditionFailed)
		for _, im := range []string{`"v0"`, `W/"v2"`, `"garbage"`, `v2`, `"v02"`, `"v1", "v3"`} {
			wantProblem(t, ts.do(t, "PATCH", "/v1/entries/"+id, `{"body":"x"}`, hdr(auth(tok), []string{"If-Match", im})...), http.StatusPreconditionFailed)
		}
		for i, im := range []string{`"v2"`, `"v1", "v3"`, `*`} {
			w := ts.do(t, "PATCH", "/v1/entries/"+id, `{"body":"b"}`, hdr(auth(tok), []string{"If-Match", im})...)
			if want := fmt.Sprintf(`"v%d"`, i+3); w.Code != http.StatusOK || w.Header().Get("ETag") != want {
				t.Errorf("If-Match %s: %d ETag %q, want 200 %s; %s", im, w.Code, w.Header().Get("ETag"), want, w.Body)
			}
		}
		// PATCH without a change still needs a field.
		for _, body := range []string{`{}`, `null`, `{"title":null}`, `{"body":null}`, `{"title":""}`, `[]`} {
			wantProblem(t, ts.do(t, "PATCH", "/v1/entries/"+id, body, auth(tok)...), http.StatusBadRequest)
		}

		// DELETE.
		wantProblem(t, ts.do(t, "DELETE", "/v1/entries/"+id, "", hdr(auth(tok), []string{"If-Match", `"v4"`})...), http.StatusPreconditionFailed)
		if w := ts.do(t, "DELETE", "/v1/entries/"+id, "", hdr(auth(tok), []string{"If-Match", `"v5"`})...); w.Code != http.StatusNoContent || w.Body.Len() != 0 {
			t.Fatalf("DELETE = %d %s", w.Code, w.Body)
		}
		wantProblem(t, ts.do(t, "GET", "/v1/entries/"+id, "", auth(tok)...), http.StatusNotFound)
		wantProblem(t, ts.do(t, "DELETE", "/v1/entries/"+id, "", auth(tok)...), http.StatusNotFound)
		wantProblem(t, ts.do(t, "PATCH", "/v1/entries/"+id, `{"title":"t"}`, auth(tok)...), http.StatusNotFound)
		// A missing entry with an If-Match we cannot read is 404, not 412.
		wantProblem(t, ts.do(t, "DELETE", "/v1/entries/"+id, "", hdr(auth(tok), []string{"If-Match", `"zz"`})...), http.StatusNotFound)
	})
}

func TestEntryCreateBodyOptional(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	tok := ts.signup(t, "bob")
	w := ts.do(t, "POST", "/v1/entries", `{"title":"only a title"}`, auth(tok)...)
	var e map[string]any
	wantJSON(t, w, http.StatusCreated, &e)
	if e["body"] != "" {
		t.Errorf("body = %v, want empty", e["body"])
	}
}

func TestEntryValidation(t *testing.T) {
	bothStores(t, func(t *testing.T, ts *testServer) {
		tok := ts.signup(t, "carl")
		for _, tc := range []struct {
			body  string
			field string
		}{
			{`{"body":"no title"}`, "title"},
			{`{"title":""}`, "title"},
			{`{"title":null}`, "title"},
			{`{"title":"t","body":null}`, "body"},
			{`{"title":"` + strings.Repeat("é", 201) + `"}`, "title"},
			{`{"title":"t","body":"` + strings.Repeat("x", 64*1024+1) + `"}`, "body"},
			{`{"title":5}`, "title"},
			{`{"title":"t","body":["x"]}`, "body"},
			{`{"title":"t","extra":1}`, "extra"},
			{`{"Title":"t"}`, "Title"},
		} {
			p := wantProblem(t, ts.do(t, "POST", "/v1/entries", tc.body, auth(tok)...), http.StatusBadRequest)
			if len(p.Errors) != 1 || p.Errors[0].Field != tc.field {
				t.Errorf("POST %.50s: errors %v, want one for %q", tc.body, p.Errors, tc.field)
			}
		}
		// The limits themselves are accepted.
		ts.createEntry(t, tok, strings.Repeat("é", 200), strings.Repeat("x", 64*1024))
	})
}

// TestEntryControlCharacters: a title or body with a control character
// other than tab, LF and CR is 400 naming the field on both databases (a NUL
// would otherwise be stored by SQLite and fail PostgreSQL with a 500).
func TestEntryControlCharacters(t *testing.T) {
	bothStores(t, func(t *testing.T, ts *testServer) {
		tok := ts.signup(t, "carl")
		e, _ := ts.createEntry(t, tok, "kept", "kept")
		id := e["id"].(string)
		for _, c := range []string{`\u0000`, `\u0001`, `\u001b`, `\u001f`, `\u007f`, `\u0085`, `\u009b`} {
			for _, tc := range []struct {
				method, path, body, field string
			}{
				{"POST", "/v1/entries", `{"title":"a` + c + `b","body":"ok"}`, "title"},
				{"POST", "/v1/entries", `{"title":"ok","body":"a` + c + `b"}`, "body"},
				{"PATCH", "/v1/entries/" + id, `{"title":"` + c + `"}`, "title"},
				{"PATCH", "/v1/entries/" + id, `{"body":"` + c + `"}`, "body"},
			} {
				p := wantProblem(t, ts.do(t, tc.method, tc.path, tc.body, auth(tok)...), http.StatusBadRequest)
				if len(p.Errors) != 1 || p.Errors[0].Field != tc.field || !strings.Contains(p.Errors[0].Message, "control character") {
					t.Errorf("%s %s: errors %v, want one naming %q and the control character", tc.method, tc.body, p.Errors, tc.field)
				}
			}
		}
		// Tab, LF, CR and 4-byte characters are text.
		title, body := "tab\there \U0001F600", "line\r\nnext\n\U0001F600"
		created, _ := ts.createEntry(t, tok, title, body)
		w := ts.do(t, "GET", "/v1/entries/"+created["id"].(string), "", auth(tok)...)
		var got map[string]any
		decodeBody(t, w, &got)
		if got["title"] != title || got["body"] != body {
			t.Errorf("read back title %q body %q, want %q %q", got["title"], got["body"], title, body)
		}
		w = ts.do(t, "GET", "/v1/entries/"+id, "", auth(tok)...)
		decodeBody(t, w, &got)
		if got["title"] != "kept" || got["body"] != "kept" {
			t.Errorf("entry after refused patches = %v, want unchanged", got)
		}
	})
}

func TestEntryIsolation(t *testing.T) {
	bothStores(t, func(t *testing.T, ts *testServer) {
		a, b := ts.signup(t, "anna"), ts.signup(t, "bert")
		e, _ := ts.createEntry(t, a, "anna's", "private")
		id := e["id"].(string)
		wantProblem(t, ts.do(t, "GET", "/v1/entries/"+id, "", auth(b)...), http.StatusNotFound)
		wantProblem(t, ts.do(t, "PATCH", "/v1/entries/"+id, `{"title":"mine"}`, auth(b)...), http.StatusNotFound)
		wantProblem(t, ts.do(t, "PATCH", "/v1/entries/"+id, `{"title":"mine"}`, hdr(auth(b), []string{"If-Match", `"v1"`})...), http.StatusNotFound)
		wantProblem(t, ts.do(t, "DELETE", "/v1/entries/"+id, "", auth(b)...), http.StatusNotFound)
		w := ts.do(t, "GET", "/v1/entries", "", auth(b)...)
		if got := strings.TrimSpace(w.Body.String()); got != `{"entries":[],"next_cursor":null}` {
			t.Errorf("bert's list = %s", got)
		}
		// A malformed id and a missing one answer like another user's entry.
		p1 := wantProblem(t, ts.do(t, "GET", "/v1/entries/"+id, "", auth(b)...), http.StatusNotFound)
		p2 := wantProblem(t, ts.do(t, "GET", "/v1/entries/not-a-uuid", "", auth(b)...), http.StatusNotFound)
		p3 := wantProblem(t, ts.do(t, "GET", "/v1/entries/"+journal.NewID(time.Now()), "", auth(b)...), http.StatusNotFound)
		if p1.Detail != p2.Detail || p1.Detail != p3.Detail {
			t.Errorf("404 details differ: %q %q %q", p1.Detail, p2.Detail, p3.Detail)
		}
		// Anna still has it, unchanged.
		w = ts.do(t, "GET", "/v1/entries/"+id, "", auth(a)...)
		var got map[string]any
		decodeBody(t, w, &got)
		if got["title"] != "anna's" {
			t.Errorf("anna's entry = %v", got)
		}
	})
}

type listJSON struct {
	Entries []struct {
		ID    string `json:"id"`
		Title string `json:"title"`
	} `json:"entries"`
	NextCursor *string `json:"next_cursor"`
}

func TestEntryPagination(t *testing.T) {
	bothStores(t, func(t *testing.T, ts *testServer) {
		tok := ts.signup(t, "dora")
		const n = 45
		var ids []string
		for i := range n {
			if i%10 != 0 { // some entries share a timestamp: ties are broken by id
				ts.clock.Advance(time.Millisecond)
			}
			e, _ := ts.createEntry(t, tok, fmt.Sprintf("entry %d", i), "")
			ids = append(ids, e["id"].(string))
		}
		var seen []string
		var sizes []int
		target := "/v1/entries"
		for page := 0; ; page++ {
			if page > 10 {
				t.Fatal("too many pages")
			}
			w := ts.do(t, "GET", target, "", auth(tok)...)
			if w.Code != http.StatusOK {
				t.Fatalf("GET %s = %d %s", target, w.Code, w.Body)
			}
			var l listJSON
			decodeBody(t, w, &l)
			sizes = append(sizes, len(l.Entries))
			for _, e := range l.Entries {
				seen = append(seen, e.ID)
			}
			if l.NextCursor == nil {
				break
			}
			target = "/v1/entries?cursor=" + url.QueryEscape(*l.NextCursor)
		}
		if got, want := fmt.Sprint(sizes), "[20 20 5]"; got != want {
			t.Errorf("page sizes = %s, want %s (default limit 20)", got, want)
		}
		var want []string
		for i := n - 1; i >= 0; i-- {
			want = append(want, ids[i])
		}
		// Within one timestamp, ids order by id descending; UUIDv7 ids from one
		// millisecond may not be monotonic, so compare per timestamp group as sets
		// and the whole as newest-first groups.
		if len(seen) != n {
			t.Fatalf("saw %d entries, want %d", len(seen), n)
		}
		if diff := cmp.Diff(sortedCopy(want), sortedCopy(seen)); diff != "" {
			t.Errorf("entries seen across pages (-want +got):\n%s", diff)
		}

		// limit and a last page that is exactly full: next_cursor only when an
		// entry follows.
		w := ts.do(t, "GET", "/v1/entries?limit=45", "", auth(tok)...)
		var l listJSON
		decodeBody(t, w, &l)
		if len(l.Entries) != 45 || l.NextCursor != nil {
			t.Errorf("limit=45: %d entries, next %v; want 45 and null", len(l.Entries), l.NextCursor)
		}
		w = ts.do(t, "GET", "/v1/entries?limit=44", "", auth(tok)...)
		decodeBody(t, w, &l)
		if len(l.Entries) != 44 || l.NextCursor == nil {
			t.Errorf("limit=44: %d entries, next %v; want 44 and a cursor", len(l.Entries), l.NextCursor)
		}

		for _, q := range []string{"limit=0", "limit=101", "limit=x", "limit=-1", "cursor=abc", "cursor=" + strings.Repeat("A", 200)} {
			p := wantProblem(t, ts.do(t, "GET", "/v1/entries?"+q, "", auth(tok)...), http.StatusBadRequest)
			if len(p.Errors) != 1 {
				t.Errorf("?%s: errors %v", q, p.Errors)
			}
		}
	})
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j] < c[i] {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	return c
}

func TestEntryPaginationOrder(t *testing.T) {
	bothStores(t, func(t *testing.T, ts *testServer) {
		tok := ts.signup(t, "ella")
		var ids []string
		for i := range 7 {
			ts.clock.Advance(time.Millisecond)
			e, _ := ts.createEntry(t, tok, fmt.Sprint(i), "")
			ids = append(ids, e["id"].(string))
		}
		var seen []string
		target := "/v1/entries?limit=3"
		for target != "" {
			w := ts.do(t, "GET", target, "", auth(tok)...)
			var l listJSON
			decodeBody(t, w, &l)
			for _, e := range l.Entries {
				seen = append(seen, e.ID)
			}
			target = ""
			if l.NextCursor != nil {
				target = "/v1/entries?limit=3&cursor=" + *l.NextCursor
			}
		}
		want := []string{ids[6], ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]}
		if diff := cmp.Diff(want, seen); diff != "" {
			t.Errorf("newest-first order across pages (-want +got):\n%s", diff)
		}
	})
}

func TestListETag(t *testing.T) {
	bothStores(t, func(t *testing.T, ts *testServer) {
		tok := ts.signup(t, "fred")
		e, _ := ts.createEntry(t, tok, "a", "")
		ts.createEntry(t, tok, "b", "")
		w := ts.do(t, "GET", "/v1/entries", "", auth(tok)...)
		tag := w.Header().Get("ETag")
		if !strings.HasPrefix(tag, `"p`) || w.Header().Get("Cache-Control") != "private, no-cache" {
			t.Fatalf("list ETag = %q, headers %v", tag, w.Header())
		}
		if w := ts.do(t, "GET", "/v1/entries", "", hdr(auth(tok), []string{"If-None-Match", tag})...); w.Code != http.StatusNotModified || w.Body.Len() != 0 {
			t.Errorf("list If-None-Match = %d %q, want 304", w.Code, w.Body)
		}
		// Another page of the same list has another ETag.
		if w := ts.do(t, "GET", "/v1/entries?limit=1", "", auth(tok)...); w.Header().Get("ETag") == tag {
			t.Errorf("limit=1 page has the full page's ETag")
		}
		// An update of an entry on the page changes the ETag.
		ts.do(t, "PATCH", "/v1/entries/"+e["id"].(string), `{"body":"new"}`, auth(tok)...)
		w = ts.do(t, "GET", "/v1/entries", "", hdr(auth(tok), []string{"If-None-Match", tag})...)
		if w.Code != http.StatusOK || w.Header().Get("ETag") == tag {
			t.Errorf("after an update: %d, ETag %q (old %q); want 200 and a new ETag", w.Code, w.Header().Get("ETag"), tag)
		}
	})
}

// TestPaginationConcurrentInserts walks the pages while another client keeps
// creating entries: the keyset cursor gives every entry that existed at the
// start exactly once, and no entry twice.
func TestPaginationConcurrentInserts(t *testing.T) {
	bothStores(t, func(t *testing.T, ts *testServer) {
		tok := ts.signup(t, "gail")
		const n = 30
		before := map[string]bool{}
		for i := range n {
			ts.clock.Advance(time.Millisecond)
			e, _ := ts.createEntry(t, tok, fmt.Sprint("old ", i), "")
			before[e["id"].(string)] = true
		}
		stop := make(chan struct{})
		done := make(chan int)
		go func() {
			created := 0
			defer func() { done <- created }()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ts.clock.Advance(time.Millisecond)
				w := ts.do(t, "POST", "/v1/entries", `{"title":"new"}`, auth(tok)...)
				if w.Code != http.StatusCreated {
					t.Errorf("concurrent POST = %d", w.Code)
					return
				}
				created++
			}
		}()
		seen := map[string]int{}
		target := "/v1/entries?limit=7"
		for pages := 0; target != ""; pages++ {
			if pages > 20 {
				t.Fatal("too many pages")
			}
			w := ts.do(t, "GET", target, "", auth(tok)...)
			var l listJSON
			decodeBody(t, w, &l)
			for _, e := range l.Entries {
				seen[e.ID]++
			}
			target = ""
			if l.NextCursor != nil {
				target = "/v1/entries?limit=7&cursor=" + *l.NextCursor
			}
			time.Sleep(time.Millisecond) // let the writer in between pages
		}
		close(stop)
		created := <-done
		for id, c := range seen {
			if c != 1 {
				t.Errorf("entry %s seen %d times", id, c)
			}
		}
		for id := range before {
			if seen[id] != 1 {
				t.Errorf("entry %s that existed before the walk was missed", id)
			}
		}
		t.Logf("%d entries created during the walk, %d seen in total", created, len(seen))
	})
}
