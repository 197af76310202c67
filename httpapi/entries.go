package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/journalsvc/journal"
)

// timeFormat is RFC 3339 in UTC with exactly six fractional digits: times
// are truncated to journal.TimeResolution, so the value POST returns equals
// every later GET.
const timeFormat = "2006-01-02T15:04:05.000000Z07:00"

func formatTime(t time.Time) string { return journal.StoredTime(t).Format(timeFormat) }

// entryJSON is the wire form of an entry.
type entryJSON struct {
	ID        string `json:"id"`
	Title     string `json:"title"`
	Body      string `json:"body"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
}

func toEntryJSON(e journal.Entry) entryJSON {
	return entryJSON{ID: e.ID, Title: e.Title, Body: e.Body, CreatedAt: formatTime(e.CreatedAt), UpdatedAt: formatTime(e.UpdatedAt)}
}

// entryListJSON is the wire form of a page.
type entryListJSON struct {
	Entries    []entryJSON `json:"entries"`
	NextCursor *string     `json:"next_cursor"`
}

// entryETag is the strong ETag of an entry: its version, `"v<version>"`.
// Versions come from the database and increase on every update.
func entryETag(e journal.Entry) string { return `"v` + strconv.FormatInt(e.Version, 10) + `"` }

// pageETag is the strong ETag of a list page: a hash of the ids and
// versions on it and of the next cursor, `"p<22 base64url chars>"`.
func pageETag(p journal.Page) string {
	h := sha256.New()
	var b []byte
	for _, e := range p.Entries {
		b = append(b[:0], e.ID...)
		b = append(b, ':')
		b = strconv.AppendInt(b, e.Version, 10)
		b = append(b, '\n')
		h.Write(b)
	}
	if p.Next != nil {
		h.Write([]byte("next:" + p.Next.Encode()))
	}
	return `"p` + base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16]) + `"`
}

// userID returns the authenticated user's ID (set by authenticate).
func userID(r *http.Request) string {
	u, _ := journal.UserFromContext(r.Context())
	return u.ID
}

func handleEntryList(logger *slog.Logger, entries journal.EntryStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := queryParams(r, "limit", "cursor", "q", "from", "to")
		if err != nil {
			writeError(w, r, logger, err)
			return
		}
		req, err := journal.ParsePageRequest(q["limit"], q["cursor"], q["q"], q["from"], q["to"])
		if err != nil {
			writeError(w, r, logger, err)
			return
		}
		page, err := entries.ListEntries(r.Context(), userID(r), req)
		if err != nil {
			writeError(w, r, logger, err)
			return
		}
		if notModified(w, r, pageETag(page)) {
			return
		}
		out := entryListJSON{Entries: make([]entryJSON, len(page.Entries))}
		for i, e := range page.Entries {
			out.Entries[i] = toEntryJSON(e)
		}
		if page.Next != nil {
			c := page.Next.Encode()
			out.NextCursor = &c
		}
		writeJSON(w, r, logger, http.StatusOK, out)
	})
}

// entryCreateRequest is the body of POST /v1/entries.
type entryCreateRequest struct {
	Title optString `json:"title"`
	Body  optString `json:"body"`
}

// idempotency is how POST /v1/entries remembers Idempotency-Keys.
type idempotency struct {
	store journal.IdempotencyStore
	// ttl is how long a completed record is replayed.
	ttl time.Duration
	// pending bounds how long a first request holds its key: a request
	// that crashed blocks retries of its key no longer than this.
	pending time.Duration
}

// handleEntryCreate creates an entry. With an Idempotency-Key, the first
// request claims the key in the database before the work, so that a
// concurrent retry on any instance gets 409; the entry and the response are
// stored in one transaction; a retry with the same request gets the stored
// response with Idempotent-Replayed: true, and one with another request 422.
// A first request that fails releases its claim: a retry runs again.
func handleEntryCreate(logger *slog.Logger, entries journal.EntryStore, idem idempotency, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, hasKey, err := journal.ParseIdempotencyKey(r.Header.Values("Idempotency-Key"))
		if err != nil {
			writeError(w, r, logger, err)
			return
		}
		body, err := readJSON(w, r)
		if err != nil {
			writeError(w, r, logger, err)
			return
		}
		var in entryCreateRequest
		if err := decodeJSONBytes(body, &in); err != nil {
			writeError(w, r, logger, err)
			return
		}
		if err := validateEntryFields(in.Title, in.Body, true); err != nil {
			writeError(w, r, logger, err)
			return
		}
		t := journal.StoredTime(now())
		e := journal.Entry{
			ID: journal.NewID(t), UserID: userID(r), Title: in.Title.Value, Body: in.Body.Value,
			CreatedAt: t, UpdatedAt: t, Version: 1,
		}
		if !hasKey {
			created, err := entries.CreateEntry(r.Context(), e)
			if err != nil {
				writeError(w, r, logger, err)
				return
			}
			writeStored(w, createdResponse(created), false)
			return
		}
		rec := journal.IdempotencyRecord{
			UserID: e.UserID, Key: key, Fingerprint: journal.RequestFingerprint(r.Method, r.URL.Path, body),
			Claim: journal.NewID(t), ExpiresAt: t.Add(idem.pending),
		}
		held, claimed, err := idem.store.ClaimIdempotencyKey(r.Context(), rec, t)
		switch {
		case err != nil:
			writeError(w, r, logger, err)
			return
		case claimed:
		case held.Fingerprint != rec.Fingerprint:
			writeError(w, r, logger, errKeyReused)
			return
		case held.Response == nil:
			writeError(w, r, logger, errKeyInFlight)
			return
		default:
			writeStored(w, *held.Response, true)
			return
		}
		// The stored entry is e as the store keeps it: its response is known
		// before the transaction that stores both.
		resp := createdResponse(e)
		done := rec
		done.Response, done.ExpiresAt = &resp, t.Add(idem.ttl)
		if _, err := entries.CreateEntryIdempotent(r.Context(), e, done); err != nil {
			if !errors.Is(err, journal.ErrClaimLost) {
				// Nothing was stored: free the key for a retry, also when the
				// client went away.
				ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), releaseTimeout)
				if rerr := idem.store.ReleaseIdempotencyKey(ctx, rec.UserID, rec.Key, rec.Claim); rerr != nil {
					logger.LogAttrs(ctx, slog.LevelWarn, "releasing an Idempotency-Key failed; it frees itself when its claim expires",
						slog.String("request_id", w.Header().Get("X-Request-ID")), slog.String("error", rerr.Error()))
				}
				cancel()
			}
			writeError(w, r, logger, err)
			return
		}
		writeStored(w, resp, false)
	})
}

// releaseTimeout bounds the release of an Idempotency-Key claim after a
// failed first request.
const releaseTimeout = 5 * time.Second

// createdResponse is the 201 answer to the creation of e.
func createdResponse(e journal.Entry) journal.StoredResponse {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(toEntryJSON(e)) // strings only: it always encodes
	return journal.StoredResponse{Status: http.StatusCreated, Location: "/v1/entries/" + e.ID, ETag: entryETag(e), Body: buf.Bytes()}
}

// writeStored writes a response of POST /v1/entries; replayed marks it
// Idempotent-Replayed.
func writeStored(w http.ResponseWriter, resp journal.StoredResponse, replayed bool) {
	h := w.Header()
	if resp.Location != "" {
		h.Set("Location", resp.Location)
	}
	if resp.ETag != "" {
		h.Set("ETag", resp.ETag)
	}
	if replayed {
		h.Set("Idempotent-Replayed", "true")
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
}

// exportBatch is how many entries an export reads at a time: its memory
// does not grow with the number of entries, and it holds no database
// connection while the client reads.
const exportBatch = 256

// exportWriteWindow is how long the client gets to take each batch of an
// export: the server's write timeout bounds a whole ordinary response, not a
// stream, so the deadline moves forward with every batch.
const exportWriteWindow = 30 * time.Second

// handleExport streams every entry of the user, oldest first, one JSON
// object a line (application/x-ndjson). A failure after the first line
// aborts the response, so a client never mistakes a cut export for a whole
// one.
func handleExport(logger *slog.Logger, entries journal.EntryStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uid := userID(r)
		rc := http.NewResponseController(w)
		bw := bufio.NewWriterSize(w, 32<<10)
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		var after *journal.Cursor
		for started := false; ; started = true {
			batch, err := entries.ExportEntries(r.Context(), uid, after, exportBatch)
			if err != nil && !started {
				writeError(w, r, logger, err)
				return
			}
			if err != nil && r.Context().Err() != nil {
				return // the client is gone
			}
			if err != nil {
				logger.LogAttrs(r.Context(), slog.LevelError, "export failed after it started; aborting the response",
					slog.String("request_id", w.Header().Get("X-Request-ID")), slog.String("error", err.Error()))
				panic(http.ErrAbortHandler)
			}
			if !started {
				w.Header().Set("Content-Type", "application/x-ndjson")
				w.WriteHeader(http.StatusOK)
			}
			_ = rc.SetWriteDeadline(time.Now().Add(exportWriteWindow)) // unsupported only in tests
			for _, e := range batch {
				if err := enc.Encode(toEntryJSON(e)); err != nil {
					return // the client is gone
				}
			}
			if len(batch) < exportBatch {
				break
			}
			last := batch[len(batch)-1]
			after = &journal.Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
		}
		_ = bw.Flush()
	})
}

// validateEntryFields checks title and body as given in a request; with
// create, a missing title is an error.
func validateEntryFields(title, body optString, create bool) error {
	var v journal.ValidationError
	if fe := title.nullError("title"); fe != nil {
		v.Errors = append(v.Errors, *fe)
	} else if title.Set || create {
		if err := journal.ValidateTitle(title.Value); err != nil {
			v.Errors = append(v.Errors, err.(*journal.ValidationError).Errors...)
		}
	}
	if fe := body.nullError("body"); fe != nil {
		v.Errors = append(v.Errors, *fe)
	} else if body.Set {
		if err := journal.ValidateBody(body.Value); err != nil {
			v.Errors = append(v.Errors, err.(*journal.ValidationError).Errors...)
		}
	}
	if !create && !title.Set && !body.Set {
		v.Errors = append(v.Errors, journal.FieldError{Message: "at least one of title, body is required"})
	}
	if len(v.Errors) > 0 {
		return &v
	}
	return nil
}

func handleEntryGet(logger *slog.Logger, entries journal.EntryStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e, err := entries.Entry(r.Context(), userID(r), r.PathValue("id"))
		if err != nil {
			writeError(w, r, logger, err)
			return
		}
		if notModified(w, r, entryETag(e)) {
			return
		}
		writeJSON(w, r, logger, http.StatusOK, toEntryJSON(e))
	})
}

// entryPatchRequest is the body of PATCH /v1/entries/{id}.
type entryPatchRequest struct {
	Title optString `json:"title"`
	Body  optString `json:"body"`
}

func handleEntryPatch(logger *slog.Logger, entries journal.EntryStore, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in entryPatchRequest
		if err := decodeJSON(w, r, &in); err != nil {
			writeError(w, r, logger, err)
			return
		}
		if err := validateEntryFields(in.Title, in.Body, false); err != nil {
			writeError(w, r, logger, err)
			return
		}
		var p journal.EntryPatch
		if in.Title.Set {
			p.Title = &in.Title.Value
		}
		if in.Body.Set {
			p.Body = &in.Body.Value
		}
		uid, id := userID(r), r.PathValue("id")
		ifVersion, err := ifMatchVersion(r, entries, uid, id)
		if err != nil {
			writeError(w, r, logger, err)
			return
		}
		e, err := entries.UpdateEntry(r.Context(), uid, id, p, ifVersion, journal.StoredTime(now()))
		if err != nil {
			writeError(w, r, logger, err)
			return
		}
		w.Header().Set("ETag", entryETag(e))
		writeJSON(w, r, logger, http.StatusOK, toEntryJSON(e))
	})
}

func handleEntryDelete(logger *slog.Logger, entries journal.EntryStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uid, id := userID(r), r.PathValue("id")
		ifVersion, err := ifMatchVersion(r, entries, uid, id)
		if err != nil {
			writeError(w, r, logger, err)
			return
		}
		if err := entries.DeleteEntry(r.Context(), uid, id, ifVersion); err != nil {
			writeError(w, r, logger, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// ifMatchVersion turns If-Match into the expected version for the store:
// no header or "*" is journal.AnyVersion (the store still answers 404 for a
// missing entry); one strong ETag of ours is its version. Otherwise (several
// tags, weak or foreign tags) the current entry is read: missing is
// ErrNotFound, a version among the tags is returned (the store rechecks it
// atomically), else errPreconditionETag (412).
func ifMatchVersion(r *http.Request, entries journal.EntryStore, uid, id string) (int64, error) {
	vals := r.Header.Values("If-Match")
	if len(vals) == 0 {
		return journal.AnyVersion, nil
	}
	tags, star := parseETags(vals)
	if star {
		return journal.AnyVersion, nil
	}
	var versions []int64
	for _, t := range tags {
		if v, ok := parseEntryETag(t); ok {
			versions = append(versions, v)
		}
	}
	if len(versions) == 1 {
		return versions[0], nil
	}
	e, err := entries.Entry(r.Context(), uid, id)
	if err != nil {
		return 0, err
	}
	for _, v := range versions {
		if v == e.Version {
			return v, nil
		}
	}
	return 0, errPreconditionETag
}

// etag is one entity-tag of a conditional header; opaque keeps its quotes.
type etag struct {
	weak   bool
	opaque string
}

// parseETags parses the values of If-Match or If-None-Match (RFC 9110
// 8.8.3): "*" or a comma-separated list of entity-tags. Parsing stops at the
// first malformed element; the tags before it are kept.
func parseETags(values []string) (tags []etag, star bool) {
	for _, v := range values {
		s := v
		for {
			s = strings.TrimLeft(s, " \t,")
			if s == "" {
				break
			}
			if s[0] == '*' {
				star = true
				s = s[1:]
				continue
			}
			weak := false
			if strings.HasPrefix(s, "W/") {
				weak, s = true, s[2:]
			}
			if len(s) < 2 || s[0] != '"' {
				return tags, star
			}
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return tags, star
			}
			tags = append(tags, etag{weak: weak, opaque: s[:end+2]})
			s = s[end+2:]
		}
	}
	return tags, star
}

// parseEntryETag returns the version of a strong entry ETag `"v<n>"`, n ≥ 1.
func parseEntryETag(t etag) (int64, bool) {
	if t.weak || len(t.opaque) < 4 || t.opaque[1] != 'v' {
		return 0, false
	}
	digits := t.opaque[2 : len(t.opaque)-1]
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n < 1 || strconv.FormatInt(n, 10) != digits {
		return 0, false
	}
	return n, true
}

// notModified sets the ETag of a GET's answer to tag and, when If-None-Match
// matches it, answers 304 and reports true: the handler then writes nothing
// more.
func notModified(w http.ResponseWriter, r *http.Request, tag string) bool {
	w.Header()[keyETag] = []string{tag}
	if !noneMatch(r, tag) {
		return false
	}
	w.WriteHeader(http.StatusNotModified)
	return true
}

// noneMatch reports whether If-None-Match matches current (weak comparison,
// or "*" for an existing resource): the answer is then 304.
func noneMatch(r *http.Request, current string) bool {
	vals := r.Header.Values("If-None-Match")
	if len(vals) == 0 {
		return false
	}
	tags, star := parseETags(vals)
	if star {
		return true
	}
	for _, t := range tags {
		if t.opaque == current {
			return true
		}
	}
	return false
}
