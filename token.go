package journal

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"time"
)

// Token is a bearer token as stored: only the SHA-256 hash of the secret is
// kept. The database is the source of truth for revocation.
type Token struct {
	Hash      string // hex SHA-256 of the secret
	UserID    string
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

// HashToken returns the hex SHA-256 of a token secret.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// WellFormedTokenSecret reports whether s has the shape of a secret made by
// NewTokenSecret (43 characters of unpadded base64url), so garbage never
// reaches a store. The alphabet is checked byte by byte: the base64 decoder
// alone would skip CR and LF.
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
	b, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil && len(b) == TokenBytes
}

// TokenStore persists tokens. Implementations are safe for concurrent use.
type TokenStore interface {
	// CreateToken stores t.
	CreateToken(ctx context.Context, t Token) error
	// TokenByHash returns the token (revoked or expired ones included) or
	// ErrNotFound.
	TokenByHash(ctx context.Context, hash string) (Token, error)
	// RevokeToken marks the token revoked and records a Change for it in the
	// outbox in the same transaction. Revoking an unknown or already revoked
	// token returns ErrNotFound.
	RevokeToken(ctx context.Context, hash string) error
}
