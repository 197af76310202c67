package journal

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// Page size limits for ListEntries.
const (
	DefaultPageLimit = 20
	MaxPageLimit     = 100
)

// Cursor is a keyset position: the page continues with entries strictly older
// than (CreatedAt, ID) in (created_at DESC, id DESC) order.
type Cursor struct {
	CreatedAt time.Time
	ID        string
}

// cursorVersion prefixes every encoded cursor so the format can change.
const cursorVersion = "1"

// Encode returns the cursor as an opaque URL-safe string.
func (c Cursor) Encode() string {
	raw := cursorVersion + "." + strconv.FormatInt(c.CreatedAt.UnixMicro(), 10) + "." + c.ID
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// DecodeCursor parses a cursor made by Cursor.Encode. Anything else returns
// ErrInvalidCursor.
func DecodeCursor(s string) (Cursor, error) {
	if s == "" || len(s) > 128 {
		return Cursor{}, ErrInvalidCursor
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, ErrInvalidCursor
	}
	parts := strings.Split(string(raw), ".")
	if len(parts) != 3 || parts[0] != cursorVersion || !ValidID(parts[2]) {
		return Cursor{}, ErrInvalidCursor
	}
	us, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || us < 0 || strconv.FormatInt(us, 10) != parts[1] {
		return Cursor{}, ErrInvalidCursor
	}
	return Cursor{CreatedAt: time.UnixMicro(us).UTC(), ID: parts[2]}, nil
}

// PageRequest asks for one page. Limit must be 1..MaxPageLimit; After is nil
// for the first page.
type PageRequest struct {
	Limit int
	After *Cursor
}

// Page is one page of entries and the cursor of the next, nil when no entry
// follows.
type Page struct {
	Entries []Entry
	Next    *Cursor
}

// ParsePageRequest parses the limit and cursor query parameters ("" means
// default / first page). Errors are *ValidationError.
func ParsePageRequest(limit, cursor string) (PageRequest, error) {
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
	if cursor != "" {
		c, err := DecodeCursor(cursor)
		if err != nil {
			v.add("cursor", "is not a cursor returned by this API")
		} else {
			req.After = &c
		}
	}
	return req, v.err()
}
