package journal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"time"
)

// MaxIdempotencyKeyLen is the longest Idempotency-Key accepted, in characters.
const MaxIdempotencyKeyLen = 255

// errBadIdempotencyKey is the error ParseIdempotencyKey returns.
var errBadIdempotencyKey = Invalid("Idempotency-Key",
	"must be one Structured Field string (\"abc-123\") or a bare token of 1-255 visible ASCII characters")

// ParseIdempotencyKey parses the values of the Idempotency-Key header field:
// absent (no value) gives "", false; one value that is a Structured Field
// string (RFC 8941: "..." with \" and \\ escapes, printable ASCII) or a bare
// token of visible ASCII, with 1-255 characters either way, gives the key.
// `"abc"` and `abc` name the same key. Anything else (several values,
// parameters, a longer or empty key) is a *ValidationError naming the header.
func ParseIdempotencyKey(values []string) (key string, ok bool, err error) {
	switch len(values) {
	case 0:
		return "", false, nil
	case 1:
	default:
		return "", false, errBadIdempotencyKey
	}
	v := strings.Trim(values[0], " \t")
	if !strings.HasPrefix(v, `"`) {
		if v == "" || len(v) > MaxIdempotencyKeyLen {
			return "", false, errBadIdempotencyKey
		}
		for i := 0; i < len(v); i++ {
			if v[i] < 0x21 || v[i] > 0x7e {
				return "", false, errBadIdempotencyKey
			}
		}
		return v, true, nil
	}
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\':
			i++
			if i == len(v) || (v[i] != '"' && v[i] != '\\') {
				return "", false, errBadIdempotencyKey
			}
			b.WriteByte(v[i])
		case c == '"':
			if i != len(v)-1 || b.Len() == 0 || b.Len() > MaxIdempotencyKeyLen {
				return "", false, errBadIdempotencyKey
			}
			return b.String(), true, nil
		case c < 0x20 || c > 0x7e:
			return "", false, errBadIdempotencyKey
		default:
			b.WriteByte(c)
		}
	}
	return "", false, errBadIdempotencyKey // no closing quote
}

// RequestFingerprint returns the fingerprint an idempotency record keeps of
// its request: the hex SHA-256 of the method, the path and the SHA-256 of
// the body.
func RequestFingerprint(method, path string, body []byte) string {
	bodySum := sha256.Sum256(body)
	h := sha256.New()
	h.Write([]byte(method + " " + path + "\n"))
	h.Write(bodySum[:])
	return hex.EncodeToString(h.Sum(nil))
}

// StoredResponse is the response an idempotency record replays.
type StoredResponse struct {
	Status   int
	Location string
	ETag     string
	Body     []byte
}

// IdempotencyRecord is what a store remembers of one (user, Idempotency-Key):
// pending while the first request runs (Response nil, Claim set), then the
// response it made. A record is live until ExpiresAt; after that it is as
// if there were none.
type IdempotencyRecord struct {
	UserID      string
	Key         string
	Fingerprint string
	// Claim identifies the request that holds a pending record.
	Claim     string
	Response  *StoredResponse
	ExpiresAt time.Time
}

// ErrClaimLost reports that a pending idempotency record is no longer held
// by the claim that tried to complete it: it expired and another request
// claimed the key. Nothing was stored.
var ErrClaimLost = errors.New("journal: idempotency claim lost")

// IdempotencyStore keeps idempotency records. Implementations are safe for
// concurrent use.
type IdempotencyStore interface {
	// ClaimIdempotencyKey stores rec, which must be pending (Claim set,
	// Response nil), unless a live record holds (rec.UserID, rec.Key) at
	// now: then it stores nothing and returns that record and false. A
	// record expired at now is replaced. Claims are atomic across every
	// process using the database: of concurrent claims of one key, one
	// wins.
	ClaimIdempotencyKey(ctx context.Context, rec IdempotencyRecord, now time.Time) (IdempotencyRecord, bool, error)
	// ReleaseIdempotencyKey deletes the pending record of (userID, key) if
	// claim still holds it, so that a retry runs again. Otherwise it does
	// nothing.
	ReleaseIdempotencyKey(ctx context.Context, userID, key, claim string) error
}
