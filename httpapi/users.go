package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/password"
)

// credentialsRequest is the body of POST /v1/users.
type credentialsRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// loginRequest is the body of POST /v1/tokens: credentials and an optional
// name for the new token.
type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Name     string `json:"name"`
}

// userJSON is the wire form of a user.
type userJSON struct {
	ID        string `json:"id"`
	Username  string `json:"username"`
	CreatedAt string `json:"created_at"`
}

func toUserJSON(u journal.User) userJSON {
	return userJSON{ID: u.ID, Username: u.Username, CreatedAt: formatTime(u.CreatedAt)}
}

// tokenJSON is the wire form of a new token: the secret, shown once, with
// the public id and name it is listed by.
type tokenJSON struct {
	Token     string `json:"token"`
	ID        string `json:"id"`
	Name      string `json:"name"`
	ExpiresAt string `json:"expires_at"`
}

// tokenInfoJSON is the wire form of a token in GET /v1/tokens: never the
// secret nor its hash.
type tokenInfoJSON struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	CreatedAt string `json:"created_at"`
	ExpiresAt string `json:"expires_at"`
	Current   bool   `json:"current"`
}

// tokenListJSON is the body of GET /v1/tokens.
type tokenListJSON struct {
	Tokens []tokenInfoJSON `json:"tokens"`
}

// decodeSecret decodes the body of a request that carries a password into
// dst and marks the answer no-store, a problem too: such answers may carry a
// token secret. False means the problem of a bad body has been answered.
func decodeSecret(w http.ResponseWriter, r *http.Request, logger *slog.Logger, dst any) bool {
	w.Header().Set("Cache-Control", "no-store")
	if err := decodeJSON(w, r, dst); err != nil {
		writeError(w, r, logger, err)
		return false
	}
	return true
}

func handleUserCreate(logger *slog.Logger, users journal.UserStore, pw *password.Hasher, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in credentialsRequest
		if !decodeSecret(w, r, logger, &in) {
			return
		}
		if err := journal.ValidateCredentials(in.Username, in.Password); err != nil {
			writeError(w, r, logger, err)
			return
		}
		hash, err := pw.Hash(r.Context(), in.Password)
		if err != nil {
			writeError(w, r, logger, err)
			return
		}
		t := journal.StoredTime(now())
		u := journal.User{ID: journal.NewID(t), Username: in.Username, PasswordHash: hash, CreatedAt: t}
		if err := users.CreateUser(r.Context(), u); err != nil {
			writeError(w, r, logger, err)
			return
		}
		writeJSON(w, r, logger, http.StatusCreated, toUserJSON(u))
	})
}

func handleUserMe(logger *slog.Logger, users journal.UserStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := users.UserByID(r.Context(), userID(r))
		if isNotFound(err) {
			err = errBadToken // the token outlived its user
		}
		if err != nil {
			writeError(w, r, logger, err)
			return
		}
		writeJSON(w, r, logger, http.StatusOK, toUserJSON(u))
	})
}

// handleTokenCreate logs a user in. A wrong password, an unknown user and a
// username that cannot exist all answer the same 401 after the same
// password-hashing work (DummyVerify), so the answer and its timing do not
// tell which usernames exist.
func handleTokenCreate(logger *slog.Logger, users journal.UserStore, tokens journal.TokenStore, pw *password.Hasher, lim *logins, ttl time.Duration, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in loginRequest
		if !decodeSecret(w, r, logger, &in) {
			return
		}
		if err := journal.ValidateTokenName(in.Name); err != nil {
			writeError(w, r, logger, err)
			return
		}
		var missing journal.ValidationError
		if in.Username == "" {
			missing.Errors = append(missing.Errors, journal.FieldError{Field: "username", Message: "is required"})
		}
		if in.Password == "" {
			missing.Errors = append(missing.Errors, journal.FieldError{Field: "password", Message: "is required"})
		}
		if len(missing.Errors) > 0 {
			writeError(w, r, logger, &missing)
			return
		}
		check, ok := lim.attempt(w, r, in.Username)
		if !ok {
			return // refused before any password is hashed
		}
		var u journal.User
		err := journal.ValidateCredentials(in.Username, in.Password)
		if err == nil {
			u, err = users.UserByUsername(r.Context(), in.Username)
		}
		switch {
		case err == nil:
			var ok bool
			ok, err = pw.Verify(r.Context(), u.PasswordHash, in.Password)
			if err == nil && !ok {
				err = errBadCredentials
			}
		case isNotFound(err) || isValidation(err):
			// No such user (or a username that cannot exist): do the same
			// work as a wrong password.
			err = pw.DummyVerify(r.Context(), in.Password)
			if err == nil {
				err = errBadCredentials
			}
		}
		check.done(w, r, errors.Is(err, errBadCredentials))
		if err != nil {
			writeError(w, r, logger, err)
			return
		}
		secret, hash := journal.NewTokenSecret()
		t := journal.StoredTime(now())
		tok := journal.Token{Hash: hash, ID: journal.NewID(t), UserID: u.ID, Name: in.Name, CreatedAt: t, ExpiresAt: journal.StoredTime(t.Add(ttl))}
		if err := tokens.CreateToken(r.Context(), tok); err != nil {
			writeError(w, r, logger, err)
			return
		}
		if st := stateFrom(r.Context()); st != nil {
			st.userID = u.ID
		}
		writeJSON(w, r, logger, http.StatusCreated, tokenJSON{Token: secret, ID: tok.ID, Name: tok.Name, ExpiresAt: formatTime(tok.ExpiresAt)})
	})
}

func handleTokenRevoke(logger *slog.Logger, tokens journal.TokenStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		noContent(w, r, logger, func() error {
			err := tokens.RevokeToken(r.Context(), tokenHashFrom(r.Context()))
			if isNotFound(err) {
				return errBadToken // revoked concurrently
			}
			return err
		})
	})
}

// passwordChangeRequest is the body of PUT /v1/users/me/password.
type passwordChangeRequest struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

// handlePasswordChange checks the current password (403 naming
// current_password when wrong), validates the new one like a signup, stores
// its hash and revokes every other token of the user; the token that made
// the request stays valid.
func handlePasswordChange(logger *slog.Logger, users journal.UserStore, pw *password.Hasher, lim *logins, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in passwordChangeRequest
		if !decodeSecret(w, r, logger, &in) {
			return
		}
		var v journal.ValidationError
		if in.CurrentPassword == "" {
			v.Errors = append(v.Errors, journal.FieldError{Field: "current_password", Message: "is required"})
		}
		if err := journal.ValidatePassword("new_password", in.NewPassword); err != nil {
			v.Errors = append(v.Errors, err.(*journal.ValidationError).Errors...)
		}
		if len(v.Errors) > 0 {
			writeError(w, r, logger, &v)
			return
		}
		u, err := users.UserByID(r.Context(), userID(r))
		if isNotFound(err) {
			err = errBadToken // the token outlived its user
		}
		if err == nil {
			// A password check like a login's, limited alike.
			check, ok := lim.attempt(w, r, u.Username)
			if !ok {
				return
			}
			ok, err = pw.Verify(r.Context(), u.PasswordHash, in.CurrentPassword)
			if err == nil && !ok {
				err = journal.ErrPasswordMismatch
			}
			check.done(w, r, errors.Is(err, journal.ErrPasswordMismatch))
		}
		var hash string
		if err == nil {
			hash, err = pw.Hash(r.Context(), in.NewPassword)
		}
		if err == nil {
			err = users.ChangePassword(r.Context(), u.ID, u.PasswordHash, hash, tokenHashFrom(r.Context()), now())
		}
		if err != nil {
			writeError(w, r, logger, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// noContent answers 204 after op, or the problem of its error.
func noContent(w http.ResponseWriter, r *http.Request, logger *slog.Logger, op func() error) {
	if err := op(); err != nil {
		writeError(w, r, logger, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleUserDelete deletes the account with everything of it.
func handleUserDelete(logger *slog.Logger, users journal.UserStore, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		noContent(w, r, logger, func() error {
			err := users.DeleteUser(r.Context(), userID(r), now())
			if isNotFound(err) {
				return errBadToken // deleted concurrently
			}
			return err
		})
	})
}

// handleTokenList lists the user's live tokens, newest first, marking the
// one that made the request.
func handleTokenList(logger *slog.Logger, tokens journal.TokenStore, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		ts, err := tokens.Tokens(r.Context(), userID(r), now())
		if err != nil {
			writeError(w, r, logger, err)
			return
		}
		current := tokenHashFrom(r.Context())
		out := tokenListJSON{Tokens: make([]tokenInfoJSON, len(ts))}
		for i, t := range ts {
			out.Tokens[i] = tokenInfoJSON{ID: t.ID, Name: t.Name, CreatedAt: formatTime(t.CreatedAt),
				ExpiresAt: formatTime(t.ExpiresAt), Current: t.Hash == current}
		}
		writeJSON(w, r, logger, http.StatusOK, out)
	})
}

// handleTokenRevokeID revokes one of the user's tokens by its public id: 404
// for an unknown id and for another user's token alike.
func handleTokenRevokeID(logger *slog.Logger, tokens journal.TokenStore, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		noContent(w, r, logger, func() error {
			return tokens.RevokeTokenByID(r.Context(), userID(r), r.PathValue("id"), now())
		})
	})
}

// handleTokenRevokeAll logs the user out everywhere: every token, the one
// that made the request too.
func handleTokenRevokeAll(logger *slog.Logger, tokens journal.TokenStore, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		noContent(w, r, logger, func() error {
			_, err := tokens.RevokeTokens(r.Context(), userID(r), "", now())
			return err
		})
	})
}
