package entrycache_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/cache"
	"github.com/journalsvc/journal/cache/memorycache"
	"github.com/journalsvc/journal/cache/rediscache"
	"github.com/journalsvc/journal/cache/rediscache/rediscachetest"
	"github.com/journalsvc/journal/entrycache"
	"github.com/journalsvc/journal/internal/storetest"
	"github.com/journalsvc/journal/internal/testdb"
	"github.com/journalsvc/journal/internal/testenv"
)

// counting wraps a real store and counts entry reads that reach it, so tests
// can tell cache hits from database loads.
type counting struct {
	journal.Database
	entryLoads atomic.Int64
	pageLoads  atomic.Int64
	tokenLoads atomic.Int64
}

func (c *counting) Entry(ctx context.Context, userID, id string) (journal.Entry, error) {
	c.entryLoads.Add(1)
	return c.Database.Entry(ctx, userID, id)
}

func (c *counting) ListEntries(ctx context.Context, userID string, req journal.PageRequest) (journal.Page, error) {
	c.pageLoads.Add(1)
	return c.Database.ListEntries(ctx, userID, req)
}

func (c *counting) TokenByHash(ctx context.Context, hash string) (journal.Token, error) {
	c.tokenLoads.Add(1)
	return c.Database.TokenByHash(ctx, hash)
}

func ctxT(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// instance is one service instance's view: its own cache client over the
// shared database.
type instance struct {
	*entrycache.Store
	db *counting
	cs cache.Store
}

// roundTrip makes one call to Redis on in's connection (a Get of a key that
// no one holds, so the near cache cannot answer). Redis delivers every
// invalidation pushed to that connection before the reply, so once it
// returns, in has applied every invalidation of writes that completed before
// the call. In the service, the rate-limit decision that precedes every
// cached read is such a call.
func (in *instance) roundTrip(tb testing.TB, ctx context.Context) {
	tb.Helper()
	if _, err := in.cs.Get(ctx, testenv.RandomPrefix()+"round-trip"); err != nil {
		tb.Fatal(err)
	}
}

func newInstance(tb testing.TB, db journal.Database, cs cache.Store, prefix string) *instance {
	tb.Helper()
	c := &counting{Database: db}
	opts := entrycache.Options{
		Prefix:         prefix,
		ReplayInterval: 20 * time.Millisecond,
		// Losers of a fill lease wait up to 3s for the winner: under -race on
		// a loaded 2-core machine a fill can take longer than the default
		// 500ms, and the stampede tests count database loads exactly.
		Cache: cache.Options{LeaseTTL: 5 * time.Second, LeaseWait: 3 * time.Second},
	}
	if rs, ok := cs.(*rediscache.Store); ok {
		opts.Healthy = rs.Healthy // as the service wires it
	}
	s, err := entrycache.New(nopClose{c}, cs, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	testenv.WaitFor(tb, 5*time.Second, "cache trusted", s.Trusted)
	return &instance{Store: s, db: c, cs: cs}
}

// nopClose keeps one instance's Close from closing the shared database.
type nopClose struct{ journal.Database }

func (nopClose) Close() error { return nil }

// redisStore returns a rediscache store with its own client (one "instance").
// Its per-call timeout is generous: these tests count loads and stale reads
// under -race on a shared 2-core machine, where a 50ms deadline can expire;
// the fault tests use the production default.
func redisStore(tb testing.TB, addr string) *rediscache.Store {
	return redisStoreOpts(tb, addr, rediscache.Options{Timeout: time.Second})
}

func redisStoreOpts(tb testing.TB, addr string, opts rediscache.Options) *rediscache.Store {
	tb.Helper()
	client := rediscachetest.Client(tb, []string{addr}, rediscache.ClientConfig{})
	return rediscachetest.Store(tb, client, opts)
}

func create(tb testing.TB, s journal.EntryStore, userID, title string) journal.Entry {
	tb.Helper()
	now := journal.StoredTime(time.Now())
	e, err := s.CreateEntry(ctxT(tb), journal.Entry{ID: journal.NewID(now), UserID: userID, Title: title, CreatedAt: now, UpdatedAt: now})
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// openSingle returns a fresh SQLite database and an in-process cache store:
// one instance without Redis.
func openSingle(tb testing.TB) (journal.Database, *memorycache.Store) {
	tb.Helper()
	db := testdb.SQLite(tb)
	ms, err := memorycache.New(memorycache.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return db, ms
}

func TestSingleInstanceReadThrough(t *testing.T) {
	t.Parallel()
	db, ms := openSingle(t)
	a := newInstance(t, db, ms, "journal:")
	ctx := ctxT(t)
	u := storetest.NewUser(t, db, "alice")
	e := create(t, a, u.ID, "first")

	for range 3 {
		got, err := a.Entry(ctx, u.ID, e.ID)
		if err != nil || got != e {
			t.Fatalf("Entry = %+v, %v; want %+v", got, err, e)
		}
	}
	if got := a.db.entryLoads.Load(); got != 1 {
		t.Errorf("database entry loads after 3 reads = %d, want 1", got)
	}
	title := "second"
	upd, err := a.UpdateEntry(ctx, u.ID, e.ID, journal.EntryPatch{Title: &title}, e.Version, journal.StoredTime(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := a.Entry(ctx, u.ID, e.ID); err != nil || got != upd {
		t.Errorf("Entry after update = %+v, %v; want %+v", got, err, upd)
	}
	p, err := a.ListEntries(ctx, u.ID, journal.PageRequest{Limit: 20})
	if err != nil || len(p.Entries) != 1 || p.Entries[0] != upd {
		t.Errorf("ListEntries = %+v, %v", p, err)
	}
	if err := a.DeleteEntry(ctx, u.ID, e.ID, journal.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Entry(ctx, u.ID, e.ID); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("Entry after delete error = %v, want ErrNotFound", err)
	}
	if p, err := a.ListEntries(ctx, u.ID, journal.PageRequest{Limit: 20}); err != nil || len(p.Entries) != 0 {
		t.Errorf("ListEntries after delete = %+v, %v; want empty", p, err)
	}
	if n, err := db.PendingChanges(ctx); err != nil || n != 0 {
		t.Errorf("PendingChanges = %d, %v; want 0 (every write applied)", n, err)
	}
}

// TestUnhealthyStore: while Options.Healthy reports false, reads go to the
// database (single-flight, nothing written back) and the cache is not
// trusted; once it reports true again the outbox is replayed and the cache
// serves.
func TestUnhealthyStore(t *testing.T) {
	t.Parallel()
	db, ms := openSingle(t)
	var healthy atomic.Bool
	healthy.Store(true)
	c := &counting{Database: db}
	s, err := entrycache.New(nopClose{c}, ms, entrycache.Options{ReplayInterval: 20 * time.Millisecond, Healthy: healthy.Load})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	testenv.WaitFor(t, 5*time.Second, "cache trusted", s.Trusted)
	ctx := ctxT(t)
	u := storetest.NewUser(t, db, "alice")
	e := create(t, s, u.ID, "first")

	healthy.Store(false)
	for i := range 3 {
		if got, err := s.Entry(ctx, u.ID, e.ID); err != nil || got != e {
			t.Fatalf("Entry #%d with the store unhealthy = %+v, %v; want %+v", i, got, err, e)
		}
	}
	if got := c.entryLoads.Load(); got != 3 {
		t.Errorf("database entry loads for 3 reads with the store unhealthy = %d, want 3", got)
	}
	if s.Trusted() {
		t.Error("cache trusted while the store is unhealthy")
	}
	itemKey := "journal:e:{u:" + u.ID + "}:i:" + e.ID
	if got, err := ms.Get(ctx, itemKey); err != nil || got.Status != cache.Miss {
		t.Errorf("the cache store holds %v, %v for the entry after reads with the store unhealthy, want a miss (nothing written back)", got.Status, err)
	}

	healthy.Store(true)
	testenv.WaitFor(t, 5*time.Second, "cache trusted again", s.Trusted)
	for range 3 {
		if _, err := s.Entry(ctx, u.ID, e.ID); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.entryLoads.Load(); got != 4 {
		t.Errorf("database entry loads after 3 more reads with the store healthy = %d, want 4 (one fill)", got)
	}
}

// warmThenUpdate reads the entry and the first page of userID on B, so that
// B's near cache holds them, then sets the entry's title on A to "v<i+1>" and
// returns the updated entry: one write-on-A/read-on-B pair of the coherence
// tests.
func warmThenUpdate(t *testing.T, ctx context.Context, a, b *instance, userID, entryID string, i int) journal.Entry {
	t.Helper()
	if _, err := b.Entry(ctx, userID, entryID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ListEntries(ctx, userID, journal.PageRequest{Limit: 20}); err != nil {
		t.Fatal(err)
	}
	title := fmt.Sprintf("v%d", i+1)
	upd, err := a.UpdateEntry(ctx, userID, entryID, journal.EntryPatch{Title: &title}, journal.AnyVersion, journal.StoredTime(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	return upd
}

// TestCoherenceAcrossInstances writes on A and reads on B at once, for items
// and pages: no read may be stale.
func TestCoherenceAcrossInstances(t *testing.T) {
	t.Parallel()
	db, a, b := twoInstances(t)
	// 1,000 pairs are about 6,000 database and cache operations: on a loaded
	// 2-core machine under -race that can take well over ctxT's 30 s.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	u := storetest.NewUser(t, db, "alice")
	e := create(t, a, u.ID, "v0")
	pairs := 1000
	if testing.Short() {
		pairs = 100
	}
	// Half the pairs read on B at once; the other half after one Redis round
	// trip on B, as a request through the service makes (its rate-limit
	// decision). Without it a near-cache read on B can come before B has read
	// the invalidation Redis already sent it: that is the invalidation lag,
	// bounded here. With it no read may be stale.
	var stale, strictStale int
	var lags []time.Duration
	for i := range pairs {
		upd := warmThenUpdate(t, ctx, a, b, u.ID, e.ID, i)
		strict := i%2 == 1
		if strict {
			b.roundTrip(t, ctx)
		}
		fresh := func() bool {
			got, err := b.Entry(ctx, u.ID, e.ID)
			if err != nil {
				t.Fatal(err)
			}
			p, err := b.ListEntries(ctx, u.ID, journal.PageRequest{Limit: 20})
			if err != nil {
				t.Fatal(err)
			}
			return got.Version == upd.Version && got.Title == upd.Title && len(p.Entries) == 1 && p.Entries[0].Version == upd.Version
		}
		switch {
		case fresh():
		case strict:
			strictStale++
		default:
			stale++
			lags = append(lags, testenv.WaitFor(t, time.Second, "B sees A's write", fresh))
		}
	}
	t.Logf("%d pairs: %d stale reads without a round trip on B (lags %v), %d with one", pairs, stale, lags, strictStale)
	if strictStale != 0 {
		t.Errorf("%d of %d reads on B after a Redis round trip were stale, want 0", strictStale, pairs/2)
	}
	for _, lag := range lags {
		if lag > lagBound {
			t.Errorf("a stale read on B took %v to become fresh, want < 100ms (%v with margin)", lag, lagBound)
		}
	}
	// Deletes too.
	if err := a.DeleteEntry(ctx, u.ID, e.ID, journal.AnyVersion); err != nil {
		t.Fatal(err)
	}
	b.roundTrip(t, ctx)
	if _, err := b.Entry(ctx, u.ID, e.ID); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("Entry on B after delete on A: %v, want ErrNotFound", err)
	}
	if p, err := b.ListEntries(ctx, u.ID, journal.PageRequest{Limit: 20}); err != nil || len(p.Entries) != 0 {
		t.Errorf("page on B after delete on A = %d entries, %v; want 0", len(p.Entries), err)
	}
	// Creates show up in B's cached first page.
	e2 := create(t, a, u.ID, "new")
	b.roundTrip(t, ctx)
	if p, err := b.ListEntries(ctx, u.ID, journal.PageRequest{Limit: 20}); err != nil || len(p.Entries) != 1 || p.Entries[0].ID != e2.ID {
		t.Errorf("page on B after create on A = %+v, %v", p, err)
	}
}

func TestUsersIsolated(t *testing.T) {
	t.Parallel()
	db := testdb.Postgres(t)
	a := newInstance(t, db, redisStore(t, testenv.RedisAddr(t)), testenv.RandomPrefix())
	ctx := ctxT(t)
	alice, bob := storetest.NewUser(t, db, "alice"), storetest.NewUser(t, db, "bob")
	e := create(t, a, alice.ID, "secret")
	if _, err := a.Entry(ctx, alice.ID, e.ID); err != nil { // cached for alice now
		t.Fatal(err)
	}
	if _, err := a.ListEntries(ctx, alice.ID, journal.PageRequest{Limit: 20}); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Entry(ctx, bob.ID, e.ID); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("bob reads alice's cached entry: %+v, %v; want ErrNotFound", got, err)
	}
	if p, err := a.ListEntries(ctx, bob.ID, journal.PageRequest{Limit: 20}); err != nil || len(p.Entries) != 0 {
		t.Errorf("bob's page = %+v, %v; want empty", p, err)
	}
	if _, err := a.Entry(ctx, alice.ID, "../"+e.ID); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("malformed id error = %v, want ErrNotFound", err)
	}
}

// lagBound is how long a write on A may stay invisible on B: the
// invalidation is on its way when the write returns (rediscache settles it),
// but B's client may not have read it yet. The promise is under 100ms;
// 3x for -race on 2 shared cores.
const lagBound = 300 * time.Millisecond

// TestStampede: 200 concurrent misses of one key over 3 instances cause one
// database load, and a cancelled first caller fails no one else.
func TestStampede(t *testing.T) {
	t.Parallel()
	addr := testenv.RedisAddr(t)
	testStampede(t, func(tb testing.TB) cache.Store { return redisStore(tb, addr) })
}

// TestRevocationVisibleElsewhere: a token revoked on A stops working on B
// within the invalidation lag.
func TestRevocationVisibleElsewhere(t *testing.T) {
	t.Parallel()
	addr := testenv.RedisAddr(t)
	testRevocation(t, func(tb testing.TB) cache.Store { return redisStore(tb, addr) })
}

// testStampede runs the stampede test with instances whose cache stores
// newStore makes (one per instance, over one Redis or Redis Cluster).
func testStampede(t *testing.T, newStore func(testing.TB) cache.Store) {
	db := testdb.Postgres(t)
	prefix := testenv.RandomPrefix()
	insts := []*instance{
		newInstance(t, db, newStore(t), prefix),
		newInstance(t, db, newStore(t), prefix),
		newInstance(t, db, newStore(t), prefix),
	}
	u := storetest.NewUser(t, db, "alice")
	e := create(t, insts[0], u.ID, "hot")
	for _, in := range insts {
		in.db.entryLoads.Store(0)
	}
	ctx := ctxT(t)
	var wg sync.WaitGroup
	var failures atomic.Int64
	start := make(chan struct{})
	cancelled, cancel := context.WithCancel(ctx)
	wg.Go(func() { // the first caller gives up at once
		_, _ = insts[0].Entry(cancelled, u.ID, e.ID)
	})
	cancel()
	for i := range 200 {
		wg.Go(func() {
			<-start
			got, err := insts[i%3].Entry(ctx, u.ID, e.ID)
			if err != nil || got != e {
				failures.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Errorf("%d of 200 concurrent reads failed", n)
	}
	var loads int64
	for _, in := range insts {
		loads += in.db.entryLoads.Load()
	}
	if loads != 1 {
		t.Errorf("database loads for 200 concurrent misses over 3 instances = %d, want 1", loads)
	}
}

// testRevocation runs the revocation test with two instances whose cache
// stores newStore makes.
func testRevocation(t *testing.T, newStore func(testing.TB) cache.Store) {
	db := testdb.Postgres(t)
	prefix := testenv.RandomPrefix()
	a := newInstance(t, db, newStore(t), prefix)
	b := newInstance(t, db, newStore(t), prefix)
	ctx := ctxT(t)
	u := storetest.NewUser(t, db, "alice")
	_, hash := journal.NewTokenSecret()
	now := journal.StoredTime(time.Now())
	if err := db.CreateToken(ctx, journal.Token{Hash: hash, ID: journal.NewID(now), UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for _, in := range []*instance{a, b} { // both cache it
		if tok, err := in.TokenByHash(ctx, hash); err != nil || !tok.Valid(time.Now()) {
			t.Fatalf("TokenByHash = %+v, %v", tok, err)
		}
	}
	loadsBefore := b.db.tokenLoads.Load()
	if tok, _ := b.TokenByHash(ctx, hash); !tok.Valid(time.Now()) || b.db.tokenLoads.Load() != loadsBefore {
		t.Fatalf("token lookup on B was not served from the cache")
	}
	if err := a.RevokeToken(ctx, hash); err != nil {
		t.Fatal(err)
	}
	if tok, err := a.TokenByHash(ctx, hash); err != nil || tok.Valid(time.Now()) {
		t.Errorf("revoking instance still accepts the token: %+v, %v", tok, err)
	}
	lag := testenv.WaitFor(t, 3*time.Second, "revocation visible on B", func() bool {
		tok, err := b.TokenByHash(ctx, hash)
		return err == nil && !tok.Valid(time.Now())
	})
	if lag > lagBound {
		t.Errorf("revocation reached B after %v, want < 100ms (%v with margin)", lag, lagBound)
	}
}
