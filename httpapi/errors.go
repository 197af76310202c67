package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/password"
	"github.com/journalsvc/journal/ratelimit/httplimit"
)

// clientError is a 4xx answer decided by this package (bad request framing,
// no route, bad credentials), with the detail the client sees.
type clientError struct {
	status int
	detail string
	fields []journal.FieldError
}

func (e *clientError) Error() string { return e.detail }

// Errors of this package's own decisions.
var (
	errNoToken          = &clientError{http.StatusUnauthorized, "missing or malformed bearer token", nil}
	errBadToken         = &clientError{http.StatusUnauthorized, "unknown, expired or revoked bearer token", nil}
	errBadCredentials   = &clientError{http.StatusUnauthorized, "invalid username or password", nil}
	errNoRoute          = &clientError{http.StatusNotFound, "no such resource", nil}
	errMethodNotAllowed = &clientError{http.StatusMethodNotAllowed, "method not allowed on this resource; see the Allow header", nil}
	errPreconditionETag = &clientError{http.StatusPreconditionFailed, "If-Match does not match the current ETag of the entry", nil}
	errWrongPassword    = &clientError{http.StatusForbidden, "current_password is wrong",
		[]journal.FieldError{{Field: "current_password", Message: "is wrong"}}}
	errKeyInFlight = &clientError{http.StatusConflict,
		"a request with this Idempotency-Key is still being processed; retry it later", nil}
	errKeyReused = &clientError{http.StatusUnprocessableEntity,
		"this Idempotency-Key was used for another request (method, path or body differ)",
		[]journal.FieldError{{Field: "Idempotency-Key", Message: "was used for another request"}}}
)

// inFlightRetryAfter is the Retry-After of a 409 for an Idempotency-Key
// whose first request is still being processed.
const inFlightRetryAfter = "1"

// busyRetryAfter is the Retry-After of a 503 answered because a resource is
// saturated or down for now: the password hasher, or the database.
const busyRetryAfter = "1"

// statusClientClosed is logged when the client went away before the answer
// (nginx's convention; the client never sees it).
const statusClientClosed = 499

// problem is an RFC 9457 problem details object.
type problem struct {
	Type      string               `json:"type"`
	Title     string               `json:"title"`
	Status    int                  `json:"status"`
	Detail    string               `json:"detail"`
	Errors    []journal.FieldError `json:"errors,omitempty"`
	RequestID string               `json:"request_id,omitempty"`
}

// problemFor is the one place that maps an error to an HTTP answer.
func problemFor(r *http.Request, err error) problem {
	p := problem{Type: "about:blank", Status: http.StatusInternalServerError, Detail: "internal server error"}
	var ce *clientError
	var ve *journal.ValidationError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ce):
		p.Status, p.Detail, p.Errors = ce.status, ce.detail, ce.fields
	case errors.As(err, &ve):
		p.Status, p.Detail, p.Errors = http.StatusBadRequest, validationDetail(ve), ve.Errors
	case errors.As(err, &mbe):
		p.Status, p.Detail = http.StatusRequestEntityTooLarge, "request body exceeds "+strconv.FormatInt(mbe.Limit, 10)+" bytes"
	case errors.Is(err, journal.ErrInvalidCursor):
		p.Status, p.Detail = http.StatusBadRequest, "cursor is not a cursor returned by this API"
		p.Errors = []journal.FieldError{{Field: "cursor", Message: "is not a cursor returned by this API"}}
	case errors.Is(err, journal.ErrNotFound):
		p.Status, p.Detail = http.StatusNotFound, "not found"
	case errors.Is(err, journal.ErrUsernameTaken):
		p.Status, p.Detail = http.StatusConflict, "username is already taken"
		p.Errors = []journal.FieldError{{Field: "username", Message: "is already taken"}}
	case errors.Is(err, journal.ErrVersionMismatch):
		p.Status, p.Detail = http.StatusPreconditionFailed, errPreconditionETag.detail
	case errors.Is(err, journal.ErrPasswordMismatch):
		p.Status, p.Detail, p.Errors = errWrongPassword.status, errWrongPassword.detail, errWrongPassword.fields
	case errors.Is(err, journal.ErrClaimLost):
		p.Status, p.Detail = errKeyInFlight.status, errKeyInFlight.detail
	case errors.Is(err, password.ErrBusy):
		p.Type = httplimit.ProblemTemporaryReducedCapacity
		p.Status, p.Detail = http.StatusServiceUnavailable, "too many password checks in progress; retry later"
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		p.Status, p.Detail = statusClientClosed, "client closed the request"
	case errors.Is(err, journal.ErrUnavailable):
		// The database is down, restarting or too slow. A write is one
		// transaction: refused, it was applied whole or not at all.
		p.Type = httplimit.ProblemTemporaryReducedCapacity
		p.Status, p.Detail = http.StatusServiceUnavailable, "the database is unavailable; retry later"
	case errors.Is(err, context.DeadlineExceeded):
		p.Type = httplimit.ProblemTemporaryReducedCapacity
		p.Status, p.Detail = http.StatusServiceUnavailable, "the request timed out; retry later"
	}
	p.Title = http.StatusText(p.Status)
	if p.Status == statusClientClosed {
		p.Title = "Client Closed Request"
	}
	return p
}

func validationDetail(ve *journal.ValidationError) string {
	parts := make([]string, len(ve.Errors))
	for i, f := range ve.Errors {
		if f.Field == "" {
			parts[i] = f.Message
		} else {
			parts[i] = f.Field + " " + f.Message
		}
	}
	return strings.Join(parts, "; ")
}

// writeError answers r with the problem err maps to (see problemFor). 5xx
// errors are logged with the request ID; the client gets a generic detail.
func writeError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	p := problemFor(r, err)
	h := w.Header()
	switch p.Status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", "Bearer")
	case http.StatusServiceUnavailable:
		if p.Type == httplimit.ProblemTemporaryReducedCapacity {
			h.Set("Retry-After", busyRetryAfter)
		}
	case http.StatusConflict:
		if errors.Is(err, errKeyInFlight) || errors.Is(err, journal.ErrClaimLost) {
			h.Set("Retry-After", inFlightRetryAfter)
		}
	}
	if p.Status >= 500 || p.Status == statusClientClosed {
		// A client that left or a resource down for now is expected; the
		// rest is a fault of the service.
		level := slog.LevelError
		if p.Status == statusClientClosed || p.Type == httplimit.ProblemTemporaryReducedCapacity {
			level = slog.LevelWarn
		}
		route := ""
		if st := stateFrom(r.Context()); st != nil {
			route = st.pattern
		}
		logger.LogAttrs(r.Context(), level, "request failed",
			slog.String("request_id", w.Header().Get("X-Request-ID")),
			slog.String("route", route),
			slog.Int("status", p.Status),
			slog.String("error", err.Error()))
	}
	writeProblem(w, r, p)
}

// writeProblem writes p as application/problem+json in one Write.
func writeProblem(w http.ResponseWriter, _ *http.Request, p problem) {
	p.RequestID = w.Header().Get("X-Request-ID")
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(p) // a problem always encodes
	h := w.Header()
	h.Del("ETag")
	h.Set("Content-Type", "application/problem+json")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(p.Status)
	_, _ = w.Write(buf.Bytes())
}

// writeJSON writes v as application/json with status in one Write.
func writeJSON(w http.ResponseWriter, r *http.Request, logger *slog.Logger, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		writeError(w, r, logger, err)
		return
	}
	h := w.Header()
	h[keyContentType] = valJSON
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// handleUnmatched answers a request no route matched with err's problem.
func handleUnmatched(logger *slog.Logger, err error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, logger, err)
	})
}

func isNotFound(err error) bool { return errors.Is(err, journal.ErrNotFound) }

func isValidation(err error) bool {
	var ve *journal.ValidationError
	return errors.As(err, &ve)
}
