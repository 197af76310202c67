package journal

import (
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// FuzzParseIdempotencyKey checks that ParseIdempotencyKey never panics,
// that every key it accepts is 1-255 printable ASCII characters, and that a
// key written back as a Structured Field string parses to itself.
func FuzzParseIdempotencyKey(f *testing.F) {
	for _, s := range []string{`"abc-123"`, `abc-123`, `""`, `"a\"b\\c"`, `"unterminated`, `"x";p=1`, ` "pad" `,
		strings.Repeat("k", 255), strings.Repeat("k", 256), "\"\x00\"", "é", `"a b"`, `a b`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		key, ok, err := ParseIdempotencyKey([]string{v})
		if err != nil {
			if ok || key != "" {
				t.Fatalf("ParseIdempotencyKey(%q) = %q, %v with error %v", v, key, ok, err)
			}
			return
		}
		if !ok || len(key) < 1 || len(key) > MaxIdempotencyKeyLen {
			t.Fatalf("ParseIdempotencyKey(%q) = %q, %v", v, key, ok)
		}
		for i := 0; i < len(key); i++ {
			if key[i] < 0x20 || key[i] > 0x7e {
				t.Fatalf("ParseIdempotencyKey(%q) accepted the byte %#x", v, key[i])
			}
		}
		quoted := `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(key) + `"`
		if again, ok, err := ParseIdempotencyKey([]string{quoted}); err != nil || !ok || again != key {
			t.Fatalf("the key %q of %q written as %s parses to %q, %v, %v", key, v, quoted, again, ok, err)
		}
	})
}

// FuzzParsePageRequest checks that ParsePageRequest never panics on any
// query values, that what it accepts is within the documented limits, that
// the filter's words are index forms of q's words, and that the cursor of a
// page of that request continues it when given alone, with the same
// filters, and is refused with other ones.
func FuzzParsePageRequest(f *testing.F) {
	c := Cursor{CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 678901000, time.UTC), ID: "0194d0a8-7c4e-7a8b-9c0d-1e2f3a4b5c6d"}
	rain, _ := ParseFilter("Rain Spain", "2025-01-01T00:00:00Z", "")
	c2 := c
	c2.Filter = rain
	f.Add("20", c.Encode(), "", "", "")
	f.Add("1", c2.Encode(), "rain spain", "2025-01-01T00:00:00Z", "")
	f.Add("", "", "Straße ΣΟΦΙΑ \u212a", "2025-01-02T03:04:05.123456789+02:00", "2026-01-01T00:00:00Z")
	f.Add("x", "garbage", "!!!", "yesterday", "2025-13-01T00:00:00Z")
	f.Add("100", "", strings.Repeat("word ", 11), "", "")
	f.Add("", "", strings.Repeat("a", 70), "", "")
	f.Fuzz(func(t *testing.T, limit, cursor, q, from, to string) {
		req, err := ParsePageRequest(limit, cursor, q, from, to)
		if err != nil {
			if _, ok := err.(*ValidationError); !ok {
				t.Fatalf("error %v is not a *ValidationError", err)
			}
			return
		}
		if req.Limit < 1 || req.Limit > MaxPageLimit {
			t.Fatalf("limit %d accepted", req.Limit)
		}
		fl := req.Filter
		if len(fl.Words) > MaxQueryWords || (fl.From != nil && fl.To != nil && !fl.From.Before(*fl.To)) {
			t.Fatalf("filter %+v accepted", fl)
		}
		for _, w := range fl.Words {
			if !validIndexWord(w) {
				t.Fatalf("word %q of the filter is not an index form", w)
			}
		}
		if cursor == "" && q != "" {
			for _, w := range Words(q) {
				found := false
				for _, x := range fl.Words {
					found = found || x == IndexWord(w)
				}
				if !found {
					t.Fatalf("the word %q of q=%q is missing from %v", w, q, fl.Words)
				}
			}
		}
		next := Cursor{CreatedAt: time.UnixMicro(1735787045678901).UTC(), ID: c.ID, Filter: fl}.Encode()
		if again, err := ParsePageRequest("", next, "", "", ""); err != nil || !again.Filter.Equal(fl) {
			t.Fatalf("the next cursor alone = %+v, %v; want the filter %+v", again, err, fl)
		}
		if cursor == "" {
			if again, err := ParsePageRequest(limit, next, q, from, to); err != nil || !again.Filter.Equal(fl) {
				t.Fatalf("the next cursor with its filters = %+v, %v", again, err)
			}
		}
		if fl.IsZero() || !utf8.ValidString(q) {
			return
		}
		if _, err := ParsePageRequest("", next, "zzzqqqx", "", ""); err == nil && !(len(fl.Words) == 1 && fl.Words[0] == "zzzqqqx" && fl.From == nil && fl.To == nil) {
			t.Fatalf("the cursor of %+v was accepted with q=zzzqqqx", fl)
		}
	})
}

// FuzzWords checks the tokenizer: every word is a non-empty run of letters
// and digits, already folded, and the words of a text are the words of the
// text with its separators replaced by spaces.
func FuzzWords(f *testing.F) {
	for _, s := range []string{"Hello, World!", "Straße ΣΟΦΙΑ ς \u212a", "日本語のテキスト", "a\u0301b", "\xff\xfe", "x1-y2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		words := Words(text)
		var b strings.Builder
		for _, r := range text {
			if unicode.IsLetter(r) || unicode.IsDigit(r) {
				b.WriteRune(r)
			} else {
				b.WriteByte(' ')
			}
		}
		fields := strings.Fields(b.String())
		if len(fields) != len(words) {
			t.Fatalf("Words(%q) = %q, want the %d runs %q", text, words, len(fields), fields)
		}
		for i, w := range words {
			if w == "" || FoldWord(w) != w || !strings.EqualFold(w, fields[i]) {
				t.Fatalf("Words(%q)[%d] = %q, from the run %q", text, i, w, fields[i])
			}
			if iw := IndexWord(w); !validIndexWord(iw) {
				t.Fatalf("IndexWord(%q) = %q is not a valid index form", w, iw)
			}
		}
	})
}
