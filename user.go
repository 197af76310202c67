package journal

import (
	"context"
	"fmt"
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
	if err := ValidatePassword("password", password); err != nil {
		v.Errors = append(v.Errors, err.(*ValidationError).Errors...)
	}
	return v.err()
}

// ValidatePassword checks a password (8-256 bytes) given in the input field
// named field.
func ValidatePassword(field, password string) error {
	if len(password) < MinPasswordLen || len(password) > MaxPasswordLen {
		return Invalid(field, fmt.Sprintf("must be %d-%d bytes long", MinPasswordLen, MaxPasswordLen))
	}
	return nil
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
	// ChangePassword replaces the user's password hash oldHash with newHash
	// and revokes every token of the user live at now except the one whose
	// hash is keep, atomically. It returns ErrNotFound for a missing user
	// and ErrPasswordMismatch, changing nothing, when the stored hash is no
	// longer oldHash (the password changed since it was checked).
	ChangePassword(ctx context.Context, userID, oldHash, newHash, keep string, now time.Time) error
	// DeleteUser removes the user with every entry, token and idempotency
	// record of theirs in one transaction, recording the Changes that drop
	// their cached tokens and pages. A missing user is ErrNotFound.
	DeleteUser(ctx context.Context, userID string, now time.Time) error
}
