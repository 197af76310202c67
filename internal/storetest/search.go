package storetest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/journalsvc/journal"
)

// searchCorpus is the text of the entries the search tests create: titles
// and bodies that exercise case folding beyond ASCII, digits, punctuation
// and very long words.
var searchCorpus = []struct{ title, body string }{
	{"Morning run", "Ran 5 km along the river. Felt GREAT."},
	{"Evening", "Read a book by the river; slept early."},
	{"Straße", "Walked down the STRASSE and the straße."},
	{"ΣΟΦΙΑ", "σοφίας and ς final sigma"},
	{"Kelvin", "273 \u212a is cold; k is a letter"},
	{"run-on", "runs running runner; run"},
	{"日本語のテキスト", "東京 2024 trip"},
	{"Long", strings.Repeat("a", 70) + " " + strings.Repeat("b", 65) + "é"},
	{"mixed", "Rivers, RIVER! river? riverbank"},
	{"numbers", "x1 y2 z3 2024 1.5"},
	{"…?!", ""},
}

// searchQueries are the q values the search tests try, each against every
// filter combination.
var searchQueries = []string{
	"river", "RIVER", "river great", "run", "runs", "straße", "STRASSE", "σοφια", "ΣΟΦΊΑΣ", "ς",
	"\u212a", "k", "2024", "東京", "テキスト", "日本語のテキスト", strings.Repeat("A", 70),
	strings.Repeat("b", 65) + "É", strings.Repeat("a", 69), "nothing", "river nothing", "the river", "x1 z3 y2",
	"1", "5", "km 5 ran", "a",
}

// seedSearch creates the corpus for userID, one entry a second from at,
// and returns the entries.
func seedSearch(tb testing.TB, s journal.Database, userID string, at time.Time) []journal.Entry {
	tb.Helper()
	var out []journal.Entry
	for i, c := range searchCorpus {
		t := at.Add(time.Duration(i) * time.Second)
		e, err := s.CreateEntry(ctxT(tb), journal.Entry{ID: journal.NewID(t), UserID: userID, Title: c.title, Body: c.body, CreatedAt: t, UpdatedAt: t})
		if err != nil {
			tb.Fatalf("CreateEntry = %v", err)
		}
		out = append(out, e)
	}
	return out
}

// matches is the reference semantics of a filter: every word of the
// filter is a word of the title or body, and from <= created_at < to.
func matches(e journal.Entry, f journal.Filter) bool {
	have := journal.IndexWords(e.Title, e.Body)
	for _, w := range f.Words {
		if _, ok := slices.BinarySearch(have, w); !ok {
			return false
		}
	}
	return (f.From == nil || !e.CreatedAt.Before(*f.From)) && (f.To == nil || e.CreatedAt.Before(*f.To))
}

// listFiltered pages through the user's entries that f selects.
func listFiltered(tb testing.TB, s journal.Database, userID string, f journal.Filter, limit int) []journal.Entry {
	tb.Helper()
	var out []journal.Entry
	req := journal.PageRequest{Limit: limit, Filter: f}
	for pages := 0; ; pages++ {
		p, err := s.ListEntries(ctxT(tb), userID, req)
		if err != nil {
			tb.Fatalf("ListEntries(%+v) = %v", req, err)
		}
		out = append(out, p.Entries...)
		if p.Next == nil {
			return out
		}
		if pages > 100 {
			tb.Fatal("more than 100 pages")
		}
		c, err := journal.DecodeCursor(p.Next.Encode())
		if err != nil {
			tb.Fatalf("DecodeCursor(Next.Encode()) = %v", err)
		}
		if !c.Filter.Equal(f) {
			tb.Fatalf("the next cursor carries %+v, want the filter %+v", c.Filter, f)
		}
		req = journal.PageRequest{Limit: limit, After: &c, Filter: c.Filter}
	}
}

// search returns the user's entries whose text has every word of q.
func search(tb testing.TB, s journal.Database, userID, q string) []journal.Entry {
	tb.Helper()
	f, err := journal.ParseFilter(q, "", "")
	if err != nil {
		tb.Fatal(err)
	}
	return listFiltered(tb, s, userID, f, journal.MaxPageLimit)
}

func ids(es []journal.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

// testSearch compares every query and time range of the corpus with the
// reference semantics, through pages of 1, 2 and 100 entries.
func testSearch(t *testing.T, s journal.Database) {
	u, other := NewUser(t, s, "alice"), NewUser(t, s, "bob")
	all := seedSearch(t, s, u.ID, base)
	seedSearch(t, s, other.ID, base) // the same words, another user's
	newestFirst(all)
	at := func(i int) string {
		return journal.StoredTime(base).Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano)
	}
	ranges := [][2]string{{"", ""}, {at(2), ""}, {"", at(5)}, {at(1), at(8)}, {at(3), at(4)},
		{journal.StoredTime(base).Add(1500 * time.Millisecond).Format(time.RFC3339Nano), ""}}
	found := 0
	for _, q := range append([]string{""}, searchQueries...) {
		for _, r := range ranges {
			f, err := journal.ParseFilter(q, r[0], r[1])
			if err != nil {
				t.Fatalf("ParseFilter(%q, %q, %q) = %v", q, r[0], r[1], err)
			}
			var want []journal.Entry
			for _, e := range all {
				if matches(e, f) {
					want = append(want, e)
				}
			}
			found += len(want)
			for _, limit := range []int{1, 2, 100} {
				got := listFiltered(t, s, u.ID, f, limit)
				if diff := cmp.Diff(ids(want), ids(got)); diff != "" {
					t.Errorf("q=%q from=%q to=%q limit %d (-want +got):\n%s", q, r[0], r[1], limit, diff)
				}
			}
		}
	}
	if found == 0 {
		t.Fatal("no query found anything: the reference is broken")
	}
	// Spot checks of the reference itself, so a broken tokenizer cannot
	// pass by agreeing with itself.
	for q, want := range map[string]int{"river": 3, "straße": 1, "strasse": 1, "σοφια": 1, "k": 1, "\u212a": 1, "2024": 2, "run": 2, "runs": 1, "東京": 1} {
		if got := len(search(t, s, u.ID, q)); got != want {
			t.Errorf("search %q found %d entries, want %d", q, got, want)
		}
	}
}

// testSearchAfterUpdate: the index follows updates and deletes.
func testSearchAfterUpdate(t *testing.T, s journal.Database) {
	ctx := ctxT(t)
	u := NewUser(t, s, "alice")
	e := NewEntry(t, s, u.ID, "apple banana", base)
	if got := search(t, s, u.ID, "apple"); len(got) != 1 {
		t.Fatalf("search apple = %d entries, want 1", len(got))
	}
	if _, err := s.UpdateEntry(ctx, u.ID, e.ID, journal.EntryPatch{Body: ptr("cherry pie")}, journal.AnyVersion, base); err != nil {
		t.Fatal(err)
	}
	// The title is still "apple banana"; the body was "body of apple banana".
	for q, want := range map[string]int{"apple": 1, "cherry": 1, "body": 0, "banana pie": 1, "cherry of": 0} {
		if got := len(search(t, s, u.ID, q)); got != want {
			t.Errorf("after the update, search %q = %d entries, want %d", q, got, want)
		}
	}
	if err := s.DeleteEntry(ctx, u.ID, e.ID, journal.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if got := search(t, s, u.ID, "cherry"); len(got) != 0 {
		t.Errorf("after the delete, search cherry = %d entries", len(got))
	}
}

// testSearchManyWords: an entry with more distinct words than one insert
// statement holds is found by its last word.
func testSearchManyWords(t *testing.T, s journal.Database) {
	u := NewUser(t, s, "alice")
	var b strings.Builder
	for i := range 1200 {
		fmt.Fprintf(&b, "w%d ", i)
	}
	e, err := s.CreateEntry(ctxT(t), journal.Entry{ID: journal.NewID(base), UserID: u.ID, Title: "many", Body: b.String(), CreatedAt: base, UpdatedAt: base})
	if err != nil {
		t.Fatal(err)
	}
	if got := search(t, s, u.ID, "w1199 w0 many"); len(got) != 1 || got[0].ID != e.ID {
		t.Errorf("search of the last words = %v", ids(got))
	}
}

func testExport(t *testing.T, s journal.Database) {
	ctx := ctxT(t)
	u, other := NewUser(t, s, "alice"), NewUser(t, s, "bob")
	var want []journal.Entry
	for i := range 7 {
		at := base.Add(time.Duration(i/2) * time.Second) // ties, broken by id
		want = append(want, NewEntry(t, s, u.ID, fmt.Sprint("e", i), at))
	}
	NewEntry(t, s, other.ID, "bob's", base)
	newestFirst(want)
	slices.Reverse(want)
	for _, limit := range []int{1, 3, 100} {
		var got []journal.Entry
		var after *journal.Cursor
		for {
			batch, err := s.ExportEntries(ctx, u.ID, after, limit)
			if err != nil {
				t.Fatalf("ExportEntries = %v", err)
			}
			if len(batch) > limit {
				t.Fatalf("ExportEntries(limit %d) = %d entries", limit, len(batch))
			}
			got = append(got, batch...)
			if len(batch) < limit {
				break
			}
			last := batch[len(batch)-1]
			after = &journal.Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("export with batches of %d, oldest first (-want +got):\n%s", limit, diff)
		}
	}
	if got, err := s.ExportEntries(ctx, journal.NewID(base), nil, 10); err != nil || len(got) != 0 {
		t.Errorf("ExportEntries(unknown user) = %v, %v", got, err)
	}
}
