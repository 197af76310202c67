package journal

import (
	"context"
	"time"
)

// User is a registered account. PasswordHash is an encoded argon2id hash and
// never leaves the server.
type User struct {
	ID           string
	Username     string
	PasswordHash string
	CreatedAt    time.Time
}

// Username and password limits, checked by ValidateCredentials.
const (
	MinUsernameLen = 3
	MaxUsernameLen = 32
	MinPasswordLen = 8   // bytes
	MaxPasswordLen = 256 // bytes
)

// ValidateCredentials checks a username (3-32 characters of [a-z0-9_.-]) and a
// password (8-256 bytes). It returns a *ValidationError naming every bad field.
func ValidateCredentials(username, password string) error {
	var v ValidationError
	switch {
	case len(username) < MinUsernameLen || len(username) > MaxUsernameLen:
		v.add("username", "must be %d-%d characters long", MinUsernameLen, MaxUsernameLen)
	default:
		for i := 0; i < len(username); i++ {
			c := username[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
				v.add("username", "may contain only a-z, 0-9, '_', '.' and '-'")
				break
			}
		}
	}
	if len(password) < MinPasswordLen || len(password) > MaxPasswordLen {
		v.add("password", "must be %d-%d bytes long", MinPasswordLen, MaxPasswordLen)
	}
	return v.err()
}

// UserStore persists users. Implementations are safe for concurrent use.
type UserStore interface {
	// CreateUser stores u (ID, Username, PasswordHash and CreatedAt set by the
	// caller). It returns ErrUsernameTaken when the username exists.
	CreateUser(ctx context.Context, u User) error
	// UserByUsername returns the user or ErrNotFound.
	UserByUsername(ctx context.Context, username string) (User, error)
	// UserByID returns the user or ErrNotFound (also for a malformed id).
	UserByID(ctx context.Context, id string) (User, error)
}
