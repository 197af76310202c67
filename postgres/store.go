package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/journalsvc/journal"
)

// CreateUser stores u. It returns [journal.ErrUsernameTaken] when the username
// exists, and an error when u.ID is not a valid id.
func (s *Store) CreateUser(ctx context.Context, u journal.User) error {
	if !journal.ValidID(u.ID) {
		return fmt.Errorf("postgres: create user: malformed id %q", u.ID)
	}
	_, err := s.pool.Exec(ctx,
		"INSERT INTO users (id, username, password_hash, created_at) VALUES ($1, $2, $3, $4)",
		u.ID, u.Username, u.PasswordHash, journal.Now(u.CreatedAt))
	if code, constraint := pgCode(err); code == codeUniqueViolation && constraint == "users_username_key" {
		return journal.ErrUsernameTaken
	}
	if err != nil {
		return fmt.Errorf("postgres: create user: %w", err)
	}
	return nil
}

const userColumns = "id, username, password_hash, created_at"

func scanUser(row pgx.Row) (journal.User, error) {
	var u journal.User
	if err := row.Scan(&u.ID, &u.Username, &u.PasswordHash, &u.CreatedAt); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return journal.User{}, journal.ErrNotFound
		}
		return journal.User{}, fmt.Errorf("postgres: user: %w", err)
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, nil
}

// UserByUsername returns the user or [journal.ErrNotFound].
func (s *Store) UserByUsername(ctx context.Context, username string) (journal.User, error) {
	return scanUser(s.pool.QueryRow(ctx, "SELECT "+userColumns+" FROM users WHERE username = $1", username))
}

// UserByID returns the user or [journal.ErrNotFound] (also for a malformed id,
// without a query).
func (s *Store) UserByID(ctx context.Context, id string) (journal.User, error) {
	if !journal.ValidID(id) {
		return journal.User{}, journal.ErrNotFound
	}
	return scanUser(s.pool.QueryRow(ctx, "SELECT "+userColumns+" FROM users WHERE id = $1", id))
}

// CreateToken stores t. Its user must exist, else it returns
// [journal.ErrNotFound].
func (s *Store) CreateToken(ctx context.Context, t journal.Token) error {
	if !journal.ValidID(t.UserID) {
		return journal.ErrNotFound
	}
	var revoked *time.Time
	if t.Revoked {
		at := journal.Now(t.CreatedAt)
		revoked = &at
	}
	_, err := s.pool.Exec(ctx,
		"INSERT INTO tokens (hash, user_id, created_at, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5)",
		t.Hash, t.UserID, journal.Now(t.CreatedAt), journal.Now(t.ExpiresAt), revoked)
	if code, _ := pgCode(err); code == codeForeignKeyViolation {
		return journal.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("postgres: create token: %w", err)
	}
	return nil
}

// TokenByHash returns the token, revoked or expired ones included, or
// [journal.ErrNotFound].
func (s *Store) TokenByHash(ctx context.Context, hash string) (journal.Token, error) {
	var t journal.Token
	err := s.pool.QueryRow(ctx,
		"SELECT hash, user_id, created_at, expires_at, revoked_at IS NOT NULL FROM tokens WHERE hash = $1", hash).
		Scan(&t.Hash, &t.UserID, &t.CreatedAt, &t.ExpiresAt, &t.Revoked)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return journal.Token{}, journal.ErrNotFound
	case err != nil:
		return journal.Token{}, fmt.Errorf("postgres: token: %w", err)
	}
	t.CreatedAt, t.ExpiresAt = t.CreatedAt.UTC(), t.ExpiresAt.UTC()
	return t, nil
}

// RevokeToken marks the token revoked and records a [journal.Change] in the
// outbox in the same transaction. An unknown or already revoked token is
// [journal.ErrNotFound].
func (s *Store) RevokeToken(ctx context.Context, hash string) error {
	return s.write(ctx, "revoke token", func(tx pgx.Tx) error {
		var userID string
		err := tx.QueryRow(ctx,
			"UPDATE tokens SET revoked_at = now() WHERE hash = $1 AND revoked_at IS NULL RETURNING user_id", hash).
			Scan(&userID)
		if errors.Is(err, pgx.ErrNoRows) {
			return journal.ErrNotFound
		}
		if err != nil {
			return err
		}
		return insertChange(ctx, tx, userID, nil, hash)
	})
}

// write runs fn in one transaction and commits when fn returns nil. Domain
// sentinel errors from fn are returned as they are; others are wrapped.
func (s *Store) write(ctx context.Context, op string, fn func(pgx.Tx) error) error {
	err := pgx.BeginFunc(ctx, s.pool, fn)
	if err != nil && !isDomainError(err) {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	return err
}

// insertChange records a change; entryID is nil for a token change.
func insertChange(ctx context.Context, tx pgx.Tx, userID string, entryID *string, tokenHash string) error {
	_, err := tx.Exec(ctx,
		"INSERT INTO outbox (user_id, entry_id, token_hash) VALUES ($1, $2, $3)", userID, entryID, tokenHash)
	return err
}

const entryColumns = "id, user_id, title, body, version, created_at, updated_at"

func scanEntry(row pgx.Row) (journal.Entry, error) {
	var e journal.Entry
	if err := row.Scan(&e.ID, &e.UserID, &e.Title, &e.Body, &e.Version, &e.CreatedAt, &e.UpdatedAt); err != nil {
		return journal.Entry{}, err
	}
	e.CreatedAt, e.UpdatedAt = e.CreatedAt.UTC(), e.UpdatedAt.UTC()
	return e, nil
}

// CreateEntry stores e with Version 1 and its times truncated to
// [journal.TimeResolution] in UTC, records a [journal.Change], and returns the
// stored entry. e.ID must be a valid id; e.UserID must be an existing user,
// else it returns [journal.ErrNotFound].
func (s *Store) CreateEntry(ctx context.Context, e journal.Entry) (journal.Entry, error) {
	if !journal.ValidID(e.ID) {
		return journal.Entry{}, fmt.Errorf("postgres: create entry: malformed id %q", e.ID)
	}
	if !journal.ValidID(e.UserID) {
		return journal.Entry{}, journal.ErrNotFound
	}
	e.Version = 1
	e.CreatedAt, e.UpdatedAt = journal.Now(e.CreatedAt), journal.Now(e.UpdatedAt)
	err := s.write(ctx, "create entry", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx,
			"INSERT INTO entries ("+entryColumns+") VALUES ($1, $2, $3, $4, $5, $6, $7)",
			e.ID, e.UserID, e.Title, e.Body, e.Version, e.CreatedAt, e.UpdatedAt)
		if code, _ := pgCode(err); code == codeForeignKeyViolation {
			return journal.ErrNotFound
		}
		if err != nil {
			return err
		}
		return insertChange(ctx, tx, e.UserID, &e.ID, "")
	})
	if err != nil {
		return journal.Entry{}, err
	}
	return e, nil
}

// Entry returns one entry of the user or [journal.ErrNotFound] (also for a
// malformed id, without a query).
func (s *Store) Entry(ctx context.Context, userID, id string) (journal.Entry, error) {
	if !journal.ValidID(id) || !journal.ValidID(userID) {
		return journal.Entry{}, journal.ErrNotFound
	}
	e, err := scanEntry(s.pool.QueryRow(ctx,
		"SELECT "+entryColumns+" FROM entries WHERE id = $1 AND user_id = $2", id, userID))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return journal.Entry{}, journal.ErrNotFound
	case err != nil:
		return journal.Entry{}, fmt.Errorf("postgres: entry: %w", err)
	}
	return e, nil
}

// ListEntries returns a page of the user's entries, newest first (created_at
// descending, ties by id descending), strictly after req.After. Next is nil
// only when no entry follows the page. A req.Limit outside
// 1..[journal.MaxPageLimit] is a *journal.ValidationError; a cursor with a
// malformed id is [journal.ErrInvalidCursor].
func (s *Store) ListEntries(ctx context.Context, userID string, req journal.PageRequest) (journal.Page, error) {
	if req.Limit < 1 || req.Limit > journal.MaxPageLimit {
		return journal.Page{}, journal.Invalid("limit", fmt.Sprintf("must be an integer from 1 to %d", journal.MaxPageLimit))
	}
	if !journal.ValidID(userID) {
		return journal.Page{Entries: []journal.Entry{}}, nil
	}
	var rows pgx.Rows
	var err error
	if req.After == nil {
		rows, err = s.pool.Query(ctx,
			"SELECT "+entryColumns+" FROM entries WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
			userID, req.Limit+1)
	} else {
		if !journal.ValidID(req.After.ID) {
			return journal.Page{}, journal.ErrInvalidCursor
		}
		rows, err = s.pool.Query(ctx,
			"SELECT "+entryColumns+" FROM entries WHERE user_id = $1 AND (created_at, id) < ($2, $3)"+
				" ORDER BY created_at DESC, id DESC LIMIT $4",
			userID, journal.Now(req.After.CreatedAt), req.After.ID, req.Limit+1)
	}
	if err != nil {
		return journal.Page{}, fmt.Errorf("postgres: list entries: %w", err)
	}
	entries := make([]journal.Entry, 0, req.Limit+1)
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			rows.Close()
			return journal.Page{}, fmt.Errorf("postgres: list entries: %w", err)
		}
		entries = append(entries, e)
	}
	if err := rows.Err(); err != nil {
		return journal.Page{}, fmt.Errorf("postgres: list entries: %w", err)
	}
	page := journal.Page{Entries: entries}
	if len(entries) > req.Limit {
		page.Entries = entries[:req.Limit]
		last := page.Entries[req.Limit-1]
		page.Next = &journal.Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	return page, nil
}

// UpdateEntry applies p at now (truncated to [journal.TimeResolution]),
// increments the version and records a [journal.Change], atomically. With
// ifVersion != [journal.AnyVersion] it returns [journal.ErrVersionMismatch],
// changing nothing, unless the entry has that version. A missing entry,
// another user's entry or a malformed id is [journal.ErrNotFound].
func (s *Store) UpdateEntry(ctx context.Context, userID, id string, p journal.EntryPatch, ifVersion int64, now time.Time) (journal.Entry, error) {
	if !journal.ValidID(id) || !journal.ValidID(userID) {
		return journal.Entry{}, journal.ErrNotFound
	}
	var e journal.Entry
	err := s.write(ctx, "update entry", func(tx pgx.Tx) error {
		var err error
		e, err = scanEntry(tx.QueryRow(ctx,
			`UPDATE entries SET title = COALESCE($1, title), body = COALESCE($2, body),
			        version = version + 1, updated_at = $3
			 WHERE id = $4 AND user_id = $5 AND ($6::bigint = 0 OR version = $6)
			 RETURNING `+entryColumns,
			p.Title, p.Body, journal.Now(now), id, userID, ifVersion))
		if errors.Is(err, pgx.ErrNoRows) {
			return notFoundOrMismatch(ctx, tx, userID, id)
		}
		if err != nil {
			return err
		}
		return insertChange(ctx, tx, userID, &id, "")
	})
	if err != nil {
		return journal.Entry{}, err
	}
	return e, nil
}

// DeleteEntry removes the entry and records a [journal.Change], atomically,
// conditionally like [Store.UpdateEntry].
func (s *Store) DeleteEntry(ctx context.Context, userID, id string, ifVersion int64) error {
	if !journal.ValidID(id) || !journal.ValidID(userID) {
		return journal.ErrNotFound
	}
	return s.write(ctx, "delete entry", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx,
			"DELETE FROM entries WHERE id = $1 AND user_id = $2 AND ($3::bigint = 0 OR version = $3)",
			id, userID, ifVersion)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return notFoundOrMismatch(ctx, tx, userID, id)
		}
		return insertChange(ctx, tx, userID, &id, "")
	})
}

// notFoundOrMismatch explains why a conditional write matched no row: the
// entry is missing (or another user's), or its version differs. (A row that a
// concurrent transaction deleted is not found; one it updated to another
// version is a mismatch.)
func notFoundOrMismatch(ctx context.Context, tx pgx.Tx, userID, id string) error {
	var one int
	err := tx.QueryRow(ctx, "SELECT 1 FROM entries WHERE id = $1 AND user_id = $2", id, userID).Scan(&one)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return journal.ErrNotFound
	case err != nil:
		return err
	}
	return journal.ErrVersionMismatch
}

// ApplyChanges implements journal.Outbox. A replay (userID == "") claims
// rows with FOR UPDATE SKIP LOCKED in a transaction that stays open while
// apply runs: keep apply bounded by ctx. The write path (userID != "") reads
// the user's rows without locking, applies them outside any transaction and
// deletes those no replay holds, so a write never queues behind a replay
// that is waiting on a slow cache.
func (s *Store) ApplyChanges(ctx context.Context, userID string, limit int, apply func(context.Context, []journal.Change) error) (int, error) {
	if limit < 1 {
		return 0, fmt.Errorf("postgres: apply changes: limit %d < 1", limit)
	}
	if userID != "" {
		if !journal.ValidID(userID) {
			return 0, nil // no change can belong to a malformed id
		}
		return s.applyUserChanges(ctx, userID, limit, apply)
	}
	var n int
	var applyErr error
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, changeColumns+" ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED", limit)
		if err != nil {
			return err
		}
		changes, err := pgx.CollectRows(rows, scanChange)
		if err != nil || len(changes) == 0 {
			return err
		}
		if err := apply(ctx, changes); err != nil {
			applyErr = err
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM outbox WHERE seq = ANY($1)", changeSeqs(changes)); err != nil {
			return err
		}
		n = len(changes)
		return nil
	})
	if applyErr != nil {
		return 0, applyErr
	}
	if err != nil {
		return 0, fmt.Errorf("postgres: apply changes: %w", err)
	}
	return n, nil
}

// applyUserChanges is the write path of ApplyChanges.
func (s *Store) applyUserChanges(ctx context.Context, userID string, limit int, apply func(context.Context, []journal.Change) error) (int, error) {
	rows, err := s.pool.Query(ctx, changeColumns+" WHERE user_id = $1 ORDER BY seq LIMIT $2", userID, limit)
	if err != nil {
		return 0, fmt.Errorf("postgres: apply changes: %w", err)
	}
	changes, err := pgx.CollectRows(rows, scanChange)
	if err != nil {
		return 0, fmt.Errorf("postgres: apply changes: %w", err)
	}
	if len(changes) == 0 {
		return 0, nil
	}
	if err := apply(ctx, changes); err != nil {
		return 0, err
	}
	// Rows a replay holds are its to delete: it applies them too. If the
	// delete fails, the changes stay pending although applied, and a replay
	// applies them again, which is harmless: the caller's apply succeeded, so
	// the call did.
	_, _ = s.pool.Exec(ctx, `DELETE FROM outbox WHERE seq IN
		(SELECT seq FROM outbox WHERE seq = ANY($1) FOR UPDATE SKIP LOCKED)`, changeSeqs(changes))
	return len(changes), nil
}

const changeColumns = "SELECT seq, user_id, COALESCE(entry_id::text, ''), token_hash FROM outbox"

func scanChange(r pgx.CollectableRow) (journal.Change, error) {
	var c journal.Change
	err := r.Scan(&c.Seq, &c.UserID, &c.EntryID, &c.TokenHash)
	return c, err
}

func changeSeqs(changes []journal.Change) []int64 {
	seqs := make([]int64, len(changes))
	for i, c := range changes {
		seqs[i] = c.Seq
	}
	return seqs
}

// PendingChanges returns the number of changes not yet applied.
func (s *Store) PendingChanges(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM outbox").Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres: pending changes: %w", err)
	}
	return n, nil
}
