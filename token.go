package journal

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"time"
	"unicode"
	"unicode/utf8"
)

// Token is a bearer token as stored: only the SHA-256 hash of the secret is
// kept. The database is the source of truth for revocation.
type Token struct {
	Hash string // hex SHA-256 of the secret
	// ID is the token's public name (a UUIDv7): what a client lists and
	// revokes it by. It tells nothing about the secret.
	ID        string
	UserID    string
	Name      string // chosen at login, 0-64 characters
	CreatedAt time.Time
	ExpiresAt time.Time
	Revoked   bool
}

// Valid reports whether the token may authenticate a request at now.
func (t Token) Valid(now time.Time) bool { return !t.Revoked && now.Before(t.ExpiresAt) }

// TokenBytes is the number of random bytes in a token secret.
const TokenBytes = 32

// NewTokenSecret returns a new random token secret (32 bytes, unpadded
// base64url) and its hash for storage.
func NewTokenSecret() (secret, hash string) {
	var b [TokenBytes]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error.
	secret = base64.RawURLEncoding.EncodeToString(b[:])
	return secret, HashToken(secret)
}

// HashToken returns the hex SHA-256 of a token secret. Every authenticated
// request hashes its token, so a secret of the usual size is copied to the
// stack for hashing and the hex is built there: the result is the one
// allocation.
func HashToken(secret string) string {
	var in [64]byte
	var sum [sha256.Size]byte
	if len(secret) <= len(in) {
		sum = sha256.Sum256(in[:copy(in[:], secret)])
	} else {
		sum = sha256.Sum256([]byte(secret))
	}
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

// WellFormedTokenSecret reports whether s has the shape of a secret made by
// NewTokenSecret (43 characters of unpadded base64url), so garbage never
// reaches a store. The alphabet is checked byte by byte: the base64 decoder
// alone would skip CR and LF. That check and the length are the whole test:
// 43 characters of the alphabet always decode to 32 bytes (RawURLEncoding
// is not strict, so the spare bits of the last character may be anything),
// and every request checks its token, so nothing is decoded.
func WellFormedTokenSecret(s string) bool {
	if len(s) != base64.RawURLEncoding.EncodedLen(TokenBytes) {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// MaxTokenNameChars is the longest token name, in Unicode characters.
const MaxTokenNameChars = 64

// ValidateTokenName checks a token name: valid UTF-8, at most 64
// characters, no control characters. The empty name is valid.
func ValidateTokenName(name string) error {
	switch {
	case !utf8.ValidString(name):
		return Invalid("name", "must be valid UTF-8")
	case utf8.RuneCountInString(name) > MaxTokenNameChars:
		return Invalid("name", "must be at most 64 characters")
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return Invalid("name", "must not contain control characters")
		}
	}
	return nil
}

// TokenStore persists tokens. Implementations are safe for concurrent use.
// Every revocation records a Change per revoked token in the outbox in the
// same transaction (see Outbox), so cached lookups of it are dropped.
type TokenStore interface {
	// CreateToken stores t (Hash, ID, UserID, Name, CreatedAt, ExpiresAt set
	// by the caller). Its user must exist, else ErrNotFound.
	CreateToken(ctx context.Context, t Token) error
	// TokenByHash returns the token (revoked or expired ones included) or
	// ErrNotFound.
	TokenByHash(ctx context.Context, hash string) (Token, error)
	// RevokeToken marks the token revoked and records a Change for it in the
	// outbox in the same transaction. Revoking an unknown or already revoked
	// token returns ErrNotFound.
	RevokeToken(ctx context.Context, hash string) error
	// Tokens returns the user's live tokens at now (neither revoked nor
	// expired), newest first (created_at, then id, descending).
	Tokens(ctx context.Context, userID string, now time.Time) ([]Token, error)
	// RevokeTokenByID revokes the user's token with the public id id. An
	// unknown id, another user's token and one not live at now are
	// ErrNotFound.
	RevokeTokenByID(ctx context.Context, userID, id string, now time.Time) error
	// RevokeTokens revokes every token of the user live at now except the
	// one whose hash is keep ("" keeps none), atomically, and returns how
	// many it revoked.
	RevokeTokens(ctx context.Context, userID, keep string, now time.Time) (int, error)
}
