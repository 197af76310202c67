// Package entrycache is the read-through cache decorator of the journal store
// (docs/design.md, "Cache and coherence"). It serves entries, list pages and token lookups
// from a cache.Store (in-process, or Redis with a coherent near cache in each
// instance) and keeps every instance's view coherent with the database:
//
//   - Keys are scoped by user, journal:e:{u:<uid>}:..., so no cached value can
//     reach another user, and all of one user's keys share a Redis Cluster slot.
//   - Every list-page key contains the user's generation, read from the key
//     journal:e:{u:<uid>}:gen. A committed write deletes the generation key (and
//     the item key); the next reader creates a fresh random generation, so one
//     delete hides every cached page of that user on every instance. A
//     generation never repeats, so an old page can never come back.
//   - Invalidations travel through the database outbox (journal.Outbox): the
//     store records a Change in the write's own transaction, and this package
//     applies it to the cache after the commit, before the write returns. A
//     change that could not be applied (Redis down, or the instance died)
//     stays in the outbox and is replayed by any instance.
//   - While the cache store fails or reports itself unhealthy
//     (Options.Healthy), and after it comes back until the outbox is empty
//     again, the cache is not trusted: reads go to the database through
//     [cache.Cache.Load], single-flight per key and at most
//     Options.Cache.DegradedLoads at a time, and nothing is written back.
//   - Token lookups are cached by token hash; a revocation (one token, every
//     other token at a password change, all of them, or a deleted account)
//     deletes the cached tokens through the same outbox, so it takes effect
//     on the revoking instance at once and on the others within the
//     invalidation lag. Deleting an account also deletes its generation;
//     its entries' keys name a user id that is never used again and that no
//     token can authenticate any more, and they expire with the TTL.
//   - Filtered pages (search, time ranges) are cached like other pages,
//     under the generation, with the filter in the key.
package entrycache

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/cache"
)

// Options configure a Store. The zero value gives the documented defaults.
type Options struct {
	// Prefix starts every key. Default "journal:" (JOURNAL_REDIS_PREFIX).
	Prefix string
	// TTL of cached entries, pages and tokens. Default 5m (JOURNAL_CACHE_TTL).
	TTL time.Duration
	// ReplayInterval is the pause of the outbox replayer while the cache is
	// not trusted. Default 200ms. While trusted it sweeps every 25 intervals.
	ReplayInterval time.Duration
	// OpTimeout bounds the invalidation applied after a write and each replay
	// batch. Default 1s.
	OpTimeout time.Duration
	// Cache configures the cache.Cache built over the store; it owns every
	// bound on database reads: DegradedLoads bounds the reads made while the
	// cache is not trusted, LoadTimeout bounds each load (default 5s, the
	// stores' statement timeout: a slow database must not fail more reads
	// because the cache is down), NegativeTTL how long a missing entry is
	// remembered (default 10s; negative: not at all). Its OnResult is called
	// after this package's own bookkeeping.
	Cache cache.Options
	// Healthy reports whether the cache store can be used now, for a store
	// that knows its liveness (rediscache.Store.Healthy). While it reports
	// false no read or write waits on the store: reads go to the database,
	// a write leaves its invalidation in the outbox, and the cache is not
	// trusted until the outbox has been replayed with the store healthy.
	// Default: always healthy (an in-process store).
	Healthy func() bool
	// Logger receives state changes. Default: discard.
	Logger *slog.Logger
	// OnTrust, if set, is called when the cache becomes trusted (true) or not
	// (false), for metrics. It must be fast.
	OnTrust func(trusted bool)
	// OnInvalidate, if set, is called with the number of changes applied to
	// the cache (after writes and by the replayer).
	OnInvalidate func(n int)
	// Bypass, if set, is asked before each read: true sends the read to the
	// database without touching the cache, and without distrusting it (for
	// example when the request has spent its time budget for Redis).
	Bypass func(ctx context.Context) bool
}

// db is what this package needs of the database.
type db interface {
	journal.UserStore
	journal.EntryStore
	journal.TokenStore
	journal.Outbox
}

// Store decorates a journal.Database: entry reads, page reads and token lookups
// go through the cache; writes go to the database and then invalidate. It
// implements journal.Database (users, Ping and Close pass through). It is safe
// for concurrent use; Close stops the replayer (and closes the database).
type Store struct {
	journal.Database
	db   db
	c    *cache.Cache
	opts Options
	log  *slog.Logger

	// Decoded cached values (see memo).
	tokens  *memo[journal.Token]
	entries *memo[cachedEntry]
	pages   *memo[cachedPage]

	trusted atomic.Bool
	kick    chan struct{}
	stop    chan struct{}
	done    sync.WaitGroup
	closed  sync.Once
}

var _ journal.Database = (*Store)(nil)

// ErrNilDependency is returned by New when the database or the cache store is nil.
var ErrNilDependency = errors.New("entrycache: nil dependency")

// New returns a Store over database d with the cache store cs. The cache
// starts untrusted until the first replay finds the outbox empty (normally
// within ReplayInterval of start). New starts the replayer; Close stops it.
func New(d journal.Database, cs cache.Store, opts Options) (*Store, error) {
	if d == nil || cs == nil {
		return nil, ErrNilDependency
	}
	if opts.Prefix == "" {
		opts.Prefix = "journal:"
	}
	if opts.TTL <= 0 {
		opts.TTL = 5 * time.Minute
	}
	if opts.ReplayInterval <= 0 {
		opts.ReplayInterval = 200 * time.Millisecond
	}
	if opts.OpTimeout <= 0 {
		opts.OpTimeout = time.Second
	}
	if opts.Healthy == nil {
		opts.Healthy = func() bool { return true }
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		Database: d, db: d, opts: opts, log: opts.Logger,
		kick: make(chan struct{}, 1),
		stop: make(chan struct{}),

		tokens:  newMemo[journal.Token](memoSlots, 1<<10),
		entries: newMemo[cachedEntry](memoSlots, 16<<10),
		pages:   newMemo[cachedPage](memoSlots/8, 64<<10),
	}
	copts := opts.Cache
	userOnResult := copts.OnResult
	copts.OnResult = func(tier, result string) {
		if result == cache.ResultError {
			s.distrust("cache store error")
		}
		if userOnResult != nil {
			userOnResult(tier, result)
		}
	}
	c, err := cache.New(cs, copts)
	if err != nil {
		return nil, err
	}
	s.c = c
	s.done.Add(1)
	go s.replayer()
	s.kickReplay()
	return s, nil
}

// Close stops the replayer and closes the database.
func (s *Store) Close() error {
	s.closed.Do(func() { close(s.stop) })
	s.done.Wait()
	return s.Database.Close()
}

// Trusted reports whether reads are currently served from the cache.
func (s *Store) Trusted() bool { return s.trusted.Load() }

// useCache reports whether a read may go through the cache: it is trusted,
// Options.Bypass does not refuse ctx, and Options.Healthy does not already
// report the store unhealthy (then no read waits on the store's deadline; the
// cache is distrusted until the outbox is replayed).
func (s *Store) useCache(ctx context.Context) bool {
	if !s.trusted.Load() || (s.opts.Bypass != nil && s.opts.Bypass(ctx)) {
		return false
	}
	if !s.opts.Healthy() {
		s.distrust("cache store unhealthy")
		return false
	}
	return true
}

func (s *Store) distrust(reason string) {
	if s.trusted.CompareAndSwap(true, false) {
		s.log.Warn("entry cache not trusted; reading from the database until the outbox is replayed", "reason", reason)
		if s.opts.OnTrust != nil {
			s.opts.OnTrust(false)
		}
	}
	s.kickReplay()
}

func (s *Store) kickReplay() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// replayer applies changes left in the outbox (by any instance) and decides
// when the cache is trusted again: only after a replay pass that ends with an
// empty outbox while the cache store is healthy.
func (s *Store) replayer() {
	defer s.done.Done()
	t := time.NewTicker(s.opts.ReplayInterval)
	defer t.Stop()
	sweep := 0
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		case <-t.C:
			sweep++
			if s.trusted.Load() && sweep%25 != 0 {
				continue
			}
		}
		ok := s.replay()
		if ok && !s.trusted.Load() {
			if s.trusted.CompareAndSwap(false, true) {
				s.log.Info("entry cache trusted: outbox replayed")
				if s.opts.OnTrust != nil {
					s.opts.OnTrust(true)
				}
			}
		}
	}
}

// replay drains the outbox; it reports whether it ended empty with the cache
// store healthy.
func (s *Store) replay() bool {
	if !s.opts.Healthy() {
		return false
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.OpTimeout)
		n, err := s.db.ApplyChanges(ctx, "", 256, s.apply)
		if err == nil && n == 0 {
			var pending int64
			pending, err = s.db.PendingChanges(ctx)
			cancel()
			return err == nil && pending == 0
		}
		cancel()
		if err != nil {
			if s.trusted.Load() {
				s.distrust("outbox replay failed: " + err.Error())
			}
			return false
		}
		select {
		case <-s.stop:
			return false
		default:
		}
	}
}

// apply invalidates the cache keys of changes.
func (s *Store) apply(ctx context.Context, changes []journal.Change) error {
	keys := make([]string, 0, 2*len(changes))
	seen := make(map[string]bool, 2*len(changes))
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, ch := range changes {
		if ch.EntryID != "" {
			add(s.itemKey(ch.UserID, ch.EntryID))
			add(s.genKey(ch.UserID))
		}
		if ch.TokenHash != "" {
			add(s.tokenKey(ch.TokenHash))
		}
		if ch.EntryID == "" && ch.TokenHash == "" { // the user was deleted
			add(s.genKey(ch.UserID))
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if err := s.c.Delete(ctx, keys...); err != nil {
		return fmt.Errorf("entrycache: invalidate: %w", err)
	}
	if s.opts.OnInvalidate != nil {
		s.opts.OnInvalidate(len(changes))
	}
	return nil
}

// invalidate applies the user's pending changes right after a committed
// write, so the write is invisible to no instance once it returns. On failure
// the changes stay in the outbox and the cache is distrusted until replayed.
// own is the write's own change: when the outbox cannot be read (the
// database went away after the commit), it is applied from memory, so that
// no instance keeps serving what the write replaced while the replayer
// waits for the database.
func (s *Store) invalidate(ctx context.Context, userID string, own ...journal.Change) {
	if !s.opts.Healthy() {
		// Redis is known to be down or hung: do not wait on it (a write would
		// otherwise spend its Redis budget here). The change stays in the
		// outbox; the replayer applies it as soon as the store is healthy
		// again (its liveness check plus one replay interval, well under a
		// second), and this instance reads the database until then. If only
		// this instance thought Redis unhealthy, the others serve their copies
		// for that long, within the promise for writes made during an outage
		// (visible everywhere within 1 s).
		s.distrust("cache store unhealthy at write")
		return
	}
	// ApplyChanges(userID) never waits for the replayer, even while it holds
	// this user's older changes during a slow Redis call: the write applies
	// them itself (deletes are idempotent).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.OpTimeout)
	defer cancel()
	// A write may leave more changes than one batch (every token of a user
	// revoked at once): apply them all.
	for {
		n, err := s.db.ApplyChanges(ctx, userID, invalidateBatch, s.apply)
		if err != nil {
			if len(own) > 0 {
				// Its own deadline: reaching the database may have spent ctx's.
				actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.OpTimeout)
				if aerr := s.apply(actx, own); aerr != nil {
					err = errors.Join(err, aerr)
				}
				cancel()
			}
			s.distrust("invalidation after write failed: " + err.Error())
			return
		}
		if n < invalidateBatch {
			return
		}
	}
}

// invalidateBatch is the most changes applied in one cache call after a
// write.
const invalidateBatch = 1000

// userPrefix is the start of every key of userID's entries and pages.
// itemKey and genKey spell it out in one concatenation, which allocates the
// key once: every read of an entry builds one.
func (s *Store) userPrefix(userID string) string { return s.opts.Prefix + "e:{u:" + userID + "}:" }
func (s *Store) itemKey(userID, id string) string {
	return s.opts.Prefix + "e:{u:" + userID + "}:i:" + id
}
func (s *Store) genKey(userID string) string { return s.opts.Prefix + "e:{u:" + userID + "}:gen" }
func (s *Store) tokenKey(hash string) string { return s.opts.Prefix + "t:{" + hash + "}" }

// memoSlots bounds the decoded tokens and entries each Store remembers (and
// an eighth of it the pages): with the byte limits given in New, at most
// 512 KiB of tokens, 8 MiB of entries and 4 MiB of pages.
const memoSlots = 512

// cachedEntry is the stored form of an entry.
type cachedEntry struct {
	ID        string    `json:"id"`
	UserID    string    `json:"u"`
	Title     string    `json:"t"`
	Body      string    `json:"b"`
	Version   int64     `json:"v"`
	CreatedAt time.Time `json:"c"`
	UpdatedAt time.Time `json:"m"`
}

func fromEntry(e journal.Entry) cachedEntry { return cachedEntry(e) }
func (c cachedEntry) entry() journal.Entry  { return journal.Entry(c) }

// Entry implements journal.EntryStore through the cache.
func (s *Store) Entry(ctx context.Context, userID, id string) (journal.Entry, error) {
	if !journal.ValidID(id) || !journal.ValidID(userID) {
		return journal.Entry{}, journal.ErrNotFound
	}
	c, err := readThrough(ctx, s, s.useCache(ctx), s.itemKey(userID, id), "entry", s.entries, func(ctx context.Context) (cachedEntry, error) {
		e, err := s.db.Entry(ctx, userID, id)
		return fromEntry(e), err
	})
	return c.entry(), err
}

// readThrough returns the value of key, as the JSON of S that load reads
// from the database. With useCache it reads through the cache: a load that
// reports journal.ErrNotFound is cached as a negative entry, other load errors
// are never cached. Without, it asks the database through cache.Cache.Load
// (bounded, nothing stored). A missing value is journal.ErrNotFound either
// way. Decoded values come from m and may be shared: treat them as read-only.
func readThrough[S any](ctx context.Context, s *Store, useCache bool, key, what string, m *memo[S], load func(context.Context) (S, error)) (S, error) {
	var zero S
	loadJSON := func(ctx context.Context) ([]byte, error) {
		v, err := load(ctx)
		if errors.Is(err, journal.ErrNotFound) {
			return nil, cache.ErrNotFound
		}
		if err != nil {
			return nil, err
		}
		return json.Marshal(v)
	}
	var b []byte
	var err error
	if useCache {
		b, err = s.c.GetOrLoad(ctx, key, s.opts.TTL, loadJSON)
	} else {
		b, err = s.c.Load(ctx, key, loadJSON)
	}
	switch {
	case errors.Is(err, cache.ErrNotFound):
		return zero, journal.ErrNotFound
	case err != nil:
		return zero, err
	}
	v, err := m.decode(b)
	if err != nil {
		return zero, fmt.Errorf("entrycache: decode %s: %w", what, err)
	}
	return v, nil
}

// cachedPage is the stored form of a page.
type cachedPage struct {
	Entries []cachedEntry   `json:"e"`
	Next    *journal.Cursor `json:"n,omitempty"`
}

// generation returns the user's current page generation, creating a new
// random one when there is none.
func (s *Store) generation(ctx context.Context, userID string) (string, error) {
	b, err := s.c.GetOrLoad(ctx, s.genKey(userID), 2*s.opts.TTL+time.Minute, func(context.Context) ([]byte, error) {
		return strconv.AppendUint(nil, rand.Uint64(), 36), nil
	})
	return string(b), err
}

// ListEntries implements journal.EntryStore through the cache.
func (s *Store) ListEntries(ctx context.Context, userID string, req journal.PageRequest) (journal.Page, error) {
	if !journal.ValidID(userID) {
		return journal.Page{}, nil
	}
	cur := pageKeyPart(req)
	useCache := s.useCache(ctx)
	// Without the cache there is no generation to read; the key then only
	// names the read for single-flight.
	gen := "degraded"
	if useCache {
		var err error
		if gen, err = s.generation(ctx, userID); err != nil {
			return journal.Page{}, err
		}
	}
	key := s.userPrefix(userID) + "p:" + gen + ":" + strconv.Itoa(req.Limit) + ":" + cur
	cp, err := readThrough(ctx, s, useCache, key, "page", s.pages, func(ctx context.Context) (cachedPage, error) {
		p, err := s.db.ListEntries(ctx, userID, req)
		cp := cachedPage{Entries: make([]cachedEntry, len(p.Entries)), Next: p.Next}
		for i, e := range p.Entries {
			cp.Entries[i] = fromEntry(e)
		}
		return cp, err
	})
	if err != nil {
		return journal.Page{}, err
	}
	// cp may be shared (memo): hand out copies of its slice and pointer.
	p := journal.Page{Entries: make([]journal.Entry, len(cp.Entries))}
	if cp.Next != nil {
		next := *cp.Next
		p.Next = &next
	}
	for i, e := range cp.Entries {
		p.Entries[i] = e.entry()
	}
	return p, nil
}

// pageKeyPart names the position and filter of req in a page key: "-" for
// the unfiltered first page, else a hash of the encoded cursor (which carries
// the filter), so keys stay short whatever the filter.
func pageKeyPart(req journal.PageRequest) string {
	var c string
	switch {
	case req.After != nil:
		c = req.After.Encode()
	case !req.Filter.IsZero():
		c = "first:" + journal.Cursor{Filter: req.Filter}.Encode()
	default:
		return "-"
	}
	sum := sha256.Sum256([]byte(c))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// CreateEntry implements journal.EntryStore: database, then invalidation.
func (s *Store) CreateEntry(ctx context.Context, e journal.Entry) (journal.Entry, error) {
	out, err := s.db.CreateEntry(ctx, e)
	if err == nil {
		s.invalidate(ctx, e.UserID, journal.Change{UserID: e.UserID, EntryID: out.ID})
	}
	return out, err
}

// UpdateEntry implements journal.EntryStore: database, then invalidation.
func (s *Store) UpdateEntry(ctx context.Context, userID, id string, p journal.EntryPatch, ifVersion int64, now time.Time) (journal.Entry, error) {
	out, err := s.db.UpdateEntry(ctx, userID, id, p, ifVersion, now)
	if err == nil {
		s.invalidate(ctx, userID, journal.Change{UserID: userID, EntryID: id})
	}
	return out, err
}

// DeleteEntry implements journal.EntryStore: database, then invalidation.
func (s *Store) DeleteEntry(ctx context.Context, userID, id string, ifVersion int64) error {
	err := s.db.DeleteEntry(ctx, userID, id, ifVersion)
	if err == nil {
		s.invalidate(ctx, userID, journal.Change{UserID: userID, EntryID: id})
	}
	return err
}

// TokenByHash implements journal.TokenStore through the cache. A cached token
// lives at most until it expires and at most TTL.
func (s *Store) TokenByHash(ctx context.Context, hash string) (journal.Token, error) {
	return readThrough(ctx, s, s.useCache(ctx), s.tokenKey(hash), "token", s.tokens, func(ctx context.Context) (journal.Token, error) {
		return s.db.TokenByHash(ctx, hash)
	})
}

// RevokeToken implements journal.TokenStore: database, then invalidation of
// the cached token on every instance.
func (s *Store) RevokeToken(ctx context.Context, hash string) error {
	t, err := s.db.TokenByHash(ctx, hash)
	if err != nil {
		return err
	}
	if err := s.db.RevokeToken(ctx, hash); err != nil {
		return err
	}
	s.invalidate(ctx, t.UserID)
	return nil
}

// CreateEntryIdempotent implements journal.EntryStore: database, then
// invalidation.
func (s *Store) CreateEntryIdempotent(ctx context.Context, e journal.Entry, done journal.IdempotencyRecord) (journal.Entry, error) {
	out, err := s.db.CreateEntryIdempotent(ctx, e, done)
	if err == nil {
		s.invalidate(ctx, e.UserID, journal.Change{UserID: e.UserID, EntryID: out.ID})
	}
	return out, err
}

// RevokeTokenByID implements journal.TokenStore: database, then
// invalidation of the cached token on every instance.
func (s *Store) RevokeTokenByID(ctx context.Context, userID, id string, now time.Time) error {
	err := s.db.RevokeTokenByID(ctx, userID, id, now)
	if err == nil {
		s.invalidate(ctx, userID)
	}
	return err
}

// RevokeTokens implements journal.TokenStore: database, then invalidation
// of the cached tokens on every instance.
func (s *Store) RevokeTokens(ctx context.Context, userID, keep string, now time.Time) (int, error) {
	n, err := s.db.RevokeTokens(ctx, userID, keep, now)
	if err == nil {
		s.invalidate(ctx, userID)
	}
	return n, err
}

// ChangePassword implements journal.UserStore: database, then invalidation
// of the revoked tokens on every instance.
func (s *Store) ChangePassword(ctx context.Context, userID, oldHash, newHash, keep string, now time.Time) error {
	err := s.db.ChangePassword(ctx, userID, oldHash, newHash, keep, now)
	if err == nil {
		s.invalidate(ctx, userID)
	}
	return err
}

// DeleteUser implements journal.UserStore: database, then invalidation of
// the user's tokens and pages on every instance.
func (s *Store) DeleteUser(ctx context.Context, userID string, now time.Time) error {
	err := s.db.DeleteUser(ctx, userID, now)
	if err == nil {
		s.invalidate(ctx, userID)
	}
	return err
}
