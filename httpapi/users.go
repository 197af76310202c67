package httpapi

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/password"
)

// credentialsRequest is the body of POST /v1/users and POST /v1/tokens.
type credentialsRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
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

// tokenJSON is the wire form of a new token: the secret, shown once.
type tokenJSON struct {
	Token     string `json:"token"`
	ExpiresAt string `json:"expires_at"`
}

func handleUserCreate(logger *slog.Logger, users journal.UserStore, pw *password.Hasher, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		var in credentialsRequest
		if err := decodeJSON(w, r, &in); err != nil {
			writeError(w, r, logger, err)
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
func handleTokenCreate(logger *slog.Logger, users journal.UserStore, tokens journal.TokenStore, pw *password.Hasher, ttl time.Duration, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		var in credentialsRequest
		if err := decodeJSON(w, r, &in); err != nil {
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
		if err != nil {
			writeError(w, r, logger, err)
			return
		}
		secret, hash := journal.NewTokenSecret()
		t := journal.StoredTime(now())
		tok := journal.Token{Hash: hash, ID: journal.NewID(t), UserID: u.ID, CreatedAt: t, ExpiresAt: journal.StoredTime(t.Add(ttl))}
		if err := tokens.CreateToken(r.Context(), tok); err != nil {
			writeError(w, r, logger, err)
			return
		}
		if st := stateFrom(r.Context()); st != nil {
			st.userID = u.ID
		}
		writeJSON(w, r, logger, http.StatusCreated, tokenJSON{Token: secret, ExpiresAt: formatTime(tok.ExpiresAt)})
	})
}

func handleTokenRevoke(logger *slog.Logger, tokens journal.TokenStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := tokens.RevokeToken(r.Context(), tokenHashFrom(r.Context()))
		if isNotFound(err) {
			err = errBadToken // revoked concurrently
		}
		if err != nil {
			writeError(w, r, logger, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
