package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/journalsvc/journal"
)

// micros returns t as stored: Unix microseconds of t truncated to
// [journal.TimeResolution].
func micros(t time.Time) int64 { return journal.Now(t).UnixMicro() }

// fromMicros returns a stored time as a UTC time.Time.
func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// CreateUser stores u. It returns [journal.ErrUsernameTaken] when the username
// exists, and an error when u.ID is not a valid id.
func (s *Store) CreateUser(ctx context.Context, u journal.User) error {
	if !journal.ValidID(u.ID) {
		return fmt.Errorf("sqlite: create user: malformed id %q", u.ID)
	}
	_, err := s.w.ExecContext(ctx,
		"INSERT INTO users (id, username, password_hash, created_at) VALUES (?, ?, ?, ?)",
		u.ID, u.Username, u.PasswordHash, micros(u.CreatedAt))
	switch {
	case isUniqueViolation(err):
		return journal.ErrUsernameTaken
	case err != nil:
		return fmt.Errorf("sqlite: create user: %w", err)
	}
	return nil
}

const userColumns = "id, username, password_hash, created_at"

func scanUser(row *sql.Row) (journal.User, error) {
	var u journal.User
	var created int64
	if err := row.Scan(&u.ID, &u.Username, &u.PasswordHash, &created); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return journal.User{}, journal.ErrNotFound
		}
		return journal.User{}, fmt.Errorf("sqlite: user: %w", err)
	}
	u.CreatedAt = fromMicros(created)
	return u, nil
}

// UserByUsername returns the user or [journal.ErrNotFound].
func (s *Store) UserByUsername(ctx context.Context, username string) (journal.User, error) {
	return scanUser(s.r.QueryRowContext(ctx, "SELECT "+userColumns+" FROM users WHERE username = ?", username))
}

// UserByID returns the user or [journal.ErrNotFound] (also for a malformed id,
// without a query).
func (s *Store) UserByID(ctx context.Context, id string) (journal.User, error) {
	if !journal.ValidID(id) {
		return journal.User{}, journal.ErrNotFound
	}
	return scanUser(s.r.QueryRowContext(ctx, "SELECT "+userColumns+" FROM users WHERE id = ?", id))
}

// CreateToken stores t. Its user must exist, else it returns
// [journal.ErrNotFound].
func (s *Store) CreateToken(ctx context.Context, t journal.Token) error {
	if !journal.ValidID(t.UserID) {
		return journal.ErrNotFound
	}
	var revoked any
	if t.Revoked {
		revoked = micros(t.CreatedAt)
	}
	_, err := s.w.ExecContext(ctx,
		"INSERT INTO tokens (hash, user_id, created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?)",
		t.Hash, t.UserID, micros(t.CreatedAt), micros(t.ExpiresAt), revoked)
	switch {
	case isForeignKeyViolation(err):
		return journal.ErrNotFound
	case err != nil:
		return fmt.Errorf("sqlite: create token: %w", err)
	}
	return nil
}

// TokenByHash returns the token, revoked or expired ones included, or
// [journal.ErrNotFound].
func (s *Store) TokenByHash(ctx context.Context, hash string) (journal.Token, error) {
	var t journal.Token
	var created, expires int64
	err := s.r.QueryRowContext(ctx,
		"SELECT hash, user_id, created_at, expires_at, revoked_at IS NOT NULL FROM tokens WHERE hash = ?", hash).
		Scan(&t.Hash, &t.UserID, &created, &expires, &t.Revoked)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return journal.Token{}, journal.ErrNotFound
	case err != nil:
		return journal.Token{}, fmt.Errorf("sqlite: token: %w", err)
	}
	t.CreatedAt, t.ExpiresAt = fromMicros(created), fromMicros(expires)
	return t, nil
}

// RevokeToken marks the token revoked and records a [journal.Change] in the
// outbox in the same transaction. An unknown or already revoked token is
// [journal.ErrNotFound].
func (s *Store) RevokeToken(ctx context.Context, hash string) error {
	return s.write(ctx, "revoke token", func(tx *sql.Tx) error {
		var userID string
		err := tx.QueryRowContext(ctx,
			`UPDATE tokens SET revoked_at = CAST(unixepoch('subsec') * 1000000 AS INTEGER)
			 WHERE hash = ? AND revoked_at IS NULL RETURNING user_id`, hash).Scan(&userID)
		if errors.Is(err, sql.ErrNoRows) {
			return journal.ErrNotFound
		}
		if err != nil {
			return err
		}
		return insertChange(ctx, tx, userID, "", hash)
	})
}

// write runs fn in one IMMEDIATE transaction on the writer connection and
// commits when fn returns nil. Errors from fn that are domain sentinels are
// returned as they are; others are wrapped with op.
func (s *Store) write(ctx context.Context, op string, fn func(*sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		if isDomainError(err) {
			return err
		}
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	return nil
}

func isDomainError(err error) bool {
	return errors.Is(err, journal.ErrNotFound) || errors.Is(err, journal.ErrVersionMismatch) ||
		errors.Is(err, journal.ErrUsernameTaken)
}

func insertChange(ctx context.Context, tx *sql.Tx, userID, entryID, tokenHash string) error {
	_, err := tx.ExecContext(ctx,
		"INSERT INTO outbox (user_id, entry_id, token_hash) VALUES (?, ?, ?)", userID, entryID, tokenHash)
	return err
}

const entryColumns = "id, user_id, title, body, version, created_at, updated_at"

type scanner interface{ Scan(dest ...any) error }

func scanEntry(row scanner) (journal.Entry, error) {
	var e journal.Entry
	var created, updated int64
	if err := row.Scan(&e.ID, &e.UserID, &e.Title, &e.Body, &e.Version, &created, &updated); err != nil {
		return journal.Entry{}, err
	}
	e.CreatedAt, e.UpdatedAt = fromMicros(created), fromMicros(updated)
	return e, nil
}

// CreateEntry stores e with Version 1 and its times truncated to
// [journal.TimeResolution] in UTC, records a [journal.Change], and returns the
// stored entry. e.ID must be a valid id; e.UserID must be an existing user,
// else it returns [journal.ErrNotFound].
func (s *Store) CreateEntry(ctx context.Context, e journal.Entry) (journal.Entry, error) {
	if !journal.ValidID(e.ID) {
		return journal.Entry{}, fmt.Errorf("sqlite: create entry: malformed id %q", e.ID)
	}
	if !journal.ValidID(e.UserID) {
		return journal.Entry{}, journal.ErrNotFound
	}
	e.Version = 1
	e.CreatedAt, e.UpdatedAt = journal.Now(e.CreatedAt), journal.Now(e.UpdatedAt)
	err := s.write(ctx, "create entry", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			"INSERT INTO entries ("+entryColumns+") VALUES (?, ?, ?, ?, ?, ?, ?)",
			e.ID, e.UserID, e.Title, e.Body, e.Version, e.CreatedAt.UnixMicro(), e.UpdatedAt.UnixMicro())
		if isForeignKeyViolation(err) {
			return journal.ErrNotFound
		}
		if err != nil {
			return err
		}
		return insertChange(ctx, tx, e.UserID, e.ID, "")
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
	e, err := scanEntry(s.r.QueryRowContext(ctx,
		"SELECT "+entryColumns+" FROM entries WHERE id = ? AND user_id = ?", id, userID))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return journal.Entry{}, journal.ErrNotFound
	case err != nil:
		return journal.Entry{}, fmt.Errorf("sqlite: entry: %w", err)
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
	var rows *sql.Rows
	var err error
	if req.After == nil {
		rows, err = s.r.QueryContext(ctx,
			"SELECT "+entryColumns+" FROM entries WHERE user_id = ? ORDER BY created_at DESC, id DESC LIMIT ?",
			userID, req.Limit+1)
	} else {
		if !journal.ValidID(req.After.ID) {
			return journal.Page{}, journal.ErrInvalidCursor
		}
		rows, err = s.r.QueryContext(ctx,
			"SELECT "+entryColumns+" FROM entries WHERE user_id = ? AND (created_at, id) < (?, ?)"+
				" ORDER BY created_at DESC, id DESC LIMIT ?",
			userID, micros(req.After.CreatedAt), req.After.ID, req.Limit+1)
	}
	if err != nil {
		return journal.Page{}, fmt.Errorf("sqlite: list entries: %w", err)
	}
	defer rows.Close()
	entries := make([]journal.Entry, 0, req.Limit+1)
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return journal.Page{}, fmt.Errorf("sqlite: list entries: %w", err)
		}
		entries = append(entries, e)
	}
	if err := rows.Err(); err != nil {
		return journal.Page{}, fmt.Errorf("sqlite: list entries: %w", err)
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
	var title, body any
	if p.Title != nil {
		title = *p.Title
	}
	if p.Body != nil {
		body = *p.Body
	}
	var e journal.Entry
	err := s.write(ctx, "update entry", func(tx *sql.Tx) error {
		var err error
		e, err = scanEntry(tx.QueryRowContext(ctx,
			`UPDATE entries SET title = COALESCE(?, title), body = COALESCE(?, body),
			        version = version + 1, updated_at = ?
			 WHERE id = ? AND user_id = ? AND (? = 0 OR version = ?)
			 RETURNING `+entryColumns,
			title, body, micros(now), id, userID, ifVersion, ifVersion))
		if errors.Is(err, sql.ErrNoRows) {
			return notFoundOrMismatch(ctx, tx, userID, id)
		}
		if err != nil {
			return err
		}
		return insertChange(ctx, tx, userID, id, "")
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
	return s.write(ctx, "delete entry", func(tx *sql.Tx) error {
		var got string
		err := tx.QueryRowContext(ctx,
			"DELETE FROM entries WHERE id = ? AND user_id = ? AND (? = 0 OR version = ?) RETURNING id",
			id, userID, ifVersion, ifVersion).Scan(&got)
		if errors.Is(err, sql.ErrNoRows) {
			return notFoundOrMismatch(ctx, tx, userID, id)
		}
		if err != nil {
			return err
		}
		return insertChange(ctx, tx, userID, id, "")
	})
}

// notFoundOrMismatch explains why a conditional write matched no row: the
// entry is missing (or another user's), or its version differs.
func notFoundOrMismatch(ctx context.Context, tx *sql.Tx, userID, id string) error {
	var one int
	err := tx.QueryRowContext(ctx, "SELECT 1 FROM entries WHERE id = ? AND user_id = ?", id, userID).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return journal.ErrNotFound
	case err != nil:
		return err
	}
	return journal.ErrVersionMismatch
}

// ApplyChanges implements journal.Outbox. Neither mode holds a transaction
// (and so SQLite's write lock) while apply runs: the changes are read, apply
// runs, and the applied ones are deleted in a short write transaction. A
// replay (userID == "") that finds another replay of this Store running
// skips every row (it returns 0): that one holds them.
func (s *Store) ApplyChanges(ctx context.Context, userID string, limit int, apply func(context.Context, []journal.Change) error) (int, error) {
	if limit < 1 {
		return 0, fmt.Errorf("sqlite: apply changes: limit %d < 1", limit)
	}
	if userID == "" {
		if !s.replaying.TryLock() {
			return 0, nil
		}
		defer s.replaying.Unlock()
	}
	changes, err := s.pendingChanges(ctx, userID, limit)
	if err != nil {
		return 0, fmt.Errorf("sqlite: apply changes: %w", err)
	}
	if len(changes) == 0 {
		return 0, nil
	}
	if err := apply(ctx, changes); err != nil {
		return 0, err
	}
	args := make([]any, len(changes))
	for i, c := range changes {
		args[i] = c.Seq
	}
	q := "DELETE FROM outbox WHERE seq IN (?" + strings.Repeat(", ?", len(changes)-1) + ")"
	err = s.write(ctx, "apply changes", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, q, args...)
		return err
	})
	if err != nil && userID == "" {
		// A replay reports it: the outbox did not shrink. On the write path the
		// changes were applied, which is what the caller asked; a replay
		// applies them again later (apply is idempotent).
		return 0, err
	}
	return len(changes), nil
}

// pendingChanges reads up to limit pending changes (only userID's when it is
// not ""), oldest first.
func (s *Store) pendingChanges(ctx context.Context, userID string, limit int) ([]journal.Change, error) {
	var rows *sql.Rows
	var err error
	if userID == "" {
		rows, err = s.r.QueryContext(ctx,
			"SELECT seq, user_id, entry_id, token_hash FROM outbox ORDER BY seq LIMIT ?", limit)
	} else {
		rows, err = s.r.QueryContext(ctx,
			"SELECT seq, user_id, entry_id, token_hash FROM outbox WHERE user_id = ? ORDER BY seq LIMIT ?", userID, limit)
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var changes []journal.Change
	for rows.Next() {
		var c journal.Change
		if err := rows.Scan(&c.Seq, &c.UserID, &c.EntryID, &c.TokenHash); err != nil {
			return nil, err
		}
		changes = append(changes, c)
	}
	return changes, rows.Err()
}

// PendingChanges returns the number of changes not yet applied.
func (s *Store) PendingChanges(ctx context.Context) (int64, error) {
	var n int64
	if err := s.r.QueryRowContext(ctx, "SELECT count(*) FROM outbox").Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: pending changes: %w", err)
	}
	return n, nil
}
