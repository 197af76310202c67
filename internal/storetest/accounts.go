package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/journalsvc/journal"
)

// newToken stores a token of userID created at at, living for ttl, and
// returns it as stored.
func newToken(tb testing.TB, s journal.Database, userID, name string, at time.Time, ttl time.Duration) journal.Token {
	tb.Helper()
	_, hash := journal.NewTokenSecret()
	t := journal.Token{Hash: hash, ID: journal.NewID(at), UserID: userID, Name: name,
		CreatedAt: journal.StoredTime(at), ExpiresAt: journal.StoredTime(at.Add(ttl))}
	if err := s.CreateToken(ctxT(tb), t); err != nil {
		tb.Fatalf("CreateToken = %v", err)
	}
	return t
}

// liveTokens returns the ids of the user's live tokens at now, as Tokens
// orders them.
func liveTokens(tb testing.TB, s journal.Database, userID string, now time.Time) []string {
	tb.Helper()
	ts, err := s.Tokens(ctxT(tb), userID, now)
	if err != nil {
		tb.Fatalf("Tokens = %v", err)
	}
	ids := []string{}
	for _, t := range ts {
		ids = append(ids, t.ID)
	}
	return ids
}

// tokenChanges returns the token hashes of the pending changes, drained.
func tokenChanges(tb testing.TB, s journal.Database) []string {
	tb.Helper()
	var out []string
	for _, c := range drain(tb, s, "") {
		if c.TokenHash != "" {
			out = append(out, c.TokenHash)
		}
	}
	slices.Sort(out)
	return out
}

func testTokenSessions(t *testing.T, s journal.Database) {
	ctx := ctxT(t)
	u, other := NewUser(t, s, "alice"), NewUser(t, s, "bob")
	now := base.Add(time.Hour)
	old := newToken(t, s, u.ID, "laptop", base, 24*time.Hour)
	mid := newToken(t, s, u.ID, "", base.Add(time.Minute), 24*time.Hour)
	cur := newToken(t, s, u.ID, "phone ☎", base.Add(2*time.Minute), 24*time.Hour)
	expired := newToken(t, s, u.ID, "old", base, 30*time.Minute)
	bobs := newToken(t, s, other.ID, "bob's", base, 24*time.Hour)
	drain(t, s, "")

	all, err := s.Tokens(ctx, u.ID, now)
	if err != nil {
		t.Fatalf("Tokens = %v", err)
	}
	if diff := cmp.Diff([]journal.Token{cur, mid, old}, all); diff != "" {
		t.Errorf("Tokens: live tokens newest first (-want +got):\n%s", diff)
	}
	if got := liveTokens(t, s, journal.NewID(base), now); len(got) != 0 {
		t.Errorf("Tokens(unknown user) = %v, want none", got)
	}

	// Revoke one by id: not another user's, not an expired one.
	for _, c := range []struct {
		user, id string
	}{{u.ID, bobs.ID}, {other.ID, old.ID}, {u.ID, expired.ID}, {u.ID, journal.NewID(base)}, {u.ID, "nope"}, {"nope", old.ID}} {
		if err := s.RevokeTokenByID(ctx, c.user, c.id, now); !errors.Is(err, journal.ErrNotFound) {
			t.Errorf("RevokeTokenByID(%s, %s) = %v, want ErrNotFound", c.user, c.id, err)
		}
	}
	if err := s.RevokeTokenByID(ctx, u.ID, old.ID, now); err != nil {
		t.Fatalf("RevokeTokenByID = %v", err)
	}
	if err := s.RevokeTokenByID(ctx, u.ID, old.ID, now); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("RevokeTokenByID twice = %v, want ErrNotFound", err)
	}
	if got, _ := s.TokenByHash(ctx, old.Hash); !got.Revoked {
		t.Errorf("TokenByHash after RevokeTokenByID: Revoked = false")
	}
	if diff := cmp.Diff([]string{old.Hash}, tokenChanges(t, s)); diff != "" {
		t.Errorf("changes of RevokeTokenByID (-want +got):\n%s", diff)
	}

	// Revoke all but the current one, then all.
	if n, err := s.RevokeTokens(ctx, u.ID, cur.Hash, now); err != nil || n != 1 {
		t.Fatalf("RevokeTokens(keep current) = %d, %v; want 1", n, err)
	}
	if diff := cmp.Diff([]string{cur.ID}, liveTokens(t, s, u.ID, now)); diff != "" {
		t.Errorf("live tokens after RevokeTokens(keep) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{mid.Hash}, tokenChanges(t, s)); diff != "" {
		t.Errorf("changes of RevokeTokens (-want +got):\n%s", diff)
	}
	if n, err := s.RevokeTokens(ctx, u.ID, "", now); err != nil || n != 1 {
		t.Fatalf("RevokeTokens(keep none) = %d, %v; want 1", n, err)
	}
	if got := liveTokens(t, s, u.ID, now); len(got) != 0 {
		t.Errorf("live tokens after RevokeTokens = %v, want none", got)
	}
	if diff := cmp.Diff([]string{cur.Hash}, tokenChanges(t, s)); diff != "" {
		t.Errorf("changes of RevokeTokens (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{bobs.ID}, liveTokens(t, s, other.ID, now)); diff != "" {
		t.Errorf("bob's tokens after alice's revocations (-want +got):\n%s", diff)
	}
}

// testManyTokens revokes more tokens at once than one statement inserts
// changes for.
func testManyTokens(t *testing.T, s journal.Database) {
	u := NewUser(t, s, "alice")
	var want []string
	for i := range 1203 {
		want = append(want, newToken(t, s, u.ID, "", base.Add(time.Duration(i)*time.Millisecond), time.Hour).Hash)
	}
	drain(t, s, "")
	if n, err := s.RevokeTokens(ctxT(t), u.ID, "", base); err != nil || n != len(want) {
		t.Fatalf("RevokeTokens = %d, %v; want %d", n, err, len(want))
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, tokenChanges(t, s)); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
}

func testChangePassword(t *testing.T, s journal.Database) {
	ctx := ctxT(t)
	u := NewUser(t, s, "alice")
	now := base.Add(time.Minute)
	keep := newToken(t, s, u.ID, "", base, time.Hour)
	other := newToken(t, s, u.ID, "", base, time.Hour)
	drain(t, s, "")

	if err := s.ChangePassword(ctx, u.ID, "not-the-hash", "new", keep.Hash, now); !errors.Is(err, journal.ErrPasswordMismatch) {
		t.Errorf("ChangePassword(wrong old hash) = %v, want ErrPasswordMismatch", err)
	}
	if got := liveTokens(t, s, u.ID, now); len(got) != 2 {
		t.Errorf("a refused change revoked tokens: live %v", got)
	}
	for _, id := range []string{journal.NewID(base), "nope"} {
		if err := s.ChangePassword(ctx, id, u.PasswordHash, "new", "", now); !errors.Is(err, journal.ErrNotFound) {
			t.Errorf("ChangePassword(%q) = %v, want ErrNotFound", id, err)
		}
	}
	if err := s.ChangePassword(ctx, u.ID, u.PasswordHash, "new-hash", keep.Hash, now); err != nil {
		t.Fatalf("ChangePassword = %v", err)
	}
	if got, _ := s.UserByID(ctx, u.ID); got.PasswordHash != "new-hash" {
		t.Errorf("password hash = %q, want new-hash", got.PasswordHash)
	}
	if diff := cmp.Diff([]string{keep.ID}, liveTokens(t, s, u.ID, now)); diff != "" {
		t.Errorf("live tokens after the change (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{other.Hash}, tokenChanges(t, s)); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	if err := s.ChangePassword(ctx, u.ID, u.PasswordHash, "newer", keep.Hash, now); !errors.Is(err, journal.ErrPasswordMismatch) {
		t.Errorf("ChangePassword with the replaced hash = %v, want ErrPasswordMismatch", err)
	}
}

func testDeleteUser(t *testing.T, s journal.Database) {
	ctx := ctxT(t)
	u, bob := NewUser(t, s, "alice"), NewUser(t, s, "bob")
	now := base.Add(time.Minute)
	tok := newToken(t, s, u.ID, "", base, time.Hour)
	newToken(t, s, u.ID, "", base, time.Second) // expired at now
	bobTok := newToken(t, s, bob.ID, "", base, time.Hour)
	e := NewEntry(t, s, u.ID, "alice's words", base)
	bobEntry := NewEntry(t, s, bob.ID, "bob's words", base)
	claim(t, s, u.ID, "k1", now)
	claim(t, s, bob.ID, "k1", now)
	drain(t, s, "")

	if err := s.DeleteUser(ctx, u.ID, now); err != nil {
		t.Fatalf("DeleteUser = %v", err)
	}
	if _, err := s.UserByID(ctx, u.ID); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("UserByID after DeleteUser = %v, want ErrNotFound", err)
	}
	if _, err := s.TokenByHash(ctx, tok.Hash); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("TokenByHash after DeleteUser = %v, want ErrNotFound", err)
	}
	if _, err := s.Entry(ctx, u.ID, e.ID); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("Entry after DeleteUser = %v, want ErrNotFound", err)
	}
	if p := search(t, s, u.ID, "words"); len(p) != 0 {
		t.Errorf("search after DeleteUser found %d entries", len(p))
	}
	changes := drain(t, s, "")
	wantChanges := []string{u.ID + "//" + tok.Hash, u.ID + "//"}
	if diff := cmp.Diff(wantChanges, changeKeys(changes)); diff != "" {
		t.Errorf("changes of DeleteUser (-want +got):\n%s", diff)
	}
	if err := s.DeleteUser(ctx, u.ID, now); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("DeleteUser twice = %v, want ErrNotFound", err)
	}

	// The name can be taken again; the new account has nothing of the old.
	again := NewUser(t, s, "alice")
	if p := search(t, s, again.ID, "words"); len(p) != 0 {
		t.Errorf("the new alice finds %d entries", len(p))
	}
	if _, ok := claim(t, s, again.ID, "k1", now); !ok {
		t.Errorf("the new alice cannot claim the old alice's idempotency key")
	}
	// Bob keeps everything.
	if _, err := s.Entry(ctx, bob.ID, bobEntry.ID); err != nil {
		t.Errorf("bob's entry = %v", err)
	}
	if got, err := s.TokenByHash(ctx, bobTok.Hash); err != nil || got.Revoked {
		t.Errorf("bob's token = %+v, %v", got, err)
	}
	if _, ok := claim(t, s, bob.ID, "k1", now); ok {
		t.Errorf("bob's idempotency record is gone")
	}
}

// claim claims key for userID at now for a minute with a fresh claim and
// fingerprint "fp".
func claim(tb testing.TB, s journal.Database, userID, key string, now time.Time) (journal.IdempotencyRecord, bool) {
	tb.Helper()
	rec := journal.IdempotencyRecord{UserID: userID, Key: key, Fingerprint: "fp", Claim: journal.NewID(now), ExpiresAt: now.Add(time.Minute)}
	got, ok, err := s.ClaimIdempotencyKey(ctxT(tb), rec, now)
	if err != nil {
		tb.Fatalf("ClaimIdempotencyKey(%s) = %v", key, err)
	}
	return got, ok
}

func testIdempotency(t *testing.T, s journal.Database) {
	ctx := ctxT(t)
	u := NewUser(t, s, "alice")
	now := journal.StoredTime(base)
	first := journal.IdempotencyRecord{UserID: u.ID, Key: `k "1"`, Fingerprint: "fp1", Claim: "c1", ExpiresAt: now.Add(time.Minute)}
	got, ok, err := s.ClaimIdempotencyKey(ctx, first, now)
	if err != nil || !ok || !cmp.Equal(got, first) {
		t.Fatalf("first claim = %+v, %v, %v; want the record, true", got, ok, err)
	}
	// A second claim sees the pending record.
	second := first
	second.Claim, second.Fingerprint = "c2", "fp2"
	got, ok, err = s.ClaimIdempotencyKey(ctx, second, now)
	if err != nil || ok || !cmp.Equal(got, first) {
		t.Errorf("claim of a pending key = %+v, %v, %v; want the pending record, false", got, ok, err)
	}
	// Another user's key of the same name is theirs.
	bob := NewUser(t, s, "bob")
	if _, ok := claim(t, s, bob.ID, first.Key, now); !ok {
		t.Errorf("bob cannot claim a key alice holds")
	}
	// Release: only the claim that holds it.
	if err := s.ReleaseIdempotencyKey(ctx, u.ID, first.Key, "c2"); err != nil {
		t.Fatal(err)
	}
	if _, ok := claim(t, s, u.ID, first.Key, now); ok {
		t.Errorf("another claim released alice's record")
	}
	if err := s.ReleaseIdempotencyKey(ctx, u.ID, first.Key, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err = s.ClaimIdempotencyKey(ctx, first, now); err != nil || !ok {
		t.Fatalf("claim after release = %v, %v", ok, err)
	}

	// Completing it stores the entry and the response together.
	resp := &journal.StoredResponse{Status: 201, Location: "/v1/entries/x", ETag: `"v1"`, Body: []byte(`{"a":1}` + "\n")}
	done := first
	done.Response, done.ExpiresAt = resp, now.Add(24*time.Hour)
	e := journal.Entry{ID: journal.NewID(now), UserID: u.ID, Title: "once", CreatedAt: now, UpdatedAt: now}
	created, err := s.CreateEntryIdempotent(ctx, e, done)
	if err != nil {
		t.Fatalf("CreateEntryIdempotent = %v", err)
	}
	if got, err := s.Entry(ctx, u.ID, e.ID); err != nil || !cmp.Equal(got, created) {
		t.Errorf("Entry = %+v, %v; want %+v", got, err, created)
	}
	if diff := cmp.Diff([]string{u.ID + "/" + e.ID + "/"}, changeKeys(drain(t, s, ""))); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	got, ok, err = s.ClaimIdempotencyKey(ctx, second, now.Add(time.Hour))
	if err != nil || ok || !cmp.Equal(got, done) {
		t.Errorf("claim of a completed key = %+v, %v, %v; want %+v, false", got, ok, err, done)
	}
	if err := s.ReleaseIdempotencyKey(ctx, u.ID, first.Key, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := claim(t, s, u.ID, first.Key, now); ok {
		t.Errorf("release deleted a completed record")
	}
	// Completing twice, or with a claim that does not hold it: nothing stored.
	e2 := journal.Entry{ID: journal.NewID(now), UserID: u.ID, Title: "twice", CreatedAt: now, UpdatedAt: now}
	for _, c := range []string{"c1", "c2"} {
		d := done
		d.Claim = c
		if _, err := s.CreateEntryIdempotent(ctx, e2, d); !errors.Is(err, journal.ErrClaimLost) {
			t.Errorf("CreateEntryIdempotent(claim %s of a completed record) = %v, want ErrClaimLost", c, err)
		}
	}
	if _, err := s.Entry(ctx, u.ID, e2.ID); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("an entry was stored without its record: %v", err)
	}
	// Once expired, the key is free again.
	later := done.ExpiresAt
	taken := second
	taken.ExpiresAt = later.Add(time.Minute)
	got, ok, err = s.ClaimIdempotencyKey(ctx, taken, later)
	if err != nil || !ok || !cmp.Equal(got, taken) {
		t.Errorf("claim of an expired record = %+v, %v, %v; want the new record, true", got, ok, err)
	}
	// The old claim lost it.
	pending := first
	pending.Response = resp
	if _, err := s.CreateEntryIdempotent(ctx, e2, pending); !errors.Is(err, journal.ErrClaimLost) {
		t.Errorf("CreateEntryIdempotent with a claim taken over = %v, want ErrClaimLost", err)
	}
	// A missing user cannot claim.
	ghost := first
	ghost.UserID = journal.NewID(now)
	if _, _, err := s.ClaimIdempotencyKey(ctx, ghost, now); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("claim of a missing user = %v, want ErrNotFound", err)
	}
}

// testIdempotencyConcurrent: of many concurrent claims of one key exactly
// one wins, and the others see its record.
func testIdempotencyConcurrent(t *testing.T, s journal.Database) {
	u := NewUser(t, s, "alice")
	now := journal.StoredTime(base)
	const n = 16
	var mu sync.Mutex
	wins, seen := 0, map[string]bool{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			rec := journal.IdempotencyRecord{UserID: u.ID, Key: "k", Fingerprint: fmt.Sprint(i), Claim: fmt.Sprint("c", i), ExpiresAt: now.Add(time.Minute)}
			got, ok, err := s.ClaimIdempotencyKey(context.Background(), rec, now)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("ClaimIdempotencyKey = %v", err)
				return
			}
			if ok {
				wins++
			}
			seen[got.Claim] = true
		})
	}
	close(start)
	wg.Wait()
	if wins != 1 || len(seen) != 1 {
		t.Errorf("%d of %d concurrent claims won, and they saw the claims %v; want one winner whose claim all see", wins, n, seen)
	}
}

func testPurge(t *testing.T, s journal.Database) {
	ctx := ctxT(t)
	u := NewUser(t, s, "alice")
	now := base.Add(time.Hour)
	live := newToken(t, s, u.ID, "", base, 2*time.Hour)
	var dead []journal.Token
	for i := range 5 {
		dead = append(dead, newToken(t, s, u.ID, "", base, time.Duration(i)*time.Minute)) // expired at now
	}
	for range 3 {
		tok := newToken(t, s, u.ID, "", base, 2*time.Hour)
		if err := s.RevokeToken(ctx, tok.Hash); err != nil {
			t.Fatal(err)
		}
		dead = append(dead, tok)
	}
	for i := range 4 {
		rec := journal.IdempotencyRecord{UserID: u.ID, Key: fmt.Sprint("old", i), Fingerprint: "f", Claim: "c", ExpiresAt: now.Add(-time.Second)}
		if _, ok, err := s.ClaimIdempotencyKey(ctx, rec, base); err != nil || !ok {
			t.Fatalf("claim = %v, %v", ok, err)
		}
	}
	claim(t, s, u.ID, "fresh", now)

	total := 0
	for {
		n, err := s.Purge(ctx, now, 3)
		if err != nil {
			t.Fatalf("Purge = %v", err)
		}
		if n > 6 {
			t.Errorf("Purge(limit 3) deleted %d rows, want at most 3 tokens and 3 records", n)
		}
		if n == 0 {
			break
		}
		total += n
	}
	if want := len(dead) + 4; total != want {
		t.Errorf("purged %d rows, want %d", total, want)
	}
	for _, tok := range dead {
		if _, err := s.TokenByHash(ctx, tok.Hash); !errors.Is(err, journal.ErrNotFound) {
			t.Errorf("dead token still there: %v", err)
		}
	}
	if _, err := s.TokenByHash(ctx, live.Hash); err != nil {
		t.Errorf("live token purged: %v", err)
	}
	if _, ok := claim(t, s, u.ID, "fresh", now); ok {
		t.Errorf("a live idempotency record was purged")
	}
}
