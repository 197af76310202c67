// Package journal is the domain vocabulary of the journal service: users, bearer
// tokens, journal entries, keyset pages and their cursors, input validation, the
// sentinel errors every adapter returns, and context helpers.
//
// It depends on the standard library only. Adapters (sqlite, postgres, httpapi,
// entrycache) implement or consume the store interfaces declared here; wiring
// happens in cmd/journal.
package journal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors returned by stores and services. Check them with errors.Is.
var (
	// ErrNotFound reports that a user, token or entry does not exist, or that it
	// belongs to another user (the two are indistinguishable on purpose).
	ErrNotFound = errors.New("journal: not found")
	// ErrUsernameTaken reports that a username is already registered.
	ErrUsernameTaken = errors.New("journal: username taken")
	// ErrVersionMismatch reports that a conditional update or delete expected a
	// version the entry no longer has (HTTP 412).
	ErrVersionMismatch = errors.New("journal: version mismatch")
	// ErrInvalidCursor reports a page cursor that does not decode (HTTP 400).
	ErrInvalidCursor = errors.New("journal: invalid cursor")
	// ErrPasswordMismatch reports that the current password given to change
	// it is wrong (HTTP 403).
	ErrPasswordMismatch = errors.New("journal: current password does not match")
	// ErrPurgeRunning reports that another process holds the purge (see
	// Purger); nothing was deleted.
	ErrPurgeRunning = errors.New("journal: a purge is running elsewhere")
	// ErrUnavailable reports that the database cannot answer now: it is
	// down, restarting, unreachable or did not answer in time. The same call
	// may succeed later (HTTP 503 with Retry-After). Stores wrap their
	// driver's error with it, so errors.Is finds both.
	ErrUnavailable = errors.New("journal: database unavailable")
)

// FieldError is one validation failure of one input field.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError lists every invalid field of one input. It maps to HTTP 400.
type ValidationError struct {
	Errors []FieldError
}

// Error implements error.
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, f := range e.Errors {
		parts[i] = f.Field + ": " + f.Message
	}
	return "journal: invalid input: " + strings.Join(parts, "; ")
}

// add records a failure; it is a no-op on a nil receiver's caller side.
func (e *ValidationError) add(field, format string, args ...any) {
	e.Errors = append(e.Errors, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// err returns e as an error, or nil when it holds no failure.
func (e *ValidationError) err() error {
	if len(e.Errors) == 0 {
		return nil
	}
	return e
}

// Invalid returns a ValidationError for a single field.
func Invalid(field, message string) error {
	return &ValidationError{Errors: []FieldError{{Field: field, Message: message}}}
}

// TimeResolution is the precision of every stored timestamp. Times are
// truncated to it before they are stored or returned, so the value a create
// returns equals every later read on both databases.
const TimeResolution = time.Microsecond

// StoredTime returns t as a store keeps it: in UTC, truncated to
// TimeResolution. It reads no clock.
func StoredTime(t time.Time) time.Time { return t.UTC().Truncate(TimeResolution) }

type ctxKey int

const (
	userKey ctxKey = iota
	requestIDKey
)

// WithUser returns a context carrying the authenticated user.
func WithUser(ctx context.Context, u User) context.Context {
	return context.WithValue(ctx, userKey, u)
}

// UserFromContext returns the authenticated user stored by WithUser.
func UserFromContext(ctx context.Context) (User, bool) {
	u, ok := ctx.Value(userKey).(User)
	return u, ok
}

// WithRequestID returns a context carrying the request ID.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

// RequestIDFromContext returns the request ID stored by WithRequestID, or "".
func RequestIDFromContext(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}
