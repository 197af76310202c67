package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/journalsvc/journal"
)

// liveToken is the condition of a token that may authenticate at the time
// given as $2 (with the user as $1).
const liveToken = "user_id = $1 AND revoked_at IS NULL AND expires_at > $2"

// Tokens returns the user's live tokens at now, newest first.
func (s *Store) Tokens(ctx context.Context, userID string, now time.Time) ([]journal.Token, error) {
	if !journal.ValidID(userID) {
		return []journal.Token{}, nil
	}
	rows, err := s.read.Query(ctx, "SELECT "+tokenColumns+" FROM tokens WHERE "+liveToken+
		" ORDER BY created_at DESC, id DESC", userID, s.time(now))
	if err != nil {
		return nil, s.errorf("tokens", err)
	}
	defer rows.Close()
	out := []journal.Token{}
	for rows.Next() {
		t, err := s.scanToken(rows)
		if err != nil {
			return nil, s.errorf("tokens", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, s.errorf("tokens", err)
	}
	return out, nil
}

// RevokeTokenByID revokes the user's token with public id id, live at now,
// and records a [journal.Change] for it, atomically; otherwise it returns
// [journal.ErrNotFound].
func (s *Store) RevokeTokenByID(ctx context.Context, userID, id string, now time.Time) error {
	if !journal.ValidID(userID) || !journal.ValidID(id) {
		return journal.ErrNotFound
	}
	return Write(ctx, s, "revoke token", func(tx DB) error {
		var hash string
		err := tx.QueryRow(ctx, "UPDATE tokens SET revoked_at = $3 WHERE "+liveToken+" AND id = $4 RETURNING hash",
			userID, s.time(now), s.time(now), id).Scan(&hash)
		if err != nil {
			return noRow(err)
		}
		return recordTokenChanges(ctx, tx, userID, []string{hash})
	})
}

// RevokeTokens revokes every token of the user live at now except the one
// whose hash is keep, recording a [journal.Change] for each, atomically, and
// returns how many it revoked.
func (s *Store) RevokeTokens(ctx context.Context, userID, keep string, now time.Time) (int, error) {
	if !journal.ValidID(userID) {
		return 0, nil
	}
	var n int
	err := Write(ctx, s, "revoke tokens", func(tx DB) error {
		var err error
		n, err = revokeTokens(ctx, s, tx, userID, keep, now)
		return err
	})
	return n, err
}

// revokeTokens is RevokeTokens inside the caller's transaction.
func revokeTokens(ctx context.Context, s *Store, tx DB, userID, keep string, now time.Time) (int, error) {
	hashes, err := queryStrings(ctx, tx, "UPDATE tokens SET revoked_at = $3 WHERE "+liveToken+" AND hash <> $4 RETURNING hash",
		userID, s.time(now), s.time(now), keep)
	if err != nil {
		return 0, err
	}
	return len(hashes), recordTokenChanges(ctx, tx, userID, hashes)
}

// queryStrings returns the one text column of every row of a query.
func queryStrings(ctx context.Context, db DB, query string, args ...any) ([]string, error) {
	rows, err := db.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// recordTokenChanges records in the outbox that the user's tokens with these
// hashes were revoked, so their cached lookups are dropped.
func recordTokenChanges(ctx context.Context, tx DB, userID string, hashes []string) error {
	for len(hashes) > 0 {
		n := min(len(hashes), wordsPerInsert)
		var q strings.Builder
		q.WriteString("INSERT INTO outbox (user_id, token_hash) VALUES ")
		args := []any{userID}
		for i, h := range hashes[:n] {
			if i > 0 {
				q.WriteString(", ")
			}
			args = append(args, h)
			q.WriteString("($1, $" + strconv.Itoa(len(args)) + ")")
		}
		if _, err := tx.Exec(ctx, q.String(), args...); err != nil {
			return err
		}
		hashes = hashes[n:]
	}
	return nil
}

// ChangePassword replaces the user's password hash oldHash with newHash and
// revokes the user's other live tokens, atomically. A missing user is
// [journal.ErrNotFound]; a stored hash other than oldHash is
// [journal.ErrPasswordMismatch], and nothing changes.
func (s *Store) ChangePassword(ctx context.Context, userID, oldHash, newHash, keep string, now time.Time) error {
	if !journal.ValidID(userID) {
		return journal.ErrNotFound
	}
	return Write(ctx, s, "change password", func(tx DB) error {
		n, err := tx.Exec(ctx, "UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3", newHash, userID, oldHash)
		if err != nil {
			return err
		}
		if n == 0 {
			if err := exists(ctx, tx, "SELECT 1 FROM users WHERE id = $1", userID); err != nil {
				return err
			}
			return journal.ErrPasswordMismatch
		}
		_, err = revokeTokens(ctx, s, tx, userID, keep, now)
		return err
	})
}

// DeleteUser removes the user, and with them (ON DELETE CASCADE) every
// entry, word, token and idempotency record of theirs, in one transaction
// that records a [journal.Change] for each token live at now and one for the
// user's pages.
func (s *Store) DeleteUser(ctx context.Context, userID string, now time.Time) error {
	if !journal.ValidID(userID) {
		return journal.ErrNotFound
	}
	return Write(ctx, s, "delete user", func(tx DB) error {
		hashes, err := queryStrings(ctx, tx, "SELECT hash FROM tokens WHERE "+liveToken, userID, s.time(now))
		if err != nil {
			return err
		}
		n, err := tx.Exec(ctx, "DELETE FROM users WHERE id = $1", userID)
		if err != nil {
			return err
		}
		if n == 0 {
			return journal.ErrNotFound
		}
		if err := recordTokenChanges(ctx, tx, userID, hashes); err != nil {
			return err
		}
		// Neither entry nor token: the user's pages.
		_, err = tx.Exec(ctx, "INSERT INTO outbox (user_id) VALUES ($1)", userID)
		return err
	})
}

// ClaimIdempotencyKey stores the pending record rec unless a record live at
// now holds its key; then it returns that record and false. See
// [journal.IdempotencyStore].
func (s *Store) ClaimIdempotencyKey(ctx context.Context, rec journal.IdempotencyRecord, now time.Time) (journal.IdempotencyRecord, bool, error) {
	if rec.Claim == "" || rec.Response != nil {
		return journal.IdempotencyRecord{}, false, s.errorf("claim idempotency key", errors.New("the record is not pending"))
	}
	if !journal.ValidID(rec.UserID) {
		return journal.IdempotencyRecord{}, false, journal.ErrNotFound
	}
	// A live record is read without writing (a retry is a read). Otherwise
	// each write is one atomic statement: of concurrent inserts one wins,
	// and of concurrent takeovers of an expired record the first moves its
	// expiry so the others no longer match. A loser reads the winner's
	// record on its next turn.
	for range 4 {
		held, err := s.idempotencyRecord(ctx, rec.UserID, rec.Key)
		var n int64
		switch {
		case err == nil && held.ExpiresAt.After(now):
			return held, false, nil
		case err == nil: // expired: take it over
			n, err = s.write.Exec(ctx,
				"UPDATE idempotency_keys SET fingerprint = $3, claim = $4, status = NULL, location = '', etag = '', body = NULL, expires_at = $5"+
					" WHERE user_id = $1 AND key = $2 AND expires_at <= $6",
				rec.UserID, rec.Key, rec.Fingerprint, rec.Claim, s.time(rec.ExpiresAt), s.time(now))
		case errors.Is(err, journal.ErrNotFound):
			n, err = s.write.Exec(ctx,
				"INSERT INTO idempotency_keys (user_id, key, fingerprint, claim, expires_at) VALUES ($1, $2, $3, $4, $5)"+
					" ON CONFLICT (user_id, key) DO NOTHING",
				rec.UserID, rec.Key, rec.Fingerprint, rec.Claim, s.time(rec.ExpiresAt))
			if err != nil && s.d.ForeignKeyViolation(err) {
				return journal.IdempotencyRecord{}, false, journal.ErrNotFound
			}
		}
		if err != nil {
			return journal.IdempotencyRecord{}, false, s.errorf("claim idempotency key", err)
		}
		if n == 1 {
			return rec, true, nil
		}
	}
	return journal.IdempotencyRecord{}, false, s.errorf("claim idempotency key", errors.New("the record keeps changing"))
}

// idempotencyRecord reads one record or returns [journal.ErrNotFound].
func (s *Store) idempotencyRecord(ctx context.Context, userID, key string) (journal.IdempotencyRecord, error) {
	rec := journal.IdempotencyRecord{UserID: userID, Key: key}
	var status *int64
	var resp journal.StoredResponse
	err := s.read.QueryRow(ctx,
		"SELECT fingerprint, claim, status, location, etag, body, expires_at FROM idempotency_keys WHERE user_id = $1 AND key = $2",
		userID, key).Scan(&rec.Fingerprint, &rec.Claim, &status, &resp.Location, &resp.ETag, &resp.Body, s.d.ScanTime(&rec.ExpiresAt))
	if err != nil {
		return journal.IdempotencyRecord{}, s.rowErr("idempotency record", err)
	}
	rec.ExpiresAt = rec.ExpiresAt.UTC()
	if status != nil {
		resp.Status = int(*status)
		rec.Response = &resp
	}
	return rec, nil
}

// ReleaseIdempotencyKey deletes the pending record of (userID, key) if claim
// still holds it.
func (s *Store) ReleaseIdempotencyKey(ctx context.Context, userID, key, claim string) error {
	if !journal.ValidID(userID) {
		return nil
	}
	_, err := s.write.Exec(ctx, "DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND claim = $3 AND status IS NULL",
		userID, key, claim)
	if err != nil {
		return s.errorf("release idempotency key", err)
	}
	return nil
}

// CreateEntryIdempotent stores e like CreateEntry and completes the pending
// record that done.Claim holds, in one transaction; see
// [journal.EntryStore].
func (s *Store) CreateEntryIdempotent(ctx context.Context, e journal.Entry, done journal.IdempotencyRecord) (journal.Entry, error) {
	if done.Response == nil {
		return journal.Entry{}, s.errorf("create entry", errors.New("no response to store"))
	}
	e, err := s.prepareEntry(e)
	if err != nil {
		return journal.Entry{}, err
	}
	err = Write(ctx, s, "create entry", func(tx DB) error {
		n, err := tx.Exec(ctx,
			"UPDATE idempotency_keys SET status = $1, location = $2, etag = $3, body = $4, expires_at = $5"+
				" WHERE user_id = $6 AND key = $7 AND claim = $8 AND status IS NULL",
			done.Response.Status, done.Response.Location, done.Response.ETag, done.Response.Body, s.time(done.ExpiresAt),
			done.UserID, done.Key, done.Claim)
		if err != nil {
			return err
		}
		if n == 0 {
			return journal.ErrClaimLost
		}
		return s.createEntry(ctx, tx, e)
	})
	if err != nil {
		return journal.Entry{}, err
	}
	return e, nil
}

// PurgeBatch deletes, through tx, up to limit tokens revoked or expired at
// now and up to limit idempotency records expired at now, and returns the
// number of rows deleted. The stores call it in a transaction that holds
// their purge lock.
func PurgeBatch(ctx context.Context, s *Store, tx DB, now time.Time, limit int) (int, error) {
	if limit < 1 {
		return 0, fmt.Errorf("limit %d < 1", limit)
	}
	revoked, err := tx.Exec(ctx,
		"DELETE FROM tokens WHERE hash IN (SELECT hash FROM tokens WHERE revoked_at IS NOT NULL LIMIT $1)", limit)
	if err != nil {
		return 0, err
	}
	var expired int64
	if int(revoked) < limit {
		expired, err = tx.Exec(ctx,
			"DELETE FROM tokens WHERE hash IN (SELECT hash FROM tokens WHERE expires_at <= $1 LIMIT $2)", s.time(now), limit-int(revoked))
		if err != nil {
			return 0, err
		}
	}
	records, err := tx.Exec(ctx,
		"DELETE FROM idempotency_keys WHERE (user_id, key) IN"+
			" (SELECT user_id, key FROM idempotency_keys WHERE expires_at <= $1 LIMIT $2)", s.time(now), limit)
	if err != nil {
		return 0, err
	}
	return int(revoked + expired + records), nil
}
