package entrycache_test

import (
	"context"
	"testing"
	"time"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/internal/storetest"
	"github.com/journalsvc/journal/internal/testdb"
	"github.com/journalsvc/journal/internal/testenv"
)

// newToken stores a live token of userID directly in the database.
func newToken(tb testing.TB, db journal.Database, userID string) journal.Token {
	tb.Helper()
	_, hash := journal.NewTokenSecret()
	now := journal.StoredTime(time.Now())
	t := journal.Token{Hash: hash, ID: journal.NewID(now), UserID: userID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := db.CreateToken(ctxT(tb), t); err != nil {
		tb.Fatal(err)
	}
	return t
}

// twoInstances returns a fresh PostgreSQL database and two instances over
// it, each with its own client of the shared Redis, under a fresh prefix.
func twoInstances(t *testing.T) (journal.Database, *instance, *instance) {
	t.Helper()
	db := testdb.Postgres(t)
	addr := testenv.RedisAddr(t)
	prefix := testenv.RandomPrefix()
	return db, newInstance(t, db, redisStore(t, addr), prefix), newInstance(t, db, redisStore(t, addr), prefix)
}

// TestAccountRevocationsVisibleElsewhere: every way of revoking tokens in
// bulk (a password change, logging out everywhere, deleting the account)
// reaches a token lookup cached on another instance within the
// invalidation lag, and keeps the tokens it must keep.
func TestAccountRevocationsVisibleElsewhere(t *testing.T) {
	t.Parallel()
	db, a, b := twoInstances(t)
	for _, tc := range []struct {
		name     string
		revoke   func(ctx context.Context, u journal.User, keep journal.Token) error
		keepLive bool
	}{
		{"ChangePassword", func(ctx context.Context, u journal.User, keep journal.Token) error {
			return a.ChangePassword(ctx, u.ID, u.PasswordHash, "new", keep.Hash, time.Now())
		}, true},
		{"RevokeTokens", func(ctx context.Context, u journal.User, _ journal.Token) error {
			_, err := a.RevokeTokens(ctx, u.ID, "", time.Now())
			return err
		}, false},
		{"RevokeTokenByID", func(ctx context.Context, u journal.User, keep journal.Token) error {
			ts, err := a.Tokens(ctx, u.ID, time.Now())
			for _, t := range ts {
				if err == nil && t.Hash != keep.Hash {
					err = a.RevokeTokenByID(ctx, u.ID, t.ID, time.Now())
				}
			}
			return err
		}, true},
		{"DeleteUser", func(ctx context.Context, u journal.User, _ journal.Token) error {
			return a.DeleteUser(ctx, u.ID, time.Now())
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxT(t)
			u := storetest.NewUser(t, db, "u"+testenv.RandomName(""))
			keep, other := newToken(t, db, u.ID), newToken(t, db, u.ID)
			for _, in := range []*instance{a, b} { // both cache both
				for _, tok := range []journal.Token{keep, other} {
					if got, err := in.TokenByHash(ctx, tok.Hash); err != nil || !got.Valid(time.Now()) {
						t.Fatalf("TokenByHash = %+v, %v", got, err)
					}
				}
			}
			if err := tc.revoke(ctx, u, keep); err != nil {
				t.Fatal(err)
			}
			refused := func(in *instance, hash string) bool {
				tok, err := in.TokenByHash(ctx, hash)
				return err != nil || !tok.Valid(time.Now())
			}
			if !refused(a, other.Hash) {
				t.Errorf("the revoking instance still accepts the revoked token")
			}
			lag := testenv.WaitFor(t, 3*time.Second, "revocation visible on B", func() bool { return refused(b, other.Hash) })
			if lag > lagBound {
				t.Errorf("revocation reached B after %v, want < 100ms (%v with margin)", lag, lagBound)
			}
			if got := !refused(b, keep.Hash); got != tc.keepLive {
				t.Errorf("the kept token is live on B: %v, want %v", got, tc.keepLive)
			}
		})
	}
}

// TestFilteredPagesCoherent: a search page cached on B is not served after a
// write on A that changes its result, and a deleted account's pages are not
// served to anyone.
func TestFilteredPagesCoherent(t *testing.T) {
	t.Parallel()
	db, a, b := twoInstances(t)
	ctx := ctxT(t)
	u := storetest.NewUser(t, db, "alice")
	create(t, a, u.ID, "rain in spain")
	f, _ := journal.ParseFilter("rain", "", "")
	req := journal.PageRequest{Limit: 10, Filter: f}
	search := func(in *instance) int {
		in.roundTrip(t, ctx)
		p, err := in.ListEntries(ctx, u.ID, req)
		if err != nil {
			t.Fatal(err)
		}
		return len(p.Entries)
	}
	if got := search(b); got != 1 {
		t.Fatalf("search on B = %d entries, want 1", got)
	}
	loads := b.db.pageLoads.Load()
	if got := search(b); got != 1 || b.db.pageLoads.Load() != loads {
		t.Fatalf("the search page on B was not served from the cache (%d entries)", got)
	}
	// An unfiltered page is another page.
	if p, _ := b.ListEntries(ctx, u.ID, journal.PageRequest{Limit: 10}); len(p.Entries) != 1 || b.db.pageLoads.Load() != loads+1 {
		t.Errorf("the unfiltered page was served from the search page's key")
	}
	create(t, a, u.ID, "more rain")
	if got := search(b); got != 2 {
		t.Errorf("search on B after a write on A = %d entries, want 2", got)
	}
	if err := a.DeleteUser(ctx, u.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := search(b); got != 0 {
		t.Errorf("search on B after the account was deleted on A = %d entries, want 0", got)
	}
}
