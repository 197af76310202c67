// Package storetest is the conformance suite every [journal.Database]
// implementation passes. A store package calls [Run] from its tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) journal.Database { return openTestStore(t) })
//	}
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/journalsvc/journal"
)

// Run runs the conformance suite. open must return a store on a fresh, empty
// database (migrated), closed by the caller's cleanup; it is called once per
// subtest, and subtests run in parallel.
func Run(t *testing.T, open func(t *testing.T) journal.Database) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s journal.Database)
	}{
		{"Users", testUsers},
		{"Tokens", testTokens},
		{"EntryCRUD", testEntryCRUD},
		{"EntryMalformedIDs", testEntryMalformedIDs},
		{"EntryText", testEntryText},
		{"Isolation", testIsolation},
		{"ConditionalWrites", testConditionalWrites},
		{"TimesRoundTrip", testTimesRoundTrip},
		{"Pagination", testPagination},
		{"PaginationTies", testPaginationTies},
		{"PaginationLimits", testPaginationLimits},
		{"PaginationConcurrentInserts", testPaginationConcurrentInserts},
		{"ConcurrentWriters", testConcurrentWriters},
		{"OutboxRecordsWrites", testOutboxRecordsWrites},
		{"ApplyChanges", testApplyChanges},
		{"ApplyChangesUserFilter", testApplyChangesUserFilter},
		{"ApplyChangesConcurrent", testApplyChangesConcurrent},
		{"Ping", testPing},
		{"TokenSessions", testTokenSessions},
		{"ManyTokens", testManyTokens},
		{"ChangePassword", testChangePassword},
		{"DeleteUser", testDeleteUser},
		{"Idempotency", testIdempotency},
		{"IdempotencyConcurrent", testIdempotencyConcurrent},
		{"Purge", testPurge},
		{"Search", testSearch},
		{"SearchAfterUpdate", testSearchAfterUpdate},
		{"SearchManyWords", testSearchManyWords},
		{"Export", testExport},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

// base is an arbitrary fixed instant with sub-microsecond digits and a
// non-UTC zone, so stores must truncate and convert.
var base = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("X", 2*3600))

func ctxT(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// NewUser creates and returns a user named name with a fresh id, failing
// the test if s cannot. Store packages use it in their own tests too.
func NewUser(tb testing.TB, s journal.UserStore, name string) journal.User {
	tb.Helper()
	u := journal.User{ID: journal.NewID(base), Username: name, PasswordHash: "hash-of-" + name, CreatedAt: journal.StoredTime(base)}
	if err := s.CreateUser(ctxT(tb), u); err != nil {
		tb.Fatalf("CreateUser(%q) = %v", name, err)
	}
	return u
}

// NewEntry creates an entry of userID titled title, with the body "body of"
// title, created at at, failing the test if s cannot.
func NewEntry(tb testing.TB, s journal.EntryStore, userID, title string, at time.Time) journal.Entry {
	tb.Helper()
	e, err := s.CreateEntry(ctxT(tb), journal.Entry{
		ID: journal.NewID(at), UserID: userID, Title: title, Body: "body of " + title, CreatedAt: at, UpdatedAt: at,
	})
	if err != nil {
		tb.Fatalf("CreateEntry(%q) = %v", title, err)
	}
	return e
}

func ptr(s string) *string { return &s }

// drain applies every pending change and returns them.
func drain(tb testing.TB, s journal.Database, userID string) []journal.Change {
	tb.Helper()
	var all []journal.Change
	for {
		n, err := s.ApplyChanges(ctxT(tb), userID, 100, func(_ context.Context, cs []journal.Change) error {
			all = append(all, cs...)
			return nil
		})
		if err != nil {
			tb.Fatalf("ApplyChanges(%q) = %v", userID, err)
		}
		if n == 0 {
			return all
		}
	}
}

func pending(tb testing.TB, s journal.Database) int64 {
	tb.Helper()
	n, err := s.PendingChanges(ctxT(tb))
	if err != nil {
		tb.Fatalf("PendingChanges = %v", err)
	}
	return n
}

// wantStored checks that s holds want, read back with Entry as its user;
// when says when, for messages.
func wantStored(tb testing.TB, s journal.Database, want journal.Entry, when string) {
	tb.Helper()
	got, err := s.Entry(ctxT(tb), want.UserID, want.ID)
	if err != nil {
		tb.Fatalf("Entry %s = %v", when, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		tb.Errorf("Entry %s mismatch (-want +got):\n%s", when, diff)
	}
}

// changeKeys renders changes without their sequence numbers for comparison.
func changeKeys(cs []journal.Change) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.UserID + "/" + c.EntryID + "/" + c.TokenHash
	}
	return out
}

func testPing(t *testing.T, s journal.Database) {
	if err := s.Ping(ctxT(t)); err != nil {
		t.Fatalf("Ping = %v", err)
	}
}

func testUsers(t *testing.T, s journal.Database) {
	ctx := ctxT(t)
	u := NewUser(t, s, "alice")

	got, err := s.UserByUsername(ctx, "alice")
	if err != nil {
		t.Fatalf("UserByUsername = %v", err)
	}
	if diff := cmp.Diff(u, got); diff != "" {
		t.Errorf("UserByUsername mismatch (-want +got):\n%s", diff)
	}
	got, err = s.UserByID(ctx, u.ID)
	if err != nil {
		t.Fatalf("UserByID = %v", err)
	}
	if diff := cmp.Diff(u, got); diff != "" {
		t.Errorf("UserByID mismatch (-want +got):\n%s", diff)
	}
	if got.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt location = %v, want UTC", got.CreatedAt.Location())
	}

	dup := journal.User{ID: journal.NewID(base), Username: "alice", PasswordHash: "x", CreatedAt: base}
	if err := s.CreateUser(ctx, dup); !errors.Is(err, journal.ErrUsernameTaken) {
		t.Errorf("CreateUser(duplicate username) = %v, want ErrUsernameTaken", err)
	}
	if _, err := s.UserByID(ctx, dup.ID); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("UserByID(rejected duplicate) = %v, want ErrNotFound", err)
	}
	if _, err := s.UserByUsername(ctx, "bob"); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("UserByUsername(missing) = %v, want ErrNotFound", err)
	}
	for _, id := range []string{journal.NewID(base), "", "nope", strings.ToUpper(u.ID), u.ID + "0", "'; DROP TABLE users; --"} {
		if _, err := s.UserByID(ctx, id); !errors.Is(err, journal.ErrNotFound) {
			t.Errorf("UserByID(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

func testTokens(t *testing.T, s journal.Database) {
	ctx := ctxT(t)
	u := NewUser(t, s, "alice")
	_, hash := journal.NewTokenSecret()
	tok := journal.Token{Hash: hash, ID: journal.NewID(base), UserID: u.ID, Name: "laptop", CreatedAt: base, ExpiresAt: base.Add(time.Hour)}
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatalf("CreateToken = %v", err)
	}
	want := tok
	want.CreatedAt, want.ExpiresAt = journal.StoredTime(tok.CreatedAt), journal.StoredTime(tok.ExpiresAt)
	got, err := s.TokenByHash(ctx, hash)
	if err != nil {
		t.Fatalf("TokenByHash = %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("TokenByHash mismatch (-want +got):\n%s", diff)
	}
	if _, err := s.TokenByHash(ctx, journal.HashToken("other")); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("TokenByHash(unknown) = %v, want ErrNotFound", err)
	}
	if got, want := pending(t, s), int64(0); got != want {
		t.Errorf("PendingChanges before revoke = %d, want %d", got, want)
	}

	if err := s.RevokeToken(ctx, hash); err != nil {
		t.Fatalf("RevokeToken = %v", err)
	}
	got, err = s.TokenByHash(ctx, hash)
	if err != nil {
		t.Fatalf("TokenByHash(revoked) = %v", err)
	}
	want.Revoked = true
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("TokenByHash(revoked) mismatch (-want +got):\n%s", diff)
	}
	if got.Valid(base) {
		t.Errorf("revoked token Valid = true")
	}
	if err := s.RevokeToken(ctx, hash); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("RevokeToken(again) = %v, want ErrNotFound", err)
	}
	if err := s.RevokeToken(ctx, journal.HashToken("other")); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("RevokeToken(unknown) = %v, want ErrNotFound", err)
	}
	changes := drain(t, s, "")
	if diff := cmp.Diff([]string{u.ID + "//" + hash}, changeKeys(changes)); diff != "" {
		t.Errorf("outbox after revoke (-want +got):\n%s", diff)
	}

	// A token may be stored revoked; its user must exist.
	_, hash = journal.NewTokenSecret()
	revoked := journal.Token{Hash: hash, ID: journal.NewID(base), UserID: u.ID, CreatedAt: base, ExpiresAt: base.Add(time.Hour), Revoked: true}
	if err := s.CreateToken(ctx, revoked); err != nil {
		t.Fatalf("CreateToken(revoked) = %v", err)
	}
	if got, err := s.TokenByHash(ctx, hash); err != nil || !got.Revoked {
		t.Errorf("TokenByHash(created revoked) = %+v, %v; want a revoked token", got, err)
	}
	_, hash = journal.NewTokenSecret()
	orphan := journal.Token{Hash: hash, ID: journal.NewID(base), UserID: journal.NewID(base), CreatedAt: base, ExpiresAt: base.Add(time.Hour)}
	if err := s.CreateToken(ctx, orphan); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("CreateToken(unknown user) = %v, want ErrNotFound", err)
	}
}

func testEntryCRUD(t *testing.T, s journal.Database) {
	ctx := ctxT(t)
	u := NewUser(t, s, "alice")
	in := journal.Entry{ID: journal.NewID(base), UserID: u.ID, Title: "Hello", Body: "World ✓", CreatedAt: base, UpdatedAt: base, Version: 42}
	created, err := s.CreateEntry(ctx, in)
	if err != nil {
		t.Fatalf("CreateEntry = %v", err)
	}
	want := in
	want.Version = 1
	want.CreatedAt, want.UpdatedAt = journal.StoredTime(base), journal.StoredTime(base)
	if diff := cmp.Diff(want, created); diff != "" {
		t.Errorf("CreateEntry mismatch (-want +got):\n%s", diff)
	}
	wantStored(t, s, created, "after CreateEntry")

	steps := []struct {
		patch     journal.EntryPatch
		wantTitle string
		wantBody  string
	}{
		{journal.EntryPatch{Title: ptr("Title 2")}, "Title 2", "World ✓"},
		{journal.EntryPatch{Body: ptr("")}, "Title 2", ""},
		{journal.EntryPatch{Title: ptr("T3"), Body: ptr("B3")}, "T3", "B3"},
	}
	for i, st := range steps {
		now := base.Add(time.Duration(i+1) * time.Minute)
		up, err := s.UpdateEntry(ctx, u.ID, in.ID, st.patch, journal.AnyVersion, now)
		if err != nil {
			t.Fatalf("UpdateEntry step %d = %v", i, err)
		}
		want := journal.Entry{ID: in.ID, UserID: u.ID, Title: st.wantTitle, Body: st.wantBody, Version: int64(i + 2),
			CreatedAt: journal.StoredTime(base), UpdatedAt: journal.StoredTime(now)}
		if diff := cmp.Diff(want, up); diff != "" {
			t.Errorf("UpdateEntry step %d mismatch (-want +got):\n%s", i, diff)
		}
		wantStored(t, s, want, fmt.Sprintf("after step %d", i))
	}

	if err := s.DeleteEntry(ctx, u.ID, in.ID, journal.AnyVersion); err != nil {
		t.Fatalf("DeleteEntry = %v", err)
	}
	if _, err := s.Entry(ctx, u.ID, in.ID); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("Entry(deleted) = %v, want ErrNotFound", err)
	}
	if err := s.DeleteEntry(ctx, u.ID, in.ID, journal.AnyVersion); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("DeleteEntry(deleted) = %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateEntry(ctx, u.ID, in.ID, steps[0].patch, journal.AnyVersion, base); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("UpdateEntry(deleted) = %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateEntry(ctx, u.ID, in.ID, steps[0].patch, 4, base); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("UpdateEntry(deleted, ifVersion) = %v, want ErrNotFound", err)
	}
	page, err := s.ListEntries(ctx, u.ID, journal.PageRequest{Limit: 10})
	if err != nil || len(page.Entries) != 0 || page.Next != nil {
		t.Errorf("ListEntries after delete = %+v, %v; want empty page", page, err)
	}

	// A duplicate id is an error and writes nothing.
	e2 := NewEntry(t, s, u.ID, "second", base)
	before := pending(t, s)
	dup := e2
	dup.Title = "dup"
	if _, err := s.CreateEntry(ctx, dup); err == nil {
		t.Errorf("CreateEntry(duplicate id) = nil error")
	}
	if got, _ := s.Entry(ctx, u.ID, e2.ID); got.Title != "second" {
		t.Errorf("after duplicate create, title = %q, want %q", got.Title, "second")
	}
	if got := pending(t, s); got != before {
		t.Errorf("PendingChanges after failed create = %d, want %d", got, before)
	}
}

// testEntryText stores the texts both databases must keep byte for byte (tab,
// LF, CR, 4-byte UTF-8, the maximum sizes) and refuses, with a
// *journal.ValidationError naming the field and writing nothing, the ones
// they must not store: control characters (NUL, which PostgreSQL cannot hold
// in text, other C0, DEL, C1), invalid UTF-8 and sizes over the limits.
func testEntryText(t *testing.T, s journal.Database) {
	ctx := ctxT(t)
	u := NewUser(t, s, "alice")
	const emoji = "\U0001F600" // 4 bytes in UTF-8
	maxTitle := strings.Repeat(emoji, journal.MaxTitleChars)
	maxBody := strings.Repeat(emoji, journal.MaxBodyBytes/4)
	for _, tc := range []struct {
		name, title, body string
	}{
		{"tab LF CR", "a\tb", "line 1\r\nline 2\n\tindented"},
		{"4-byte UTF-8", "smile " + emoji, emoji + " 𝄞 𠜎"},
		{"maximum sizes", maxTitle, maxBody},
		{"maximum body of ASCII", "t", strings.Repeat("x", journal.MaxBodyBytes)},
		{"U+00A0 and U+FFFD", "no\u00a0break", "replacement \ufffd"},
	} {
		e, err := s.CreateEntry(ctx, journal.Entry{ID: journal.NewID(base), UserID: u.ID, Title: tc.title, Body: tc.body, CreatedAt: base, UpdatedAt: base})
		if err != nil {
			t.Errorf("%s: CreateEntry = %v", tc.name, err)
			continue
		}
		got, err := s.Entry(ctx, u.ID, e.ID)
		if err != nil || got.Title != tc.title || got.Body != tc.body {
			t.Errorf("%s: Entry = title %q body %.40q, %v; want them stored byte for byte", tc.name, got.Title, got.Body, err)
		}
		// The same texts through an update.
		up, err := s.UpdateEntry(ctx, u.ID, e.ID, journal.EntryPatch{Title: ptr(tc.title), Body: ptr(tc.body)}, journal.AnyVersion, base)
		if err != nil || up.Title != tc.title || up.Body != tc.body {
			t.Errorf("%s: UpdateEntry = title %q body %.40q, %v; want them stored byte for byte", tc.name, up.Title, up.Body, err)
		}
	}

	existing := NewEntry(t, s, u.ID, "unchanged", base)
	type bad struct {
		name, text string
	}
	bads := []bad{
		{"NUL", "a\x00b"},
		{"NUL alone", "\x00"},
		{"U+0001", "a\x01"},
		{"ESC", "\x1b[31mred"},
		{"U+001F", "\x1f"},
		{"DEL", "a\x7f"},
		{"C1 U+0085", "a\u0085"},
		{"C1 CSI U+009B", "\u009b31m"},
		{"invalid UTF-8", "a\xffb"},
	}
	for c := rune(0); c < 0x20; c++ {
		if c != '\t' && c != '\n' && c != '\r' {
			bads = append(bads, bad{fmt.Sprintf("%U", c), "x" + string(c) + "y"})
		}
	}
	refused := func(what, field string, err error) {
		t.Helper()
		var ve *journal.ValidationError
		if !errors.As(err, &ve) || len(ve.Errors) != 1 || ve.Errors[0].Field != field {
			t.Errorf("%s = %v, want a *journal.ValidationError for %q alone", what, err, field)
		}
	}
	before := pending(t, s)
	for _, b := range bads {
		_, err := s.CreateEntry(ctx, journal.Entry{ID: journal.NewID(base), UserID: u.ID, Title: "t" + b.text, Body: "b", CreatedAt: base, UpdatedAt: base})
		refused("CreateEntry(title "+b.name+")", "title", err)
		_, err = s.CreateEntry(ctx, journal.Entry{ID: journal.NewID(base), UserID: u.ID, Title: "t", Body: b.text, CreatedAt: base, UpdatedAt: base})
		refused("CreateEntry(body "+b.name+")", "body", err)
		_, err = s.UpdateEntry(ctx, u.ID, existing.ID, journal.EntryPatch{Title: ptr(b.text)}, journal.AnyVersion, base)
		refused("UpdateEntry(title "+b.name+")", "title", err)
		_, err = s.UpdateEntry(ctx, u.ID, existing.ID, journal.EntryPatch{Body: ptr(b.text)}, journal.AnyVersion, base)
		refused("UpdateEntry(body "+b.name+")", "body", err)
	}
	// Over the limits, by one character or one byte.
	_, err := s.CreateEntry(ctx, journal.Entry{ID: journal.NewID(base), UserID: u.ID, Title: maxTitle + "x", CreatedAt: base, UpdatedAt: base})
	refused("CreateEntry(201 characters)", "title", err)
	_, err = s.CreateEntry(ctx, journal.Entry{ID: journal.NewID(base), UserID: u.ID, Title: "t", Body: maxBody + "x", CreatedAt: base, UpdatedAt: base})
	refused("CreateEntry(65,537 bytes)", "body", err)
	_, err = s.UpdateEntry(ctx, u.ID, existing.ID, journal.EntryPatch{Title: ptr("")}, journal.AnyVersion, base)
	refused("UpdateEntry(empty title)", "title", err)

	if got, err := s.Entry(ctx, u.ID, existing.ID); err != nil || got != existing {
		t.Errorf("after refused updates, Entry = %+v, %v; want it unchanged: %+v", got, err, existing)
	}
	if got := pending(t, s); got != before {
		t.Errorf("PendingChanges after refused writes = %d, want %d (nothing written)", got, before)
	}
	page, err := s.ListEntries(ctx, u.ID, journal.PageRequest{Limit: journal.MaxPageLimit})
	if want := 5 + 1; err != nil || len(page.Entries) != want {
		t.Errorf("ListEntries = %d entries, %v; want %d (no refused create stored)", len(page.Entries), err, want)
	}
}

func testEntryMalformedIDs(t *testing.T, s journal.Database) {
	ctx := ctxT(t)
	u := NewUser(t, s, "alice")
	e := NewEntry(t, s, u.ID, "one", base)
	for _, id := range []string{"", "x", strings.ToUpper(e.ID), e.ID[:35], e.ID + "a", strings.Replace(e.ID, "-", "_", 1), "' OR 1=1 --"} {
		if _, err := s.Entry(ctx, u.ID, id); !errors.Is(err, journal.ErrNotFound) {
			t.Errorf("Entry(%q) = %v, want ErrNotFound", id, err)
		}
		if _, err := s.UpdateEntry(ctx, u.ID, id, journal.EntryPatch{Title: ptr("t")}, 0, base); !errors.Is(err, journal.ErrNotFound) {
			t.Errorf("UpdateEntry(%q) = %v, want ErrNotFound", id, err)
		}
		if err := s.DeleteEntry(ctx, u.ID, id, 0); !errors.Is(err, journal.ErrNotFound) {
			t.Errorf("DeleteEntry(%q) = %v, want ErrNotFound", id, err)
		}
		if _, err := s.Entry(ctx, id, e.ID); !errors.Is(err, journal.ErrNotFound) {
			t.Errorf("Entry(user %q) = %v, want ErrNotFound", id, err)
		}
	}
	if _, err := s.Entry(ctx, u.ID, journal.NewID(base)); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("Entry(unknown id) = %v, want ErrNotFound", err)
	}
	// An entry of an unknown user cannot be created.
	ghost := journal.Entry{ID: journal.NewID(base), UserID: journal.NewID(base), Title: "t", CreatedAt: base, UpdatedAt: base}
	if _, err := s.CreateEntry(ctx, ghost); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("CreateEntry(unknown user) = %v, want ErrNotFound", err)
	}
}

func testIsolation(t *testing.T, s journal.Database) {
	ctx := ctxT(t)
	alice := NewUser(t, s, "alice")
	bob := NewUser(t, s, "bob")
	ea := NewEntry(t, s, alice.ID, "alice's", base)
	eb := NewEntry(t, s, bob.ID, "bob's", base.Add(time.Second))
	drain(t, s, "")

	if _, err := s.Entry(ctx, bob.ID, ea.ID); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("bob Entry(alice's) = %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateEntry(ctx, bob.ID, ea.ID, journal.EntryPatch{Title: ptr("pwned")}, journal.AnyVersion, base); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("bob UpdateEntry(alice's) = %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateEntry(ctx, bob.ID, ea.ID, journal.EntryPatch{Title: ptr("pwned")}, 1, base); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("bob UpdateEntry(alice's, version 1) = %v, want ErrNotFound", err)
	}
	if err := s.DeleteEntry(ctx, bob.ID, ea.ID, journal.AnyVersion); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("bob DeleteEntry(alice's) = %v, want ErrNotFound", err)
	}
	if err := s.DeleteEntry(ctx, bob.ID, ea.ID, 2); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("bob DeleteEntry(alice's, version 2) = %v, want ErrNotFound", err)
	}
	wantStored(t, s, ea, "alice's, after bob's writes")
	for _, u := range []journal.User{alice, bob} {
		page, err := s.ListEntries(ctx, u.ID, journal.PageRequest{Limit: 10})
		if err != nil {
			t.Fatalf("ListEntries(%s) = %v", u.Username, err)
		}
		want := ea
		if u.ID == bob.ID {
			want = eb
		}
		if diff := cmp.Diff([]journal.Entry{want}, page.Entries); diff != "" {
			t.Errorf("ListEntries(%s) mismatch (-want +got):\n%s", u.Username, diff)
		}
	}
	if got := pending(t, s); got != 0 {
		t.Errorf("PendingChanges after rejected writes = %d, want 0", got)
	}
}

func testConditionalWrites(t *testing.T, s journal.Database) {
	ctx := ctxT(t)
	u := NewUser(t, s, "alice")
	e := NewEntry(t, s, u.ID, "v1", base)
	up, err := s.UpdateEntry(ctx, u.ID, e.ID, journal.EntryPatch{Title: ptr("v2")}, 1, base.Add(time.Second))
	if err != nil {
		t.Fatalf("UpdateEntry(ifVersion 1) = %v", err)
	}
	if got, want := up.Version, int64(2); got != want {
		t.Errorf("version after update = %d, want %d", got, want)
	}
	drain(t, s, "")

	for _, v := range []int64{1, 3, 100, -1, 1 << 40, math.MaxInt64} {
		if _, err := s.UpdateEntry(ctx, u.ID, e.ID, journal.EntryPatch{Title: ptr("lost")}, v, base.Add(time.Hour)); !errors.Is(err, journal.ErrVersionMismatch) {
			t.Errorf("UpdateEntry(ifVersion %d) = %v, want ErrVersionMismatch", v, err)
		}
		if err := s.DeleteEntry(ctx, u.ID, e.ID, v); !errors.Is(err, journal.ErrVersionMismatch) {
			t.Errorf("DeleteEntry(ifVersion %d) = %v, want ErrVersionMismatch", v, err)
		}
	}
	got, err := s.Entry(ctx, u.ID, e.ID)
	if err != nil {
		t.Fatalf("Entry = %v", err)
	}
	if diff := cmp.Diff(up, got); diff != "" {
		t.Errorf("entry changed by mismatched writes (-want +got):\n%s", diff)
	}
	if got := pending(t, s); got != 0 {
		t.Errorf("PendingChanges after mismatched writes = %d, want 0", got)
	}
	if err := s.DeleteEntry(ctx, u.ID, e.ID, 2); err != nil {
		t.Fatalf("DeleteEntry(ifVersion 2) = %v", err)
	}
	if _, err := s.Entry(ctx, u.ID, e.ID); !errors.Is(err, journal.ErrNotFound) {
		t.Errorf("Entry after conditional delete = %v, want ErrNotFound", err)
	}

	// Concurrent conditional updates of one version: exactly one wins.
	e = NewEntry(t, s, u.ID, "race", base)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := s.UpdateEntry(ctx, u.ID, e.ID, journal.EntryPatch{Title: ptr(fmt.Sprint("w", i))}, 1, base)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	wins := 0
	for err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, journal.ErrVersionMismatch):
			t.Errorf("concurrent UpdateEntry = %v, want nil or ErrVersionMismatch", err)
		}
	}
	if wins != 1 {
		t.Errorf("concurrent conditional updates: %d won, want 1", wins)
	}
	if got, _ := s.Entry(ctx, u.ID, e.ID); got.Version != 2 {
		t.Errorf("version after race = %d, want 2", got.Version)
	}
}

func testTimesRoundTrip(t *testing.T, s journal.Database) {
	ctx := ctxT(t)
	u := NewUser(t, s, "alice")
	times := []time.Time{
		base,
		time.Date(2000, 1, 1, 0, 0, 0, 999, time.UTC),
		time.Date(2099, 12, 31, 23, 59, 59, 999999999, time.FixedZone("W", -7*3600)),
		time.Unix(0, 1000),
		time.Now(), // carries a monotonic reading
	}
	for _, at := range times {
		created, err := s.CreateEntry(ctx, journal.Entry{ID: journal.NewID(at), UserID: u.ID, Title: "t", CreatedAt: at, UpdatedAt: at.Add(time.Nanosecond)})
		if err != nil {
			t.Fatalf("CreateEntry(%v) = %v", at, err)
		}
		want := journal.StoredTime(at)
		if !created.CreatedAt.Equal(want) || created.CreatedAt != want {
			t.Errorf("CreateEntry(%v).CreatedAt = %v, want %v (UTC, microseconds)", at, created.CreatedAt, want)
		}
		got, err := s.Entry(ctx, u.ID, created.ID)
		if err != nil {
			t.Fatalf("Entry = %v", err)
		}
		if got.CreatedAt != created.CreatedAt || got.UpdatedAt != created.UpdatedAt {
			t.Errorf("Entry times = %v, %v; created returned %v, %v", got.CreatedAt, got.UpdatedAt, created.CreatedAt, created.UpdatedAt)
		}
		if got.CreatedAt.Location() != time.UTC || got.UpdatedAt.Location() != time.UTC {
			t.Errorf("Entry time locations = %v, %v; want UTC", got.CreatedAt.Location(), got.UpdatedAt.Location())
		}
		upAt := at.Add(1500 * time.Nanosecond)
		up, err := s.UpdateEntry(ctx, u.ID, created.ID, journal.EntryPatch{Body: ptr("b")}, 0, upAt)
		if err != nil {
			t.Fatalf("UpdateEntry = %v", err)
		}
		if want := journal.StoredTime(upAt); up.UpdatedAt != want {
			t.Errorf("UpdateEntry.UpdatedAt = %v, want %v", up.UpdatedAt, want)
		}
		if got, _ := s.Entry(ctx, u.ID, created.ID); got.UpdatedAt != up.UpdatedAt {
			t.Errorf("Entry.UpdatedAt = %v, update returned %v", got.UpdatedAt, up.UpdatedAt)
		}
	}
}

// listAll pages through every entry of userID with the given page size and
// returns the pages.
func listAll(tb testing.TB, s journal.Database, userID string, limit int) [][]journal.Entry {
	tb.Helper()
	var pages [][]journal.Entry
	req := journal.PageRequest{Limit: limit}
	for {
		page, err := s.ListEntries(ctxT(tb), userID, req)
		if err != nil {
			tb.Fatalf("ListEntries(%+v) = %v", req, err)
		}
		pages = append(pages, page.Entries)
		if page.Next == nil {
			return pages
		}
		if len(pages) > 1000 {
			tb.Fatalf("ListEntries: more than 1000 pages")
		}
		// The cursor goes through its wire form, as it does over HTTP.
		c, err := journal.DecodeCursor(page.Next.Encode())
		if err != nil {
			tb.Fatalf("DecodeCursor(Next.Encode()) = %v", err)
		}
		req.After = &c
	}
}

func flatten(pages [][]journal.Entry) []journal.Entry {
	var out []journal.Entry
	for _, p := range pages {
		out = append(out, p...)
	}
	return out
}

// newestFirst sorts entries as ListEntries returns them.
func newestFirst(es []journal.Entry) {
	sort.Slice(es, func(i, j int) bool {
		if !es[i].CreatedAt.Equal(es[j].CreatedAt) {
			return es[i].CreatedAt.After(es[j].CreatedAt)
		}
		return es[i].ID > es[j].ID
	})
}

func testPagination(t *testing.T, s journal.Database) {
	u := NewUser(t, s, "alice")
	other := NewUser(t, s, "bob")
	var want []journal.Entry
	for i := range 25 {
		// Creation order differs from time order, so the store must sort.
		at := base.Add(time.Duration((i*7)%25) * time.Second)
		want = append(want, NewEntry(t, s, u.ID, fmt.Sprint("e", i), at))
		if i%5 == 0 {
			NewEntry(t, s, other.ID, fmt.Sprint("other", i), at)
		}
	}
	newestFirst(want)
	tests := []struct {
		limit     int
		wantSizes []int
	}{
		{10, []int{10, 10, 5}},
		{5, []int{5, 5, 5, 5, 5}}, // exact multiple: the last page has Next == nil
		{25, []int{25}},
		{100, []int{25}},
		{1, nil},
	}
	for _, tt := range tests {
		pages := listAll(t, s, u.ID, tt.limit)
		if tt.wantSizes != nil {
			var sizes []int
			for _, p := range pages {
				sizes = append(sizes, len(p))
			}
			if diff := cmp.Diff(tt.wantSizes, sizes); diff != "" {
				t.Errorf("limit %d: page sizes (-want +got):\n%s", tt.limit, diff)
			}
		} else if len(pages) != 25 {
			t.Errorf("limit %d: %d pages, want 25", tt.limit, len(pages))
		}
		if diff := cmp.Diff(want, flatten(pages)); diff != "" {
			t.Errorf("limit %d: entries (-want +got):\n%s", tt.limit, diff)
		}
	}
	page, err := s.ListEntries(ctxT(t), journal.NewID(base), journal.PageRequest{Limit: 10})
	if err != nil || len(page.Entries) != 0 || page.Next != nil {
		t.Errorf("ListEntries(unknown user) = %+v, %v; want an empty last page", page, err)
	}
	// A cursor past the oldest entry gives an empty last page.
	last := want[len(want)-1]
	page, err = s.ListEntries(ctxT(t), u.ID, journal.PageRequest{Limit: 10, After: &journal.Cursor{CreatedAt: last.CreatedAt, ID: last.ID}})
	if err != nil || len(page.Entries) != 0 || page.Next != nil {
		t.Errorf("ListEntries(after oldest) = %+v, %v; want an empty last page", page, err)
	}
}

func testPaginationTies(t *testing.T, s journal.Database) {
	u := NewUser(t, s, "alice")
	var want []journal.Entry
	for i := range 7 {
		want = append(want, NewEntry(t, s, u.ID, fmt.Sprint("tie", i), base))
	}
	want = append(want, NewEntry(t, s, u.ID, "older", base.Add(-time.Microsecond)))
	want = append(want, NewEntry(t, s, u.ID, "newer", base.Add(time.Microsecond)))
	newestFirst(want)
	for _, limit := range []int{1, 2, 3, 9} {
		if diff := cmp.Diff(want, flatten(listAll(t, s, u.ID, limit))); diff != "" {
			t.Errorf("limit %d: entries (-want +got):\n%s", limit, diff)
		}
	}
	// A cursor in the middle of the tie continues with smaller ids.
	page, err := s.ListEntries(ctxT(t), u.ID, journal.PageRequest{Limit: 100, After: &journal.Cursor{CreatedAt: want[3].CreatedAt, ID: want[3].ID}})
	if err != nil {
		t.Fatalf("ListEntries = %v", err)
	}
	if diff := cmp.Diff(want[4:], page.Entries); diff != "" {
		t.Errorf("after tie cursor (-want +got):\n%s", diff)
	}
}

func testPaginationLimits(t *testing.T, s journal.Database) {
	u := NewUser(t, s, "alice")
	NewEntry(t, s, u.ID, "one", base)
	for _, limit := range []int{0, -1, journal.MaxPageLimit + 1} {
		_, err := s.ListEntries(ctxT(t), u.ID, journal.PageRequest{Limit: limit})
		var v *journal.ValidationError
		if !errors.As(err, &v) {
			t.Errorf("ListEntries(limit %d) = %v, want a *journal.ValidationError", limit, err)
		}
	}
	_, err := s.ListEntries(ctxT(t), u.ID, journal.PageRequest{Limit: 10, After: &journal.Cursor{CreatedAt: base, ID: "not-an-id"}})
	if !errors.Is(err, journal.ErrInvalidCursor) {
		t.Errorf("ListEntries(cursor with a malformed id) = %v, want ErrInvalidCursor", err)
	}
}

func testPaginationConcurrentInserts(t *testing.T, s journal.Database) {
	ctx := ctxT(t)
	u := NewUser(t, s, "alice")
	const initial = 60
	existing := map[string]bool{}
	start := time.Now().Add(-time.Hour)
	for i := range initial {
		existing[NewEntry(t, s, u.ID, fmt.Sprint("old", i), start.Add(time.Duration(i%20)*time.Millisecond)).ID] = true
	}

	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		// Inserts newer entries (as real requests do, with the current time)
		// and some in between existing ones, until paging is over.
		var err error
		for i := 0; err == nil; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			at := time.Now()
			if i%3 == 0 {
				at = start.Add(time.Duration(i%20)*time.Millisecond + time.Microsecond)
			}
			_, err = s.CreateEntry(ctx, journal.Entry{ID: journal.NewID(at), UserID: u.ID, Title: fmt.Sprint("new", i), CreatedAt: at, UpdatedAt: at})
		}
		done <- err
	}()

	seen := map[string]bool{}
	req := journal.PageRequest{Limit: 7}
	var prev *journal.Entry
	for pages := 0; ; pages++ {
		page, err := s.ListEntries(ctx, u.ID, req)
		if err != nil {
			t.Fatalf("ListEntries = %v", err)
		}
		for i := range page.Entries {
			e := page.Entries[i]
			if seen[e.ID] {
				t.Errorf("entry %s (%s) listed twice", e.ID, e.Title)
			}
			seen[e.ID] = true
			if prev != nil && !(e.CreatedAt.Before(prev.CreatedAt) || e.CreatedAt.Equal(prev.CreatedAt) && e.ID < prev.ID) {
				t.Errorf("entry %s at %v listed after %s at %v: not newest first", e.ID, e.CreatedAt, prev.ID, prev.CreatedAt)
			}
			prev = &e
		}
		if page.Next == nil {
			break
		}
		if pages > 1000 {
			t.Fatalf("more than 1000 pages")
		}
		req.After = page.Next
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("concurrent CreateEntry = %v", err)
	}
	for id := range existing {
		if !seen[id] {
			t.Errorf("entry %s existed before paging started but was not listed", id)
		}
	}
}

func testConcurrentWriters(t *testing.T, s journal.Database) {
	ctx := ctxT(t)
	const writers, each = 8, 15
	users := make([]journal.User, writers)
	for i := range users {
		users[i] = NewUser(t, s, fmt.Sprint("user", i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			u := users[i]
			for j := range each {
				at := time.Now()
				e, err := s.CreateEntry(ctx, journal.Entry{ID: journal.NewID(at), UserID: u.ID, Title: fmt.Sprint(j), CreatedAt: at, UpdatedAt: at})
				if err == nil {
					_, err = s.UpdateEntry(ctx, u.ID, e.ID, journal.EntryPatch{Body: ptr("x")}, 1, at)
				}
				if err == nil {
					_, err = s.ListEntries(ctx, u.ID, journal.PageRequest{Limit: 5})
				}
				if err == nil && j%3 == 0 {
					err = s.DeleteEntry(ctx, u.ID, e.ID, 2)
				}
				if err != nil {
					errs <- fmt.Errorf("writer %d op %d: %w", i, j, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, u := range users {
		if got, want := len(flatten(listAll(t, s, u.ID, 100))), each-(each+2)/3; got != want {
			t.Errorf("user %s has %d entries, want %d", u.Username, got, want)
		}
	}
	// create + update for each, + delete for a third.
	if got, want := pending(t, s), int64(writers*(2*each+(each+2)/3)); got != want {
		t.Errorf("PendingChanges = %d, want %d", got, want)
	}
}

func testOutboxRecordsWrites(t *testing.T, s journal.Database) {
	ctx := ctxT(t)
	u := NewUser(t, s, "alice")
	if got := pending(t, s); got != 0 {
		t.Fatalf("PendingChanges on a new store = %d, want 0", got)
	}
	e := NewEntry(t, s, u.ID, "one", base)
	if _, err := s.UpdateEntry(ctx, u.ID, e.ID, journal.EntryPatch{Title: ptr("two")}, 1, base); err != nil {
		t.Fatal(err)
	}
	// Failed writes record nothing.
	_, _ = s.UpdateEntry(ctx, u.ID, e.ID, journal.EntryPatch{Title: ptr("x")}, 1, base)
	_ = s.DeleteEntry(ctx, u.ID, journal.NewID(base), 0)
	if err := s.DeleteEntry(ctx, u.ID, e.ID, 0); err != nil {
		t.Fatal(err)
	}
	_, hash := journal.NewTokenSecret()
	if err := s.CreateToken(ctx, journal.Token{Hash: hash, ID: journal.NewID(base), UserID: u.ID, Name: "laptop", CreatedAt: base, ExpiresAt: base.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got, want := pending(t, s), int64(3); got != want {
		t.Errorf("PendingChanges = %d, want %d (creating a token records nothing)", got, want)
	}
	if err := s.RevokeToken(ctx, hash); err != nil {
		t.Fatal(err)
	}
	if got, want := pending(t, s), int64(4); got != want {
		t.Errorf("PendingChanges after revoke = %d, want %d", got, want)
	}
	changes := drain(t, s, "")
	entry := u.ID + "/" + e.ID + "/"
	if diff := cmp.Diff([]string{entry, entry, entry, u.ID + "//" + hash}, changeKeys(changes)); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	for i := 1; i < len(changes); i++ {
		if changes[i].Seq <= changes[i-1].Seq {
			t.Errorf("changes not in commit order: seq %d after %d", changes[i].Seq, changes[i-1].Seq)
		}
	}
	if got := pending(t, s); got != 0 {
		t.Errorf("PendingChanges after drain = %d, want 0", got)
	}
}

func testApplyChanges(t *testing.T, s journal.Database) {
	ctx := ctxT(t)
	u := NewUser(t, s, "alice")
	var ids []string
	for i := range 5 {
		ids = append(ids, NewEntry(t, s, u.ID, fmt.Sprint(i), base).ID)
	}
	boom := errors.New("redis down")
	calls := 0
	n, err := s.ApplyChanges(ctx, "", 100, func(_ context.Context, cs []journal.Change) error {
		calls++
		if len(cs) != 5 {
			t.Errorf("apply got %d changes, want 5", len(cs))
		}
		return boom
	})
	if !errors.Is(err, boom) || n != 0 {
		t.Errorf("ApplyChanges(failing apply) = %d, %v; want 0, %v", n, err, boom)
	}
	if calls != 1 {
		t.Errorf("apply called %d times, want 1", calls)
	}
	if got := pending(t, s); got != 5 {
		t.Errorf("PendingChanges after failed apply = %d, want 5", got)
	}

	var got []journal.Change
	n, err = s.ApplyChanges(ctx, "", 2, func(_ context.Context, cs []journal.Change) error {
		got = append(got, cs...)
		return nil
	})
	if err != nil || n != 2 {
		t.Fatalf("ApplyChanges(limit 2) = %d, %v; want 2, nil", n, err)
	}
	if p := pending(t, s); p != 3 {
		t.Errorf("PendingChanges after applying 2 = %d, want 3", p)
	}
	got = append(got, drain(t, s, "")...)
	var gotIDs []string
	for _, c := range got {
		gotIDs = append(gotIDs, c.EntryID)
	}
	if diff := cmp.Diff(ids, gotIDs); diff != "" {
		t.Errorf("applied entry ids, oldest first (-want +got):\n%s", diff)
	}
	n, err = s.ApplyChanges(ctx, "", 10, func(context.Context, []journal.Change) error {
		t.Errorf("apply called with nothing pending")
		return nil
	})
	if err != nil || n != 0 {
		t.Errorf("ApplyChanges(nothing pending) = %d, %v; want 0, nil", n, err)
	}
}

func testApplyChangesUserFilter(t *testing.T, s journal.Database) {
	ctx := ctxT(t)
	alice := NewUser(t, s, "alice")
	bob := NewUser(t, s, "bob")
	for i := range 3 {
		NewEntry(t, s, alice.ID, fmt.Sprint("a", i), base)
		NewEntry(t, s, bob.ID, fmt.Sprint("b", i), base)
	}
	boom := errors.New("boom")
	if _, err := s.ApplyChanges(ctx, alice.ID, 10, func(context.Context, []journal.Change) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("ApplyChanges(alice, failing) = %v, want %v", err, boom)
	}
	if got := pending(t, s); got != 6 {
		t.Errorf("PendingChanges = %d, want 6", got)
	}
	changes := drain(t, s, alice.ID)
	if len(changes) != 3 {
		t.Errorf("ApplyChanges(alice) applied %d changes, want 3", len(changes))
	}
	for _, c := range changes {
		if c.UserID != alice.ID {
			t.Errorf("ApplyChanges(alice) applied a change of user %s", c.UserID)
		}
	}
	if got := pending(t, s); got != 3 {
		t.Errorf("PendingChanges after alice's = %d, want 3", got)
	}
	n, err := s.ApplyChanges(ctx, journal.NewID(base), 10, func(context.Context, []journal.Change) error { return nil })
	if err != nil || n != 0 {
		t.Errorf("ApplyChanges(unknown user) = %d, %v; want 0, nil", n, err)
	}
	if got := len(drain(t, s, bob.ID)); got != 3 {
		t.Errorf("ApplyChanges(bob) applied %d, want 3", got)
	}
}

// testApplyChangesConcurrent runs a second ApplyChanges while a replay
// (userID "") holds its claim. Neither call waits for the other: a second
// replay skips the held changes, so no change is applied twice; the write
// path (one user) applies every change of the user, the held ones included,
// and leaves none of them pending once both calls return.
func testApplyChangesConcurrent(t *testing.T, s journal.Database) {
	for _, mode := range []string{"any user", "one user"} {
		t.Run(mode, func(t *testing.T) {
			ctx := ctxT(t)
			u := NewUser(t, s, strings.ReplaceAll(mode, " ", "-"))
			for i := range 6 {
				NewEntry(t, s, u.ID, fmt.Sprint(i), base)
			}
			filter := ""
			if mode == "one user" {
				filter = u.ID
			}
			var mu sync.Mutex
			applied := map[int64]int{}
			record := func(cs []journal.Change) {
				mu.Lock()
				defer mu.Unlock()
				for _, c := range cs {
					applied[c.Seq]++
				}
			}
			claimed := make(chan struct{})
			secondDone := make(chan struct{})
			firstErr := make(chan error, 1)
			go func() {
				_, err := s.ApplyChanges(ctx, "", 3, func(_ context.Context, cs []journal.Change) error {
					close(claimed)
					select {
					case <-secondDone:
					case <-time.After(10 * time.Second):
						t.Error("the second ApplyChanges waited for the first's claim (10s)")
					}
					record(cs)
					return nil
				})
				firstErr <- err
			}()
			<-claimed
			var second []journal.Change
			_, err := s.ApplyChanges(ctx, filter, 100, func(_ context.Context, cs []journal.Change) error {
				second = cs
				record(cs)
				return nil
			})
			close(secondDone)
			if err != nil {
				t.Errorf("second ApplyChanges = %v", err)
			}
			if err := <-firstErr; err != nil {
				t.Errorf("first ApplyChanges = %v", err)
			}
			if filter == "" {
				for seq, n := range applied {
					if n != 1 {
						t.Errorf("change %d applied %d times by two replays", seq, n)
					}
				}
			} else if len(second) != 6 {
				t.Errorf("ApplyChanges(user) while a replay held 3 changes applied %d, want all 6", len(second))
			}
			rest := drain(t, s, filter)
			record(rest)
			if len(applied) != 6 {
				t.Errorf("%d distinct changes applied, want 6", len(applied))
			}
			if filter != "" && len(rest) != 0 {
				t.Errorf("after ApplyChanges(user) and the replay returned, %d changes of that user were still pending", len(rest))
			}
		})
	}
}
