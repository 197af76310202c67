package journal_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/journalsvc/journal"
)

func TestNewIDIsUUIDv7(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 27, 15, 0, 0, 0, time.UTC)
	id := journal.NewID(at)
	if !journal.ValidID(id) {
		t.Fatalf("NewID = %q, not a valid id", id)
	}
	if got, want := id[14], byte('7'); got != want {
		t.Errorf("version nibble = %c, want %c (id %s)", got, want, id)
	}
	if c := id[19]; !strings.ContainsRune("89ab", rune(c)) {
		t.Errorf("variant nibble = %c, want one of 89ab (id %s)", c, id)
	}
	later := journal.NewID(at.Add(time.Millisecond))
	if later[:13] <= id[:13] {
		t.Errorf("ids do not sort by time: %s then %s", id, later)
	}
	if journal.NewID(at) == id {
		t.Errorf("two ids in the same millisecond are equal")
	}
}

func TestValidID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"0190a6c8-3f2b-7c1d-9e4f-0123456789ab", true},
		{"0190A6C8-3F2B-7C1D-9E4F-0123456789AB", false}, // canonical form is lower case
		{"0190a6c8-3f2b-7c1d-9e4f-0123456789a", false},
		{"0190a6c8x3f2b-7c1d-9e4f-0123456789ab", false},
		{"not-a-uuid", false},
		{"", false},
		{"'; DROP TABLE entries; --", false},
	} {
		if got := journal.ValidID(tc.in); got != tc.want {
			t.Errorf("ValidID(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	c := journal.Cursor{
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC),
		ID:        "0190a6c8-3f2b-7c1d-9e4f-0123456789ab",
	}
	got, err := journal.DecodeCursor(c.Encode())
	if err != nil {
		t.Fatalf("DecodeCursor(Encode(c)) error: %v", err)
	}
	if !got.CreatedAt.Equal(c.CreatedAt) || got.ID != c.ID {
		t.Errorf("DecodeCursor(Encode(c)) = %+v, want %+v", got, c)
	}
}

func TestDecodeCursorRejects(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"", "!!!", "bm90LWEtY3Vyc29y", // "not-a-cursor"
		b64("1.1.0190a6c8-3f2b-7c1d-9e4f-0123456789ab"),                         // an older version
		b64("3.1.0190a6c8-3f2b-7c1d-9e4f-0123456789ab..."),                      // unknown version
		b64("2.-5.0190a6c8-3f2b-7c1d-9e4f-0123456789ab..."),                     // negative time
		b64("2.+5.0190a6c8-3f2b-7c1d-9e4f-0123456789ab..."),                     // non-canonical number
		b64("2.05.0190a6c8-3f2b-7c1d-9e4f-0123456789ab..."),                     // leading zero
		b64("2.5.0190a6c8-3f2b-7c1d-9e4f-0123456789ab...."),                     // trailing part
		b64("2.5.0190a6c8-3f2b-7c1d-9e4f-0123456789ab.5.5."),                    // from not before to
		b64("2.5.0190a6c8-3f2b-7c1d-9e4f-0123456789ab...b a"),                   // words not sorted
		b64("2.5.0190a6c8-3f2b-7c1d-9e4f-0123456789ab...a a"),                   // repeated word
		b64("2.5.0190a6c8-3f2b-7c1d-9e4f-0123456789ab...A"),                     // not folded
		b64("2.5.0190a6c8-3f2b-7c1d-9e4f-0123456789ab...a-b"),                   // not a word
		b64("2.5.0190a6c8-3f2b-7c1d-9e4f-0123456789ab...a b c d e f g h i j k"), // too many words
		b64("2.5.zzzz..."),
		strings.Repeat("A", 1025),
	} {
		if _, err := journal.DecodeCursor(in); !errors.Is(err, journal.ErrInvalidCursor) {
			t.Errorf("DecodeCursor(%q) error = %v, want ErrInvalidCursor", in, err)
		}
	}
}

// b64 encodes s the way cursors are encoded, to forge cursors in tests.
func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestParsePageRequest(t *testing.T) {
	t.Parallel()
	valid := journal.Cursor{CreatedAt: time.UnixMicro(42).UTC(), ID: "0190a6c8-3f2b-7c1d-9e4f-0123456789ab"}.Encode()
	for _, tc := range []struct {
		limit, cursor string
		wantLimit     int
		wantFields    []string
	}{
		{"", "", 20, nil},
		{"1", "", 1, nil},
		{"100", valid, 100, nil},
		{"0", "", 0, []string{"limit"}},
		{"101", "", 0, []string{"limit"}},
		{"ten", "", 0, []string{"limit"}},
		{"-1", "", 0, []string{"limit"}},
		{"5", "garbage", 0, []string{"cursor"}},
		{"x", "garbage", 0, []string{"limit", "cursor"}},
	} {
		req, err := journal.ParsePageRequest(tc.limit, tc.cursor, "", "", "")
		if got := fields(t, err); !slices.Equal(got, tc.wantFields) {
			t.Errorf("ParsePageRequest(%q, %q) bad fields = %v, want %v", tc.limit, tc.cursor, got, tc.wantFields)
		}
		if err == nil && req.Limit != tc.wantLimit {
			t.Errorf("ParsePageRequest(%q, %q) = %+v; want limit %d", tc.limit, tc.cursor, req, tc.wantLimit)
		}
	}
}

func TestValidateCredentials(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		user, pass string
		bad        []string
	}{
		{"alice", "correct horse", nil},
		{"a.b-c_9", "12345678", nil},
		{"ab", "12345678", []string{"username"}},
		{strings.Repeat("a", 33), "12345678", []string{"username"}},
		{"Alice", "12345678", []string{"username"}},
		{"al ice", "12345678", []string{"username"}},
		{"alice", "1234567", []string{"password"}},
		{"alice", strings.Repeat("p", 257), []string{"password"}},
		{"alice", strings.Repeat("p", 256), nil},
		{"", "", []string{"username", "password"}},
	} {
		err := journal.ValidateCredentials(tc.user, tc.pass)
		if got := fields(t, err); !slices.Equal(got, tc.bad) {
			t.Errorf("ValidateCredentials(%q, %d bytes) bad fields = %v, want %v", tc.user, len(tc.pass), got, tc.bad)
		}
	}
}

func TestValidateEntryFields(t *testing.T) {
	t.Parallel()
	ok := func(err error) bool { return err == nil }
	if !ok(journal.ValidateTitle(strings.Repeat("é", 200))) {
		t.Errorf("200 two-byte characters rejected as a title")
	}
	for _, title := range []string{"", strings.Repeat("x", 201), "bad \xff utf8"} {
		if ok(journal.ValidateTitle(title)) {
			t.Errorf("ValidateTitle(%q) accepted", title)
		}
	}
	if !ok(journal.ValidateBody("")) || !ok(journal.ValidateBody(strings.Repeat("b", 65536))) {
		t.Errorf("valid body rejected")
	}
	if ok(journal.ValidateBody(strings.Repeat("b", 65537))) || ok(journal.ValidateBody("\xff")) {
		t.Errorf("invalid body accepted")
	}
	title := "t"
	if err := (journal.EntryPatch{}).Validate(); err == nil {
		t.Errorf("empty patch accepted")
	}
	if err := (journal.EntryPatch{Title: &title}).Validate(); err != nil {
		t.Errorf("title-only patch rejected: %v", err)
	}
	empty := ""
	if err := (journal.EntryPatch{Title: &empty, Body: &empty}).Validate(); err == nil {
		t.Errorf("patch with empty title accepted")
	}
}

func TestTokenSecret(t *testing.T) {
	t.Parallel()
	secret, hash := journal.NewTokenSecret()
	if !journal.WellFormedTokenSecret(secret) {
		t.Fatalf("NewTokenSecret secret %q is not well formed", secret)
	}
	if got := journal.HashToken(secret); got != hash || len(hash) != 64 {
		t.Errorf("HashToken(secret) = %q, want %q (64 hex chars)", got, hash)
	}
	for _, s := range []string{"", secret, strings.Repeat("x", 64), strings.Repeat("y", 65), strings.Repeat("z", 1000)} {
		sum := sha256.Sum256([]byte(s))
		if got, want := journal.HashToken(s), hex.EncodeToString(sum[:]); got != want {
			t.Errorf("HashToken(%d bytes) = %q, want %q", len(s), got, want)
		}
	}
	for _, bad := range []string{"", "short", secret + "x", strings.Repeat("!", len(secret))} {
		if journal.WellFormedTokenSecret(bad) {
			t.Errorf("WellFormedTokenSecret(%q) = true", bad)
		}
	}
	now := time.Now()
	tok := journal.Token{ExpiresAt: now.Add(time.Minute)}
	if !tok.Valid(now) || tok.Valid(now.Add(time.Minute)) {
		t.Errorf("Token.Valid does not honour ExpiresAt")
	}
	tok.Revoked = true
	if tok.Valid(now) {
		t.Errorf("revoked token is valid")
	}
}

func TestControlChar(t *testing.T) {
	t.Parallel()
	for c := rune(0); c <= 0xa0; c++ {
		want := (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || (c >= 0x7f && c <= 0x9f)
		got, refused := journal.ControlChar("ok " + string(c) + " ok")
		if refused != want || (refused && got != c) {
			t.Errorf("ControlChar(%U) = %U, %v; want refused %v", c, got, refused, want)
		}
	}
	for _, s := range []string{"", "plain", "tab\tLF\nCR\r", "\U0001F600 4 bytes", "\u2028 line separator", "\ufeff BOM", "\xff invalid"} {
		if c, ok := journal.ControlChar(s); ok {
			t.Errorf("ControlChar(%q) = %U, true; want none", s, c)
		}
	}
}

func TestValidateEntryNamesTheField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		title, body string
		fields      []string
	}{
		{"ok", "ok", nil},
		{"a\x00b", "ok", []string{"title"}},
		{"ok", "a\x00b", []string{"body"}},
		{"\x1b[2J", "\u009b2J", []string{"title", "body"}},
		{"a\x7f", "", []string{"title"}},
		{"tab\there", "CRLF\r\n", nil},
	} {
		err := journal.ValidateEntry(tc.title, tc.body)
		if got := fields(t, err); !slices.Equal(got, tc.fields) {
			t.Errorf("ValidateEntry(%q, %q) refused %v, want %v", tc.title, tc.body, got, tc.fields)
		}
		var ve *journal.ValidationError
		if errors.As(err, &ve) {
			for _, f := range ve.Errors {
				if !strings.Contains(f.Message, "control character U+") {
					t.Errorf("ValidateEntry(%q, %q): message %q does not name the character", tc.title, tc.body, f.Message)
				}
			}
		}
	}
}

// FuzzWellFormedTokenSecret: what the check accepts is exactly 43
// characters of the unpadded base64url alphabet that decode to 32 bytes.
func FuzzWellFormedTokenSecret(f *testing.F) {
	secret, _ := journal.NewTokenSecret()
	for _, s := range []string{secret, secret[:42], secret + "A", secret[:42] + "\n", secret[:42] + "=", secret[:20] + "\r\n" + secret[22:], strings.Repeat("+", 43), ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !journal.WellFormedTokenSecret(s) {
			return
		}
		b, err := base64.RawURLEncoding.DecodeString(s)
		if len(s) != 43 || strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" || err != nil || len(b) != 32 {
			t.Fatalf("WellFormedTokenSecret(%q) = true: not 43 characters of base64url decoding to 32 bytes", s)
		}
	})
}
