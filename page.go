package journal

import (
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Page size limits for ListEntries.
const (
	DefaultPageLimit = 20
	MaxPageLimit     = 100
)

// Cursor is a keyset position: the page continues with entries strictly older
// than (CreatedAt, ID) in (created_at DESC, id DESC) order. It carries the
// Filter of the list it continues, so a later page selects what the first
// did.
type Cursor struct {
	CreatedAt time.Time
	ID        string
	Filter    Filter
}

// cursorVersion prefixes every encoded cursor so the format can change.
const cursorVersion = "2"

// maxCursorLen bounds an encoded cursor: a position and a filter of at most
// MaxQueryWords words, whose folded forms take at most 1.5 x MaxQueryBytes.
const maxCursorLen = 1024

// Encode returns the cursor as an opaque URL-safe string:
// base64url("2.<created_at µs>.<id>.<from µs>.<to µs>.<words>"), where an
// absent bound is empty and the words are the filter's, space-separated.
func (c Cursor) Encode() string {
	var b strings.Builder
	b.WriteString(cursorVersion + ".")
	b.WriteString(strconv.FormatInt(c.CreatedAt.UnixMicro(), 10))
	b.WriteString("." + c.ID + ".")
	if c.Filter.From != nil {
		b.WriteString(strconv.FormatInt(c.Filter.From.UnixMicro(), 10))
	}
	b.WriteString(".")
	if c.Filter.To != nil {
		b.WriteString(strconv.FormatInt(c.Filter.To.UnixMicro(), 10))
	}
	b.WriteString("." + strings.Join(c.Filter.Words, " "))
	return base64.RawURLEncoding.EncodeToString([]byte(b.String()))
}

// DecodeCursor parses a cursor made by Cursor.Encode. Anything else,
// including a cursor that Encode would have written differently, returns
// ErrInvalidCursor.
func DecodeCursor(s string) (Cursor, error) {
	if s == "" || len(s) > maxCursorLen {
		return Cursor{}, ErrInvalidCursor
	}
	// One cursor has one encoding: the decoder would also take line breaks
	// and nonzero unused bits in the last character.
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || base64.RawURLEncoding.EncodeToString(raw) != s {
		return Cursor{}, ErrInvalidCursor
	}
	parts := strings.Split(string(raw), ".")
	if len(parts) != 6 || parts[0] != cursorVersion || !ValidID(parts[2]) {
		return Cursor{}, ErrInvalidCursor
	}
	us, ok := parseMicros(parts[1])
	if !ok || us < 0 {
		return Cursor{}, ErrInvalidCursor
	}
	c := Cursor{CreatedAt: time.UnixMicro(us).UTC(), ID: parts[2]}
	for i, dst := range []**time.Time{&c.Filter.From, &c.Filter.To} {
		if parts[3+i] == "" {
			continue
		}
		us, ok := parseMicros(parts[3+i])
		if !ok {
			return Cursor{}, ErrInvalidCursor
		}
		t := time.UnixMicro(us).UTC()
		*dst = &t
	}
	if f := c.Filter; f.From != nil && f.To != nil && !f.From.Before(*f.To) {
		return Cursor{}, ErrInvalidCursor
	}
	if parts[5] != "" {
		c.Filter.Words = strings.Split(parts[5], " ")
		if len(c.Filter.Words) > MaxQueryWords || !slices.IsSorted(c.Filter.Words) ||
			len(slices.Compact(slices.Clone(c.Filter.Words))) != len(c.Filter.Words) {
			return Cursor{}, ErrInvalidCursor
		}
		for _, w := range c.Filter.Words {
			if !validIndexWord(w) {
				return Cursor{}, ErrInvalidCursor
			}
		}
	}
	return c, nil
}

// parseMicros parses a decimal integer written as strconv.FormatInt does.
func parseMicros(s string) (int64, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && strconv.FormatInt(n, 10) == s
}

// validIndexWord reports whether w is a value IndexWord can return.
func validIndexWord(w string) bool {
	word, hash, long := strings.Cut(w, "~")
	if long {
		if len(hash) != 22 || len(word) == 0 || len(word) > 32 {
			return false
		}
		if b, err := base64.RawURLEncoding.DecodeString(hash); err != nil || base64.RawURLEncoding.EncodeToString(b) != hash {
			return false
		}
	} else if w == "" || len(w) > maxWordBytes {
		return false
	}
	if !utf8.ValidString(word) {
		return false
	}
	for _, r := range word {
		if !(unicode.IsLetter(r) || unicode.IsDigit(r)) || foldRune(r) != r {
			return false
		}
	}
	return true
}

// PageRequest asks for one page. Limit must be 1..MaxPageLimit; After is nil
// for the first page. Filter selects the entries; with After it equals
// After.Filter.
type PageRequest struct {
	Limit  int
	After  *Cursor
	Filter Filter
}

// Page is one page of entries and the cursor of the next, nil when no entry
// follows.
type Page struct {
	Entries []Entry
	Next    *Cursor
}

// ParsePageRequest parses the limit, cursor, q, from and to query parameters
// ("" means absent: the default limit, the first page, no filter). A cursor
// carries the filters of its list: given alone it continues that list, and
// given with filters it must have been made for the same ones. Errors are
// *ValidationError naming every bad parameter.
func ParsePageRequest(limit, cursor, q, from, to string) (PageRequest, error) {
	req := PageRequest{Limit: DefaultPageLimit}
	var v ValidationError
	if limit != "" {
		n, err := strconv.Atoi(limit)
		if err != nil || n < 1 || n > MaxPageLimit {
			v.add("limit", "must be an integer from 1 to %d", MaxPageLimit)
		} else {
			req.Limit = n
		}
	}
	f, ferr := ParseFilter(q, from, to)
	if ferr != nil {
		v.Errors = append(v.Errors, ferr.(*ValidationError).Errors...)
	}
	req.Filter = f
	if cursor != "" {
		c, err := DecodeCursor(cursor)
		switch {
		case err != nil:
			v.add("cursor", "is not a cursor returned by this API")
		case ferr != nil:
		case (q != "" || from != "" || to != "") && !c.Filter.Equal(f):
			v.add("cursor", "was returned for other filters (q, from, to) than these")
		default:
			req.After, req.Filter = &c, c.Filter
		}
	}
	return req, v.err()
}
