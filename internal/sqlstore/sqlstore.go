// Package sqlstore holds the queries the sqlite and postgres stores share:
// users, tokens, entries, and the outbox rows their writes record.
//
// A store describes what differs between the databases in a [Dialect] (how a
// time is stored, the current time in SQL, how a constraint violation is
// reported) and runs the queries through [DB], a small interface its driver
// adapter implements. Queries use numbered placeholders ($1, $2, ...), which
// are PostgreSQL's own and which modernc.org/sqlite binds to the argument of
// that position, and only SQL both databases run alike (row-value
// comparisons, RETURNING, CAST). What the databases do differently
// on purpose stays in the store packages: opening and migrating, pooling,
// and how [journal.Outbox.ApplyChanges] claims rows.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/journalsvc/journal"
)

// Row is one result row of [DB.QueryRow] or [DB.Query].
type Row interface {
	Scan(dest ...any) error
}

// Rows is the result of [DB.Query]: Next advances to the next row (false at
// the end or on an error), Err reports the error that ended the iteration,
// and Close releases the result; it may be called more than once.
type Rows interface {
	Row
	Next() bool
	Err() error
	Close()
}

// DB runs statements on a connection pool or inside a transaction.
type DB interface {
	// Exec runs a statement and returns the number of rows it affected.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	// Query runs a query that returns rows.
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	// QueryRow runs a query that returns at most one row. When there is none,
	// Scan returns an error that errors.Is reports as [sql.ErrNoRows].
	QueryRow(ctx context.Context, query string, args ...any) Row
}

// Dialect is what the shared queries need to know about one database.
type Dialect struct {
	// Name prefixes the errors the store wraps ("sqlite: list entries: ...").
	Name string
	// Now is the SQL expression of the current time as a time column holds it.
	Now string
	// Time returns the query argument that stores t, which is already in UTC
	// and truncated to [journal.TimeResolution], in a time column.
	Time func(t time.Time) any
	// ScanTime returns the scan destination that reads a time column into *t.
	ScanTime func(t *time.Time) any
	// UsernameTaken reports whether err is the violation of the uniqueness of
	// users.username.
	UsernameTaken func(err error) bool
	// ForeignKeyViolation reports whether err is a violation of a foreign key
	// (the user that a token or an entry refers to does not exist).
	ForeignKeyViolation func(err error) bool
	// Unavailable reports whether err says that the database cannot answer
	// now (connection lost or refused, server shutting down, timeout), so
	// that the same call may succeed later: the store's errors then wrap
	// [journal.ErrUnavailable]. It must not report a cancellation by the
	// caller.
	Unavailable func(err error) bool
}

// Store implements the user, token and entry methods of [journal.Database]
// and [journal.Outbox.PendingChanges] with the shared queries. It is safe for
// concurrent use if its DB and transaction runner are.
type Store struct {
	d     Dialect
	read  DB // queries
	write DB // single-statement writes
	inTx  func(ctx context.Context, fn func(DB) error) error
}

// New returns a Store that runs queries on read, single-statement writes on
// write, and writes of several statements inside the transactions that inTx
// runs: inTx calls fn with the transaction, commits when fn returns nil and
// rolls back otherwise, and returns fn's error as it is.
func New(d Dialect, read, write DB, inTx func(ctx context.Context, fn func(DB) error) error) *Store {
	return &Store{d: d, read: read, write: write, inTx: inTx}
}

// Write runs fn in one transaction of s and commits when fn returns nil.
// The domain sentinel errors ([journal.ErrNotFound],
// [journal.ErrVersionMismatch], [journal.ErrUsernameTaken]) come back as they
// are; other errors are wrapped with the dialect's name and op (and
// [journal.ErrUnavailable] when the database could not answer).
func Write(ctx context.Context, s *Store, op string, fn func(DB) error) error {
	err := s.inTx(ctx, fn)
	if err == nil || isDomainError(err) {
		return err
	}
	return s.errorf(op, err)
}

func isDomainError(err error) bool {
	return errors.Is(err, journal.ErrNotFound) || errors.Is(err, journal.ErrVersionMismatch) ||
		errors.Is(err, journal.ErrUsernameTaken) || errors.Is(err, journal.ErrPasswordMismatch) ||
		errors.Is(err, journal.ErrClaimLost)
}

// errorf wraps err, which is not nil, with the dialect's name and op, and
// with [journal.ErrUnavailable] when the dialect says the database cannot
// answer now.
func (s *Store) errorf(op string, err error) error {
	if s.d.Unavailable(err) {
		return fmt.Errorf("%s: %s: %w: %w", s.d.Name, op, journal.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %s: %w", s.d.Name, op, err)
}

// rowErr is the error of a read of one row (op names it, as in errorf)
// outside a transaction: [journal.ErrNotFound] when there is no row, else err
// as errorf reports it.
func (s *Store) rowErr(op string, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return journal.ErrNotFound
	}
	return s.errorf(op, err)
}

// noRow maps the error of a one-row Scan inside a transaction: no row is
// [journal.ErrNotFound]; any other error, and nil, is returned as is.
func noRow(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return journal.ErrNotFound
	}
	return err
}

// exists runs query, a SELECT of one row, through db: it returns nil when
// the row exists, [journal.ErrNotFound] when it does not, or the query's
// error.
func exists(ctx context.Context, db DB, query string, args ...any) error {
	var one int
	return noRow(db.QueryRow(ctx, query, args...).Scan(&one))
}

// time returns the argument that stores t: in UTC, truncated to
// [journal.TimeResolution].
func (s *Store) time(t time.Time) any { return s.d.Time(journal.StoredTime(t)) }

// CreateUser stores u. It returns [journal.ErrUsernameTaken] when the username
// exists, and an error when u.ID is not a valid id.
func (s *Store) CreateUser(ctx context.Context, u journal.User) error {
	if !journal.ValidID(u.ID) {
		return s.errorf("create user", fmt.Errorf("malformed id %q", u.ID))
	}
	return s.insert(ctx, "create user", s.d.UsernameTaken, journal.ErrUsernameTaken,
		"INSERT INTO users (id, username, password_hash, created_at) VALUES ($1, $2, $3, $4)",
		u.ID, u.Username, u.PasswordHash, s.time(u.CreatedAt))
}

// insert runs one statement on the write pool. An error that violated
// reports comes back as sentinel; others are wrapped with op.
func (s *Store) insert(ctx context.Context, op string, violated func(error) bool, sentinel error, query string, args ...any) error {
	_, err := s.write.Exec(ctx, query, args...)
	switch {
	case err == nil:
		return nil
	case violated(err):
		return sentinel
	}
	return s.errorf(op, err)
}

const userColumns = "id, username, password_hash, created_at"

func (s *Store) scanUser(row Row) (journal.User, error) {
	var u journal.User
	err := row.Scan(&u.ID, &u.Username, &u.PasswordHash, s.d.ScanTime(&u.CreatedAt))
	if err != nil {
		return journal.User{}, s.rowErr("user", err)
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, nil
}

// UserByUsername returns the user or [journal.ErrNotFound].
func (s *Store) UserByUsername(ctx context.Context, username string) (journal.User, error) {
	return s.scanUser(s.read.QueryRow(ctx, "SELECT "+userColumns+" FROM users WHERE username = $1", username))
}

// UserByID returns the user or [journal.ErrNotFound] (also for a malformed id,
// without a query).
func (s *Store) UserByID(ctx context.Context, id string) (journal.User, error) {
	if !journal.ValidID(id) {
		return journal.User{}, journal.ErrNotFound
	}
	return s.scanUser(s.read.QueryRow(ctx, "SELECT "+userColumns+" FROM users WHERE id = $1", id))
}

// CreateToken stores t. Its user must exist, else it returns
// [journal.ErrNotFound]; t.ID must be a valid id. A token created revoked is
// revoked at its creation time.
func (s *Store) CreateToken(ctx context.Context, t journal.Token) error {
	if !journal.ValidID(t.ID) {
		return s.errorf("create token", fmt.Errorf("malformed id %q", t.ID))
	}
	if !journal.ValidID(t.UserID) {
		return journal.ErrNotFound
	}
	var revoked any // NULL unless revoked
	if t.Revoked {
		revoked = s.time(t.CreatedAt)
	}
	return s.insert(ctx, "create token", s.d.ForeignKeyViolation, journal.ErrNotFound,
		"INSERT INTO tokens (hash, id, user_id, name, created_at, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
		t.Hash, t.ID, t.UserID, t.Name, s.time(t.CreatedAt), s.time(t.ExpiresAt), revoked)
}

const tokenColumns = "hash, id, user_id, name, created_at, expires_at, revoked_at IS NOT NULL"

func (s *Store) scanToken(row Row) (journal.Token, error) {
	var t journal.Token
	err := row.Scan(&t.Hash, &t.ID, &t.UserID, &t.Name, s.d.ScanTime(&t.CreatedAt), s.d.ScanTime(&t.ExpiresAt), &t.Revoked)
	if err != nil {
		return journal.Token{}, err
	}
	t.CreatedAt, t.ExpiresAt = t.CreatedAt.UTC(), t.ExpiresAt.UTC()
	return t, nil
}

// TokenByHash returns the token, revoked or expired ones included, or
// [journal.ErrNotFound].
func (s *Store) TokenByHash(ctx context.Context, hash string) (journal.Token, error) {
	t, err := s.scanToken(s.read.QueryRow(ctx, "SELECT "+tokenColumns+" FROM tokens WHERE hash = $1", hash))
	if err != nil {
		return journal.Token{}, s.rowErr("token", err)
	}
	return t, nil
}

// RevokeToken marks the token revoked and records a [journal.Change] in the
// outbox in the same transaction. An unknown or already revoked token is
// [journal.ErrNotFound].
func (s *Store) RevokeToken(ctx context.Context, hash string) error {
	return Write(ctx, s, "revoke token", func(tx DB) error {
		var userID string
		err := tx.QueryRow(ctx,
			"UPDATE tokens SET revoked_at = "+s.d.Now+" WHERE hash = $1 AND revoked_at IS NULL RETURNING user_id", hash).
			Scan(&userID)
		if err != nil {
			return noRow(err)
		}
		// entry_id keeps its default: no entry.
		_, err = tx.Exec(ctx, "INSERT INTO outbox (user_id, token_hash) VALUES ($1, $2)", userID, hash)
		return err
	})
}

// recordEntryChange records in the outbox that the entry id of userID changed.
func recordEntryChange(ctx context.Context, tx DB, userID, id string) error {
	// token_hash keeps its default: no token.
	_, err := tx.Exec(ctx, "INSERT INTO outbox (user_id, entry_id) VALUES ($1, $2)", userID, id)
	return err
}

const entryColumns = "id, user_id, title, body, version, created_at, updated_at"

func (s *Store) scanEntry(row Row) (journal.Entry, error) {
	var e journal.Entry
	err := row.Scan(&e.ID, &e.UserID, &e.Title, &e.Body, &e.Version, s.d.ScanTime(&e.CreatedAt), s.d.ScanTime(&e.UpdatedAt))
	if err != nil {
		return journal.Entry{}, err
	}
	e.CreatedAt, e.UpdatedAt = e.CreatedAt.UTC(), e.UpdatedAt.UTC()
	return e, nil
}

// CreateEntry stores e with Version 1 and its times truncated to
// [journal.TimeResolution] in UTC, records a [journal.Change], and returns the
// stored entry. e.ID must be a valid id; e.UserID must be an existing user,
// else it returns [journal.ErrNotFound]. A title or body that
// [journal.ValidateEntry] refuses is that *journal.ValidationError, unwrapped,
// and nothing is written: both databases refuse the same strings (PostgreSQL
// could not store a NUL; SQLite would).
func (s *Store) CreateEntry(ctx context.Context, e journal.Entry) (journal.Entry, error) {
	e, err := s.prepareEntry(e)
	if err != nil {
		return journal.Entry{}, err
	}
	err = Write(ctx, s, "create entry", func(tx DB) error { return s.createEntry(ctx, tx, e) })
	if err != nil {
		return journal.Entry{}, err
	}
	return e, nil
}

// prepareEntry checks the ids of a new entry and sets its version and times
// as they are stored.
func (s *Store) prepareEntry(e journal.Entry) (journal.Entry, error) {
	if !journal.ValidID(e.ID) {
		return journal.Entry{}, s.errorf("create entry", fmt.Errorf("malformed id %q", e.ID))
	}
	if err := journal.ValidateEntry(e.Title, e.Body); err != nil {
		return journal.Entry{}, err
	}
	if !journal.ValidID(e.UserID) {
		return journal.Entry{}, journal.ErrNotFound
	}
	e.Version = 1
	e.CreatedAt, e.UpdatedAt = journal.StoredTime(e.CreatedAt), journal.StoredTime(e.UpdatedAt)
	return e, nil
}

// createEntry inserts e (as prepareEntry returns it), its words and its
// outbox change through tx.
func (s *Store) createEntry(ctx context.Context, tx DB, e journal.Entry) error {
	_, err := tx.Exec(ctx,
		"INSERT INTO entries ("+entryColumns+", words_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
		e.ID, e.UserID, e.Title, e.Body, e.Version, s.d.Time(e.CreatedAt), s.d.Time(e.UpdatedAt), WordsVersion)
	switch {
	case s.d.ForeignKeyViolation(err):
		return journal.ErrNotFound
	case err != nil:
		return err
	}
	if err := s.insertWords(ctx, tx, e); err != nil {
		return err
	}
	return recordEntryChange(ctx, tx, e.UserID, e.ID)
}

// Entry returns one entry of the user or [journal.ErrNotFound] (also for a
// malformed id, without a query).
func (s *Store) Entry(ctx context.Context, userID, id string) (journal.Entry, error) {
	if !journal.ValidID(id) || !journal.ValidID(userID) {
		return journal.Entry{}, journal.ErrNotFound
	}
	e, err := s.scanEntry(s.read.QueryRow(ctx,
		"SELECT "+entryColumns+" FROM entries WHERE id = $1 AND user_id = $2", id, userID))
	if err != nil {
		return journal.Entry{}, s.rowErr("entry", err)
	}
	return e, nil
}

// UpdateEntry applies p at now (truncated to [journal.TimeResolution]),
// increments the version and records a [journal.Change], atomically. With
// ifVersion != [journal.AnyVersion] it returns [journal.ErrVersionMismatch],
// changing nothing, unless the entry has that version. A missing entry,
// another user's entry or a malformed id is [journal.ErrNotFound]. A patch
// that [journal.EntryPatch.Validate] refuses is that
// *journal.ValidationError, unwrapped, and nothing is written.
func (s *Store) UpdateEntry(ctx context.Context, userID, id string, p journal.EntryPatch, ifVersion int64, now time.Time) (journal.Entry, error) {
	if !journal.ValidID(id) || !journal.ValidID(userID) {
		return journal.Entry{}, journal.ErrNotFound
	}
	if err := p.Validate(); err != nil {
		return journal.Entry{}, err
	}
	var e journal.Entry
	err := Write(ctx, s, "update entry", func(tx DB) error {
		var err error
		// A nil field of p is NULL: COALESCE keeps the column.
		e, err = s.scanEntry(tx.QueryRow(ctx,
			`UPDATE entries SET title = COALESCE($1, title), body = COALESCE($2, body),
			        version = version + 1, updated_at = $3
			 WHERE id = $4 AND user_id = $5 AND (CAST($6 AS BIGINT) = 0 OR version = $6)
			 RETURNING `+entryColumns,
			p.Title, p.Body, s.time(now), id, userID, ifVersion))
		if errors.Is(err, sql.ErrNoRows) {
			return notFoundOrMismatch(ctx, tx, userID, id)
		}
		if err != nil {
			return err
		}
		if err := s.reindexEntry(ctx, tx, e); err != nil {
			return err
		}
		return recordEntryChange(ctx, tx, userID, id)
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
	return Write(ctx, s, "delete entry", func(tx DB) error {
		n, err := tx.Exec(ctx,
			"DELETE FROM entries WHERE id = $1 AND user_id = $2 AND (CAST($3 AS BIGINT) = 0 OR version = $3)",
			id, userID, ifVersion)
		if err != nil {
			return err
		}
		if n == 0 {
			return notFoundOrMismatch(ctx, tx, userID, id)
		}
		return recordEntryChange(ctx, tx, userID, id)
	})
}

// notFoundOrMismatch explains why a conditional write matched no row: the
// entry is missing (or another user's), or its version differs. A row that a
// concurrent transaction deleted is not found; one it updated to another
// version is a mismatch.
func notFoundOrMismatch(ctx context.Context, tx DB, userID, id string) error {
	if err := exists(ctx, tx, "SELECT 1 FROM entries WHERE id = $1 AND user_id = $2", id, userID); err != nil {
		return err
	}
	return journal.ErrVersionMismatch
}

// Changes reads up to limit pending changes through db, oldest first: only
// userID's when it is not "", and with lock (for example " FOR UPDATE SKIP
// LOCKED", or "") appended to the query. Its errors are not wrapped.
func Changes(ctx context.Context, db DB, userID string, limit int, lock string) ([]journal.Change, error) {
	const sel = "SELECT seq, user_id, COALESCE(CAST(entry_id AS TEXT), ''), token_hash FROM outbox"
	var rows Rows
	var err error
	if userID == "" {
		rows, err = db.Query(ctx, sel+" ORDER BY seq LIMIT $1"+lock, limit)
	} else {
		rows, err = db.Query(ctx, sel+" WHERE user_id = $1 ORDER BY seq LIMIT $2"+lock, userID, limit)
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

// ApplyPending reads up to limit pending changes through db, oldest first
// (only userID's when it is not ""), holding no lock, and calls apply with them
// unless there are none. It returns the changes apply accepted, for the caller
// to delete; an error of apply comes back as it is.
func ApplyPending(ctx context.Context, s *Store, db DB, userID string, limit int, apply func(context.Context, []journal.Change) error) ([]journal.Change, error) {
	changes, err := Changes(ctx, db, userID, limit, "")
	if err != nil {
		return nil, s.errorf("apply changes", err)
	}
	if len(changes) == 0 {
		return nil, nil
	}
	if err := apply(ctx, changes); err != nil {
		return nil, err
	}
	return changes, nil
}

// Seqs returns the outbox sequence numbers of changes.
func Seqs(changes []journal.Change) []int64 {
	seqs := make([]int64, len(changes))
	for i, c := range changes {
		seqs[i] = c.Seq
	}
	return seqs
}

// PendingChanges returns the number of changes not yet applied.
func (s *Store) PendingChanges(ctx context.Context) (int64, error) {
	var n int64
	if err := s.read.QueryRow(ctx, "SELECT count(*) FROM outbox").Scan(&n); err != nil {
		return 0, s.errorf("pending changes", err)
	}
	return n, nil
}
