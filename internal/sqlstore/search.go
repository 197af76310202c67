package sqlstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/journalsvc/journal"
)

// WordsVersion is the version of the tokenizer (journal.IndexWords) that
// filled entry_words. An entry indexed by an older one (words_version below
// it) is indexed again by [Reindex]; a change of the tokenizer changes it.
const WordsVersion = 1

// wordsPerInsert bounds the rows of one INSERT into entry_words (each takes
// one placeholder, far below either database's limit).
const wordsPerInsert = 500

// insertWords adds the words of e's title and body to the word index.
func (s *Store) insertWords(ctx context.Context, tx DB, e journal.Entry) error {
	words := journal.IndexWords(e.Title, e.Body)
	for len(words) > 0 {
		n := min(len(words), wordsPerInsert)
		var q strings.Builder
		q.WriteString("INSERT INTO entry_words (user_id, created_at, entry_id, word) VALUES ")
		args := []any{e.UserID, s.time(e.CreatedAt), e.ID}
		for i, w := range words[:n] {
			if i > 0 {
				q.WriteString(", ")
			}
			args = append(args, w)
			q.WriteString("($1, $2, $3, $" + strconv.Itoa(len(args)) + ")")
		}
		// A concurrent Reindex may have indexed the entry already.
		q.WriteString(" ON CONFLICT DO NOTHING")
		if _, err := tx.Exec(ctx, q.String(), args...); err != nil {
			return err
		}
		words = words[n:]
	}
	return nil
}

// reindexEntry replaces the indexed words of e with those of its title and
// body.
func (s *Store) reindexEntry(ctx context.Context, tx DB, e journal.Entry) error {
	if _, err := tx.Exec(ctx, "DELETE FROM entry_words WHERE entry_id = $1", e.ID); err != nil {
		return err
	}
	return s.insertWords(ctx, tx, e)
}

// Reindex indexes, in batches of one transaction each, the words of every
// entry that an older tokenizer indexed (see [WordsVersion]), walking the
// entries by id so each is read once. Stores call it when they open;
// concurrent calls on one database are safe.
func Reindex(ctx context.Context, s *Store) error {
	after := "00000000-0000-0000-0000-000000000000" // below every id
	for {
		rows, err := s.read.Query(ctx, "SELECT "+entryColumns+" FROM entries WHERE words_version < $1 AND id > $2"+
			" ORDER BY id LIMIT 200", WordsVersion, after)
		if err != nil {
			return s.errorf("reindex", err)
		}
		var batch []journal.Entry
		for rows.Next() {
			e, err := s.scanEntry(rows)
			if err != nil {
				rows.Close()
				return s.errorf("reindex", err)
			}
			batch = append(batch, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return s.errorf("reindex", err)
		}
		if len(batch) == 0 {
			return nil
		}
		err = Write(ctx, s, "reindex", func(tx DB) error {
			for _, e := range batch {
				if err := s.reindexEntry(ctx, tx, e); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, "UPDATE entries SET words_version = $1 WHERE id = $2", WordsVersion, e.ID); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		after = batch[len(batch)-1].ID
	}
}

// query builds one SQL statement with numbered placeholders.
type query struct {
	b    strings.Builder
	args []any
}

// arg adds v as the next argument and returns its placeholder.
func (q *query) arg(v any) string {
	q.args = append(q.args, v)
	return "$" + strconv.Itoa(len(q.args))
}

// entryColumnsOf is entryColumns qualified by a table alias.
func entryColumnsOf(alias string) string {
	return alias + "." + strings.ReplaceAll(entryColumns, ", ", ", "+alias+".")
}

// rarityBound is how many occurrences of a word are counted at most to pick
// the rarest word of a search.
const rarityBound = 1000

// ListEntries returns a page of the user's entries that req.Filter selects,
// newest first (created_at descending, ties by id descending), strictly after
// req.After. Next is nil only when no entry follows the page, and carries
// req.Filter. A req.Limit outside 1..[journal.MaxPageLimit] is a
// *journal.ValidationError; a cursor with a malformed id is
// [journal.ErrInvalidCursor].
//
// Without words it reads the index on entries (user_id, created_at, id). With
// words it walks the word index (user_id, word, created_at, entry_id) of the
// rarest word, in page order, and checks each other word with a lookup in the
// same index, so no plan reads every entry of the user.
func (s *Store) ListEntries(ctx context.Context, userID string, req journal.PageRequest) (journal.Page, error) {
	if req.Limit < 1 || req.Limit > journal.MaxPageLimit {
		return journal.Page{}, journal.Invalid("limit", fmt.Sprintf("must be an integer from 1 to %d", journal.MaxPageLimit))
	}
	if req.After != nil && !journal.ValidID(req.After.ID) {
		return journal.Page{}, journal.ErrInvalidCursor
	}
	empty := journal.Page{Entries: []journal.Entry{}}
	if !journal.ValidID(userID) {
		return empty, nil
	}
	f := req.Filter
	var q query
	// t and id name the columns the filter and the order apply to.
	t, id := "created_at", "id"
	if len(f.Words) == 0 {
		q.b.WriteString("SELECT " + entryColumns + " FROM entries WHERE user_id = " + q.arg(userID))
	} else {
		drive, others, err := s.rarestWord(ctx, userID, f.Words)
		if err != nil {
			return journal.Page{}, s.errorf("list entries", err)
		}
		if drive == "" {
			return empty, nil // a word that no entry has
		}
		t, id = "w.created_at", "w.entry_id"
		q.b.WriteString("SELECT " + entryColumnsOf("e") + " FROM entry_words w JOIN entries e ON e.id = w.entry_id" +
			" WHERE w.user_id = " + q.arg(userID) + " AND w.word = " + q.arg(drive))
		// Each other word is a lookup of one primary-key row per candidate, in
		// page order. A scalar subquery, not EXISTS: PostgreSQL turns EXISTS
		// into a semi-join that may hash every occurrence of the word before
		// the first row comes out; a scalar subquery runs per row on both
		// databases.
		for _, w := range others {
			q.b.WriteString(" AND (SELECT 1 FROM entry_words x WHERE x.user_id = w.user_id AND x.word = " + q.arg(w) +
				" AND x.created_at = w.created_at AND x.entry_id = w.entry_id) = 1")
		}
	}
	if f.From != nil {
		q.b.WriteString(" AND " + t + " >= " + q.arg(s.time(*f.From)))
	}
	if f.To != nil {
		q.b.WriteString(" AND " + t + " < " + q.arg(s.time(*f.To)))
	}
	if req.After != nil {
		q.b.WriteString(" AND (" + t + ", " + id + ") < (" + q.arg(s.time(req.After.CreatedAt)) + ", " + q.arg(req.After.ID) + ")")
	}
	// One more than the page, to learn whether another page follows.
	q.b.WriteString(" ORDER BY " + t + " DESC, " + id + " DESC LIMIT " + q.arg(req.Limit+1))
	entries, err := s.queryEntries(ctx, q, req.Limit+1)
	if err != nil {
		return journal.Page{}, s.errorf("list entries", err)
	}
	page := journal.Page{Entries: entries}
	if len(entries) > req.Limit {
		page.Entries = entries[:req.Limit]
		last := page.Entries[req.Limit-1]
		page.Next = &journal.Cursor{CreatedAt: last.CreatedAt, ID: last.ID, Filter: f}
	}
	return page, nil
}

// rarestWord returns the word of words with the fewest occurrences among
// the user's entries (counted up to rarityBound) and the others, or "" when
// one of them occurs in no entry.
func (s *Store) rarestWord(ctx context.Context, userID string, words []string) (string, []string, error) {
	if len(words) == 1 {
		return words[0], nil, nil
	}
	best, bestN := 0, -1
	for i, w := range words {
		var n int
		err := s.read.QueryRow(ctx, "SELECT count(*) FROM (SELECT 1 FROM entry_words WHERE user_id = $1 AND word = $2 LIMIT $3) AS t",
			userID, w, rarityBound+1).Scan(&n)
		if err != nil {
			return "", nil, err
		}
		if n == 0 {
			return "", nil, nil
		}
		if bestN < 0 || n < bestN {
			best, bestN = i, n
		}
	}
	others := make([]string, 0, len(words)-1)
	others = append(others, words[:best]...)
	return words[best], append(others, words[best+1:]...), nil
}

// queryEntries runs q, which selects entry columns, and returns up to n
// entries.
func (s *Store) queryEntries(ctx context.Context, q query, n int) ([]journal.Entry, error) {
	rows, err := s.read.Query(ctx, q.b.String(), q.args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	entries := make([]journal.Entry, 0, n)
	for rows.Next() {
		e, err := s.scanEntry(rows)
		if err != nil {
			return nil, err
		}
		entries = append(entries, e)
	}
	return entries, rows.Err()
}

// ExportEntries returns up to limit of the user's entries oldest first
// (created_at, then id, ascending), strictly after the position of after
// (nil: from the first). limit must be at least 1.
func (s *Store) ExportEntries(ctx context.Context, userID string, after *journal.Cursor, limit int) ([]journal.Entry, error) {
	if limit < 1 {
		return nil, s.errorf("export entries", fmt.Errorf("limit %d < 1", limit))
	}
	if after != nil && !journal.ValidID(after.ID) {
		return nil, journal.ErrInvalidCursor
	}
	if !journal.ValidID(userID) {
		return []journal.Entry{}, nil
	}
	var q query
	q.b.WriteString("SELECT " + entryColumns + " FROM entries WHERE user_id = " + q.arg(userID))
	if after != nil {
		q.b.WriteString(" AND (created_at, id) > (" + q.arg(s.time(after.CreatedAt)) + ", " + q.arg(after.ID) + ")")
	}
	q.b.WriteString(" ORDER BY created_at, id LIMIT " + q.arg(limit))
	entries, err := s.queryEntries(ctx, q, limit)
	if err != nil {
		return nil, s.errorf("export entries", err)
	}
	return entries, nil
}
