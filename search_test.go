package journal_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/journalsvc/journal"
)

func TestWords(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"", nil},
		{"Hello, World!", []string{"hello", "world"}},
		{"run-on x1 2024", []string{"run", "on", "x1", "2024"}},
		{"  ...  ", nil},
		{"Straße ẞ", []string{"straße", "ß"}},
		{"ΣΟΦΙΑ σοφια ς", []string{"ςοφια", "ςοφια", "ς"}},
		{"\u212a K k", []string{"k", "k", "k"}},
		{"日本語 テキスト", []string{"日本語", "テキスト"}},
		{"a\u0301b", []string{"a", "b"}}, // a combining mark is not a letter
		{"tab\tnew\nline", []string{"tab", "new", "line"}},
	} {
		if diff := cmp.Diff(tc.want, journal.Words(tc.text)); diff != "" {
			t.Errorf("Words(%q) (-want +got):\n%s", tc.text, diff)
		}
	}
}

// TestFoldWordMatchesEqualFold: two words fold alike exactly when
// strings.EqualFold says they are equal.
func TestFoldWordMatchesEqualFold(t *testing.T) {
	t.Parallel()
	words := []string{"river", "RIVER", "River", "straße", "STRASSE", "strasse", "ẞ", "ß", "σ", "ς", "Σ", "k", "K", "\u212a",
		"ſ", "s", "S", "İ", "i", "I", "ı", "ǅ", "ǆ", "Ǆ", "Ω", "ω", "\u2126", "µ", "μ", "Μ"}
	for _, a := range words {
		for _, b := range words {
			if got, want := journal.FoldWord(a) == journal.FoldWord(b), strings.EqualFold(a, b); got != want {
				t.Errorf("FoldWord(%q) == FoldWord(%q) is %v, strings.EqualFold says %v", a, b, got, want)
			}
		}
	}
}

func TestIndexWord(t *testing.T) {
	t.Parallel()
	short := strings.Repeat("a", 64)
	if got := journal.IndexWord(short); got != short {
		t.Errorf("IndexWord(64 bytes) = %q, want the word", got)
	}
	long1, long2 := strings.Repeat("a", 65), strings.Repeat("a", 64)+"b"
	i1, i2 := journal.IndexWord(long1), journal.IndexWord(long2)
	if i1 == i2 || len(i1) > 64 || !strings.HasPrefix(i1, strings.Repeat("a", 32)+"~") {
		t.Errorf("IndexWord of long words = %q, %q; want distinct short forms", i1, i2)
	}
	// A cut inside a rune moves back to its start.
	multi := strings.Repeat("é", 40) // 80 bytes
	if got := journal.IndexWord(multi); !strings.HasPrefix(got, strings.Repeat("é", 16)+"~") {
		t.Errorf("IndexWord(%q) = %q", multi, got)
	}
}

func TestParseFilter(t *testing.T) {
	t.Parallel()
	ts := func(s string) *time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return &tm
	}
	for _, tc := range []struct {
		q, from, to string
		want        journal.Filter
		bad         []string
	}{
		{q: "", want: journal.Filter{}},
		{q: "River rain river", want: journal.Filter{Words: []string{"rain", "river"}}},
		{q: "!!!", bad: []string{"q"}},
		{q: "a b c d e f g h i j", want: journal.Filter{Words: strings.Fields("a b c d e f g h i j")}},
		{q: "a b c d e f g h i j k", bad: []string{"q"}},
		{q: strings.Repeat("a", 201), bad: []string{"q"}},
		{q: "\xff", bad: []string{"q"}},
		{from: "2025-01-02T03:04:05Z", want: journal.Filter{From: ts("2025-01-02T03:04:05Z")}},
		{from: "2025-01-02T05:04:05.0000001+02:00", want: journal.Filter{From: ts("2025-01-02T03:04:05.000001Z")}},
		{to: "2025-01-02T03:04:05.123456Z", want: journal.Filter{To: ts("2025-01-02T03:04:05.123456Z")}},
		{from: "yesterday", to: "2025-13-01T00:00:00Z", bad: []string{"from", "to"}},
		{from: "2025-01-02T03:04:05Z", to: "2025-01-02T03:04:05Z", bad: []string{"to"}},
		{q: "", from: "2025-01-02", bad: []string{"from"}},
	} {
		got, err := journal.ParseFilter(tc.q, tc.from, tc.to)
		if tc.bad != nil {
			if diff := cmp.Diff(tc.bad, fields(t, err)); diff != "" {
				t.Errorf("ParseFilter(%q, %q, %q) bad fields (-want +got):\n%s", tc.q, tc.from, tc.to, diff)
			}
			continue
		}
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("ParseFilter(%q, %q, %q) = %+v, %v; want %+v", tc.q, tc.from, tc.to, got, err, tc.want)
		}
	}
}

// fields returns the fields a *ValidationError names, in order, and nil for
// a nil error. Any other error, and one that names no field, fails the test.
func fields(tb testing.TB, err error) []string {
	tb.Helper()
	if err == nil {
		return nil
	}
	var v *journal.ValidationError
	if !errors.As(err, &v) || len(v.Errors) == 0 {
		tb.Fatalf("error %v is not a *ValidationError naming a field", err)
	}
	var out []string
	for _, f := range v.Errors {
		out = append(out, f.Field)
	}
	return out
}

// TestCursorCarriesFilter: a cursor continues its filter when given alone,
// with the same filter, and is refused with another.
func TestCursorCarriesFilter(t *testing.T) {
	t.Parallel()
	from := "2025-01-02T03:04:05Z"
	f, err := journal.ParseFilter("rain River", from, "")
	if err != nil {
		t.Fatal(err)
	}
	c := journal.Cursor{CreatedAt: time.Date(2025, 2, 3, 4, 5, 6, 7000, time.UTC), ID: journal.NewID(time.Now()), Filter: f}
	enc := c.Encode()
	got, err := journal.DecodeCursor(enc)
	if err != nil || !got.Filter.Equal(f) || got.ID != c.ID || !got.CreatedAt.Equal(c.CreatedAt) {
		t.Fatalf("DecodeCursor(Encode(%+v)) = %+v, %v", c, got, err)
	}
	for _, tc := range []struct {
		q, from, to string
		ok          bool
	}{
		{"", "", "", true},             // alone: continues the filter
		{"river RAIN", from, "", true}, // the same filter, written otherwise
		{"river rain rain", from, "", true},
		{"river", from, "", false},
		{"river rain", "", "", false},
		{"river rain", from, "2030-01-01T00:00:00Z", false},
	} {
		req, err := journal.ParsePageRequest("", enc, tc.q, tc.from, tc.to)
		if tc.ok != (err == nil) {
			t.Errorf("ParsePageRequest(cursor, %q, %q, %q) = %v, want ok %v", tc.q, tc.from, tc.to, err, tc.ok)
			continue
		}
		if err != nil {
			if diff := cmp.Diff([]string{"cursor"}, fields(t, err)); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
			continue
		}
		if req.After == nil || !req.Filter.Equal(f) {
			t.Errorf("ParsePageRequest(cursor, %q, %q, %q) = %+v, want the cursor's filter", tc.q, tc.from, tc.to, req)
		}
	}
	// An unfiltered cursor given with a filter is refused too.
	plain := journal.Cursor{CreatedAt: c.CreatedAt, ID: c.ID}.Encode()
	if _, err := journal.ParsePageRequest("", plain, "rain", "", ""); err == nil {
		t.Error("an unfiltered cursor was accepted with q")
	}
}

func TestParseIdempotencyKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		values []string
		key    string
		ok     bool
		bad    bool
	}{
		{values: nil},
		{values: []string{`"abc-123"`}, key: "abc-123", ok: true},
		{values: []string{`abc-123`}, key: "abc-123", ok: true},
		{values: []string{` "a b\"c\\d" `}, key: `a b"c\d`, ok: true},
		{values: []string{strings.Repeat("x", 255)}, key: strings.Repeat("x", 255), ok: true},
		{values: []string{`"` + strings.Repeat("x", 255) + `"`}, key: strings.Repeat("x", 255), ok: true},
		{values: []string{strings.Repeat("x", 256)}, bad: true},
		{values: []string{`"` + strings.Repeat("x", 256) + `"`}, bad: true},
		{values: []string{`""`}, bad: true},
		{values: []string{``}, bad: true},
		{values: []string{`a b`}, bad: true},
		{values: []string{`"abc`}, bad: true},
		{values: []string{`"abc";p=1`}, bad: true},
		{values: []string{`"a\nb"`}, bad: true},
		{values: []string{"\"a\tb\""}, bad: true},
		{values: []string{`"é"`}, bad: true},
		{values: []string{"é"}, bad: true},
		{values: []string{"a", "b"}, bad: true},
	} {
		key, ok, err := journal.ParseIdempotencyKey(tc.values)
		if tc.bad {
			if diff := cmp.Diff([]string{"Idempotency-Key"}, fields(t, err)); diff != "" {
				t.Errorf("ParseIdempotencyKey(%q) fields (-want +got):\n%s", tc.values, diff)
			}
			continue
		}
		if err != nil || ok != tc.ok || key != tc.key {
			t.Errorf("ParseIdempotencyKey(%q) = %q, %v, %v; want %q, %v", tc.values, key, ok, err, tc.key, tc.ok)
		}
	}
}

func TestRequestFingerprint(t *testing.T) {
	t.Parallel()
	a := journal.RequestFingerprint("POST", "/v1/entries", []byte(`{"title":"a"}`))
	for _, other := range []string{
		journal.RequestFingerprint("PUT", "/v1/entries", []byte(`{"title":"a"}`)),
		journal.RequestFingerprint("POST", "/v1/entries/", []byte(`{"title":"a"}`)),
		journal.RequestFingerprint("POST", "/v1/entries", []byte(`{"title":"b"}`)),
	} {
		if other == a {
			t.Errorf("different requests share the fingerprint %s", a)
		}
	}
	if a != journal.RequestFingerprint("POST", "/v1/entries", []byte(`{"title":"a"}`)) || len(a) != 64 {
		t.Errorf("fingerprint %q is not a stable hex SHA-256", a)
	}
}

func TestValidateTokenName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"", "laptop", strings.Repeat("é", 64), "my phone ☎"} {
		if err := journal.ValidateTokenName(ok); err != nil {
			t.Errorf("ValidateTokenName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{strings.Repeat("a", 65), "a\x00b", "tab\t", "\x7f", "\xff"} {
		if err := journal.ValidateTokenName(bad); err == nil {
			t.Errorf("ValidateTokenName(%q) = nil", bad)
		}
	}
}
