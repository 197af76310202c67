package journal

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"
)

// Entry is one journal entry. Version starts at 1 and is incremented by every
// update; strong ETags derive from it.
type Entry struct {
	ID        string
	UserID    string
	Title     string
	Body      string
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Entry limits, checked by ValidateTitle and ValidateBody.
const (
	MaxTitleChars = 200       // Unicode characters
	MaxBodyBytes  = 64 * 1024 // bytes
)

// ValidateTitle checks a title: 1-200 Unicode characters of valid UTF-8
// without a control character (see [ControlChar]).
func ValidateTitle(title string) error {
	switch {
	case !utf8.ValidString(title):
		return Invalid("title", "must be valid UTF-8")
	case title == "":
		return Invalid("title", "is required")
	case utf8.RuneCountInString(title) > MaxTitleChars:
		return Invalid("title", "must be at most 200 characters")
	}
	if c, ok := ControlChar(title); ok {
		return Invalid("title", controlMessage(c))
	}
	return nil
}

// ValidateBody checks a body: valid UTF-8 without a control character (see
// [ControlChar]), at most 65,536 bytes.
func ValidateBody(body string) error {
	switch {
	case !utf8.ValidString(body):
		return Invalid("body", "must be valid UTF-8")
	case len(body) > MaxBodyBytes:
		return Invalid("body", "must be at most 65536 bytes")
	}
	if c, ok := ControlChar(body); ok {
		return Invalid("body", controlMessage(c))
	}
	return nil
}

// ValidateEntry checks the title and body of a new entry and reports every
// invalid field.
func ValidateEntry(title, body string) error {
	return EntryPatch{Title: &title, Body: &body}.Validate()
}

// ControlChar returns the first control character of s that text fields
// refuse, and true; or 0 and false when there is none. Refused are the
// Unicode control characters (general category Cc) other than tab, line feed
// and carriage return: U+0000-U+001F (C0, NUL included), U+007F (DEL) and
// U+0080-U+009F (C1). None of them is text: PostgreSQL cannot store NUL in a
// text column at all, and the others reach terminals and logs as escape
// sequences (C1 U+009B is a CSI) or mark text decoded with the wrong
// encoding. Refusing them on input keeps both databases storing the same
// strings. s is expected to be valid UTF-8; an invalid byte is not a control
// character.
func ControlChar(s string) (rune, bool) {
	for _, c := range s {
		if isRefusedControl(c) {
			return c, true
		}
	}
	return 0, false
}

func isRefusedControl(c rune) bool {
	switch {
	case c == '\t', c == '\n', c == '\r':
		return false
	case c < 0x20, c >= 0x7f && c <= 0x9f:
		return true
	}
	return false
}

func controlMessage(c rune) string {
	return fmt.Sprintf("must not contain the control character %U (only tab, LF and CR are allowed)", c)
}

// EntryPatch is a partial update; nil fields are left unchanged.
type EntryPatch struct {
	Title *string
	Body  *string
}

// Validate checks the fields present and that at least one is.
func (p EntryPatch) Validate() error {
	var v ValidationError
	if p.Title == nil && p.Body == nil {
		v.add("", "at least one of title, body is required")
		return v.err()
	}
	if p.Title != nil {
		if err := ValidateTitle(*p.Title); err != nil {
			v.Errors = append(v.Errors, err.(*ValidationError).Errors...)
		}
	}
	if p.Body != nil {
		if err := ValidateBody(*p.Body); err != nil {
			v.Errors = append(v.Errors, err.(*ValidationError).Errors...)
		}
	}
	return v.err()
}

// Apply returns e with the patch applied (version and times untouched).
func (p EntryPatch) Apply(e Entry) Entry {
	if p.Title != nil {
		e.Title = *p.Title
	}
	if p.Body != nil {
		e.Body = *p.Body
	}
	return e
}

// AnyVersion, passed as the expected version of an update or delete, makes it
// unconditional.
const AnyVersion int64 = 0

// EntryStore persists entries, always scoped by user: another user's entry is
// ErrNotFound, exactly like a missing one or a malformed id. Implementations are
// safe for concurrent use. Every committed write also records a Change in the
// outbox in the same transaction (see Outbox).
type EntryStore interface {
	// CreateEntry stores e (ID, UserID, Title, Body, CreatedAt and UpdatedAt
	// set by the caller; Version is set to 1) and returns the stored entry.
	// A title or body that ValidateEntry refuses is its *ValidationError,
	// and nothing is stored.
	CreateEntry(ctx context.Context, e Entry) (Entry, error)
	// CreateEntryIdempotent is CreateEntry that, in the same transaction,
	// completes the pending idempotency record (done.UserID, done.Key) held
	// by done.Claim: it then holds done.Response until done.ExpiresAt. If
	// the claim no longer holds the record it returns ErrClaimLost and
	// stores nothing.
	CreateEntryIdempotent(ctx context.Context, e Entry, done IdempotencyRecord) (Entry, error)
	// Entry returns one entry of the user or ErrNotFound.
	Entry(ctx context.Context, userID, id string) (Entry, error)
	// ListEntries returns a page of the user's entries that req.Filter
	// selects, newest first (created_at descending, ties by id descending).
	// The filter's words are looked up in an index, never by reading every
	// entry of the user.
	ListEntries(ctx context.Context, userID string, req PageRequest) (Page, error)
	// ExportEntries returns up to limit of the user's entries oldest first
	// (created_at, then id, ascending), strictly after the position after
	// (nil: from the first); its Filter is ignored.
	ExportEntries(ctx context.Context, userID string, after *Cursor, limit int) ([]Entry, error)
	// UpdateEntry applies p at now and increments the version. With
	// ifVersion != AnyVersion it fails with ErrVersionMismatch unless the entry
	// has that version. Returns ErrNotFound for a missing entry, and the
	// *ValidationError of p.Validate, storing nothing, for an invalid patch.
	UpdateEntry(ctx context.Context, userID, id string, p EntryPatch, ifVersion int64, now time.Time) (Entry, error)
	// DeleteEntry removes the entry, conditionally like UpdateEntry.
	DeleteEntry(ctx context.Context, userID, id string, ifVersion int64) error
}

// Change is one committed write recorded in the outbox table in the same
// transaction as the write, so the cache invalidation it requires survives a
// Redis outage or a crash between commit and invalidation (see
// docs/design.md, section "Cache and coherence").
type Change struct {
	Seq       int64  // outbox sequence number
	UserID    string // whose data changed
	EntryID   string // the entry written, or ""
	TokenHash string // the token revoked, or ""
	// With neither EntryID nor TokenHash, the change is the deletion of the
	// user: every list page of theirs is stale.
}

// Outbox gives access to pending changes.
type Outbox interface {
	// ApplyChanges applies up to limit pending changes, oldest first: it calls
	// apply with them and deletes them when apply returns nil; on error they
	// stay pending and the error is returned. It returns the number of
	// changes applied.
	//
	// With userID == "" (a replay) it claims any user's changes, skipping
	// those another replay holds (FOR UPDATE SKIP LOCKED), so concurrent
	// replays never apply one change twice.
	//
	// With userID != "" (the write path) it never waits for another caller:
	// it applies every change of that user committed before the call, even
	// those a replay is applying at that moment (so apply must be
	// idempotent), and deletes the ones no replay holds; the replay deletes
	// the rest. On return without error, every such change has been applied
	// by this call. In this mode no transaction or lock is held while apply
	// runs.
	ApplyChanges(ctx context.Context, userID string, limit int, apply func(context.Context, []Change) error) (int, error)
	// PendingChanges returns the number of changes not yet applied.
	PendingChanges(ctx context.Context) (int64, error)
}

// Purger deletes what no longer serves any purpose, so no table grows
// without bound.
type Purger interface {
	// Purge deletes up to limit tokens revoked or expired at now, and up to
	// limit idempotency records expired at now, and returns how many rows it
	// deleted. At most one Purge runs at a time across every process using
	// the database; a call that finds another running returns
	// ErrPurgeRunning.
	Purge(ctx context.Context, now time.Time, limit int) (int, error)
}

// Database is the contract of a database adapter (the sqlite and postgres
// stores): users, tokens, entries and idempotency records kept with the
// outbox of their changes. Implementations are safe for concurrent use.
type Database interface {
	UserStore
	TokenStore
	EntryStore
	IdempotencyStore
	Outbox
	Purger
	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	// Close releases the database; it must not be used afterwards.
	Close() error
}
