// Package cachetest is the conformance suite of [cache.Store]: every backend
// runs [Run] against a real instance of what it wraps.
package cachetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/journalsvc/journal/cache"
)

// NewStore returns a fresh Store for one test. Stores of one Run may share
// their backing server: every test uses its own random keys.
type NewStore func(tb testing.TB) cache.Store

// Key returns a random key for one test, unique across runs, so tests never
// collide on a shared server.
func Key(tb testing.TB, name string) string {
	tb.Helper()
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "cachetest:" + hex.EncodeToString(b[:]) + ":" + name
}

// Run runs the conformance suite against stores made by newStore.
func Run(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s cache.Store)
	}{
		{"States", testStates},
		{"ErrorIsNotMiss", testErrorIsNotMiss},
		{"InvalidTTL", testInvalidTTL},
		{"Expiry", testExpiry},
		{"Delete", testDelete},
		{"Lease", testLease},
		{"LeaseVoidedByDelete", testLeaseVoidedByDelete},
		{"LeaseVoidedBySet", testLeaseVoidedBySet},
		{"LeaseExpires", testLeaseExpires},
		{"FillEntryToken", testFillEntryToken},
		{"Release", testRelease},
		{"GetOrLoadSingleFlight", testSingleFlight},
		{"GetOrLoadFirstCallerCancelled", testFirstCallerCancelled},
		{"GetOrLoadErrorNotCached", testErrorNotCached},
		{"GetOrLoadNegativeCached", testNegativeCached},
		{"GetOrLoadWaitsForLease", testWaitsForLease},
		{"GetOrLoadLeaseHolderGone", testLeaseHolderGone},
		{"GetOrLoadVoidedFillNotStored", testVoidedFillNotStored},
		{"OnResult", testOnResult},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore(t))
		})
	}
}

func newCache(tb testing.TB, s cache.Store, opts cache.Options) *cache.Cache {
	tb.Helper()
	c, err := cache.New(s, opts)
	if err != nil {
		tb.Fatalf("cache.New: %v", err)
	}
	return c
}

// Get returns what s holds at key, failing the test if Get returns an error.
func Get(tb testing.TB, s cache.Store, key string) cache.Entry {
	tb.Helper()
	e, err := s.Get(context.Background(), key)
	if err != nil {
		tb.Fatalf("Get(%q): %v", key, err)
	}
	return e
}

func wantEntry(tb testing.TB, s cache.Store, key string, status cache.Status, value string) cache.Entry {
	tb.Helper()
	e := Get(tb, s, key)
	if e.Status != status || string(e.Value) != value {
		tb.Fatalf("Get(%q) = %v %q, want %v %q", key, e.Status, e.Value, status, value)
	}
	return e
}

func mustSet(tb testing.TB, s cache.Store, key string, e cache.Entry, ttl time.Duration) {
	tb.Helper()
	if err := s.Set(context.Background(), key, e, ttl); err != nil {
		tb.Fatalf("Set(%q): %v", key, err)
	}
}

func mustLease(tb testing.TB, s cache.Store, key string, ttl time.Duration) string {
	tb.Helper()
	token, held, err := s.Lease(context.Background(), key, ttl)
	if err != nil {
		tb.Fatalf("Lease(%q): %v", key, err)
	}
	if token == "" {
		tb.Fatalf("Lease(%q) not taken; key holds %+v", key, held)
	}
	return token
}

func mustFill(tb testing.TB, s cache.Store, key, token string, e cache.Entry, want bool) {
	tb.Helper()
	stored, err := s.Fill(context.Background(), key, token, e, time.Minute)
	if err != nil {
		tb.Fatalf("Fill(%q): %v", key, err)
	}
	if stored != want {
		tb.Fatalf("Fill(%q) stored = %v, want %v", key, stored, want)
	}
}

func hit(v string) cache.Entry { return cache.Entry{Status: cache.Hit, Value: []byte(v)} }

func testStates(t *testing.T, s cache.Store) {
	k := Key(t, "states")
	e := wantEntry(t, s, k, cache.Miss, "")
	if e.Leased {
		t.Errorf("absent key reported Leased")
	}
	mustSet(t, s, k, hit("v1"), time.Minute)
	e = wantEntry(t, s, k, cache.Hit, "v1")
	if e.Token == "" {
		t.Errorf("hit has no Token")
	}
	if e.Tier == "" {
		t.Errorf("hit has no Tier")
	}
	// Empty values are values, not misses.
	mustSet(t, s, k, hit(""), time.Minute)
	wantEntry(t, s, k, cache.Hit, "")
	mustSet(t, s, k, cache.Entry{Status: cache.Negative}, time.Minute)
	wantEntry(t, s, k, cache.Negative, "")
	// A value may be any bytes, including what looks like a lease marker.
	mustSet(t, s, k, hit("lease:0123456789abcdef\x00\xff"), time.Minute)
	wantEntry(t, s, k, cache.Hit, "lease:0123456789abcdef\x00\xff")
}

func testErrorIsNotMiss(t *testing.T, s cache.Store) {
	k := Key(t, "err")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Get(ctx, k); err == nil {
		t.Errorf("Get with a cancelled context returned no error")
	}
	c := newCache(t, s, cache.Options{})
	if r, err := c.Get(ctx, k); err == nil {
		t.Errorf("Cache.Get with a cancelled context = %v, want an error", r.Status)
	}
	if err := s.Set(ctx, k, hit("v"), time.Minute); err == nil {
		t.Errorf("Set with a cancelled context returned no error")
	}
	wantEntry(t, s, k, cache.Miss, "")
}

func testInvalidTTL(t *testing.T, s cache.Store) {
	k := Key(t, "ttl")
	if err := s.Set(context.Background(), k, hit("v"), 0); !errors.Is(err, cache.ErrInvalidTTL) {
		t.Errorf("Set with ttl 0 = %v, want ErrInvalidTTL", err)
	}
	c := newCache(t, s, cache.Options{})
	if err := c.Set(context.Background(), k, []byte("v"), -time.Second); !errors.Is(err, cache.ErrInvalidTTL) {
		t.Errorf("Cache.Set with negative ttl = %v, want ErrInvalidTTL", err)
	}
	wantEntry(t, s, k, cache.Miss, "")
}

func testExpiry(t *testing.T, s cache.Store) {
	k := Key(t, "expiry")
	const ttl = 200 * time.Millisecond
	start := time.Now()
	mustSet(t, s, k, hit("v"), ttl)
	e := Get(t, s, k)
	if time.Since(start) < ttl/2 && e.Status != cache.Hit {
		t.Fatalf("Get right after Set = %v, want hit", e.Status)
	}
	for {
		e := Get(t, s, k)
		if e.Status == cache.Miss {
			if el := time.Since(start); el < ttl {
				t.Fatalf("entry expired after %v, before its ttl %v", el, ttl)
			}
			return
		}
		if time.Since(start) > ttl+3*time.Second {
			t.Fatalf("entry with ttl %v still %v after %v", ttl, e.Status, time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testDelete(t *testing.T, s cache.Store) {
	a, b := Key(t, "a"), Key(t, "b")
	mustSet(t, s, a, hit("1"), time.Minute)
	mustSet(t, s, b, cache.Entry{Status: cache.Negative}, time.Minute)
	wantEntry(t, s, a, cache.Hit, "1") // read first, so a near cache holds it
	wantEntry(t, s, b, cache.Negative, "")
	if err := s.Delete(context.Background(), a, b, Key(t, "absent")); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantEntry(t, s, a, cache.Miss, "")
	wantEntry(t, s, b, cache.Miss, "")
	if err := s.Delete(context.Background()); err != nil {
		t.Errorf("Delete of no keys: %v", err)
	}
}

func testLease(t *testing.T, s cache.Store) {
	k := Key(t, "lease")
	wantEntry(t, s, k, cache.Miss, "")
	token := mustLease(t, s, k, time.Minute)
	e := wantEntry(t, s, k, cache.Miss, "")
	if !e.Leased {
		t.Errorf("Get of a leased key: Leased = false")
	}
	token2, held, err := s.Lease(context.Background(), k, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if token2 != "" || !held.Leased {
		t.Errorf("second Lease = %q, %+v; want no token and a leased entry", token2, held)
	}
	mustFill(t, s, k, "wrong-token", hit("x"), false)
	mustFill(t, s, k, token, hit("filled"), true)
	wantEntry(t, s, k, cache.Hit, "filled")
	// The lease is spent: the key holds a value now.
	mustFill(t, s, k, token, hit("again"), false)
	wantEntry(t, s, k, cache.Hit, "filled")
	token3, held, err := s.Lease(context.Background(), k, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if token3 != "" || held.Status != cache.Hit || string(held.Value) != "filled" {
		t.Errorf("Lease of a filled key = %q, %v %q; want no token and the value", token3, held.Status, held.Value)
	}
	// A negative entry can fill a lease too.
	k2 := Key(t, "lease-nf")
	token = mustLease(t, s, k2, time.Minute)
	mustFill(t, s, k2, token, cache.Entry{Status: cache.Negative}, true)
	wantEntry(t, s, k2, cache.Negative, "")
}

func testLeaseVoidedByDelete(t *testing.T, s cache.Store) {
	k := Key(t, "voided")
	token := mustLease(t, s, k, time.Minute)
	wantEntry(t, s, k, cache.Miss, "")
	if err := s.Delete(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	if e := wantEntry(t, s, k, cache.Miss, ""); e.Leased {
		t.Errorf("deleted key still Leased")
	}
	mustFill(t, s, k, token, hit("old"), false)
	wantEntry(t, s, k, cache.Miss, "")
	// A new lease after the delete is a different lease.
	token2 := mustLease(t, s, k, time.Minute)
	if token2 == token {
		t.Errorf("new lease reused token %q", token)
	}
	mustFill(t, s, k, token, hit("old"), false)
	mustFill(t, s, k, token2, hit("new"), true)
	wantEntry(t, s, k, cache.Hit, "new")
}

func testLeaseVoidedBySet(t *testing.T, s cache.Store) {
	k := Key(t, "voided-set")
	token := mustLease(t, s, k, time.Minute)
	mustSet(t, s, k, hit("written"), time.Minute)
	mustFill(t, s, k, token, hit("loaded-before"), false)
	wantEntry(t, s, k, cache.Hit, "written")
}

func testLeaseExpires(t *testing.T, s cache.Store) {
	k := Key(t, "lease-exp")
	token := mustLease(t, s, k, 100*time.Millisecond)
	deadline := time.Now().Add(3 * time.Second)
	for {
		token2, _, err := s.Lease(context.Background(), k, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if token2 != "" {
			mustFill(t, s, k, token, hit("late"), false)
			mustFill(t, s, k, token2, hit("v"), true)
			wantEntry(t, s, k, cache.Hit, "v")
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease with ttl 100ms still held after 3s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testFillEntryToken(t *testing.T, s cache.Store) {
	k := Key(t, "refresh")
	mustSet(t, s, k, hit("v1"), time.Minute)
	e := wantEntry(t, s, k, cache.Hit, "v1")
	mustFill(t, s, k, e.Token, hit("v2"), true)
	e2 := wantEntry(t, s, k, cache.Hit, "v2")
	if e2.Token == e.Token {
		t.Errorf("Fill kept the token %q", e.Token)
	}
	mustFill(t, s, k, e.Token, hit("v3"), false)
	wantEntry(t, s, k, cache.Hit, "v2")
	if err := s.Delete(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	mustFill(t, s, k, e2.Token, hit("v4"), false)
	wantEntry(t, s, k, cache.Miss, "")
}

func testRelease(t *testing.T, s cache.Store) {
	k := Key(t, "release")
	token := mustLease(t, s, k, time.Minute)
	if err := s.Release(context.Background(), k, "wrong"); err != nil {
		t.Fatal(err)
	}
	if e := Get(t, s, k); !e.Leased {
		t.Fatalf("Release with a wrong token freed the lease")
	}
	if err := s.Release(context.Background(), k, token); err != nil {
		t.Fatal(err)
	}
	if e := wantEntry(t, s, k, cache.Miss, ""); e.Leased {
		t.Fatalf("Release left the lease")
	}
	// Release never deletes a value.
	mustSet(t, s, k, hit("v"), time.Minute)
	e := Get(t, s, k)
	if err := s.Release(context.Background(), k, e.Token); err != nil {
		t.Fatal(err)
	}
	wantEntry(t, s, k, cache.Hit, "v")
}

func testSingleFlight(t *testing.T, s cache.Store) {
	k := Key(t, "sf")
	c := newCache(t, s, cache.Options{})
	var loads atomic.Int32
	load := func(ctx context.Context) ([]byte, error) {
		loads.Add(1)
		time.Sleep(50 * time.Millisecond)
		return []byte("loaded"), nil
	}
	const callers = 200
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	start := make(chan struct{})
	for range callers {
		wg.Go(func() {
			<-start
			v, err := c.GetOrLoad(context.Background(), k, time.Minute, load)
			if err == nil && string(v) != "loaded" {
				err = errors.New("got " + string(v))
			}
			if err != nil {
				errs <- err
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("GetOrLoad: %v", err)
	}
	if got := loads.Load(); got != 1 {
		t.Errorf("%d concurrent GetOrLoad ran %d loads, want 1", callers, got)
	}
	wantEntry(t, s, k, cache.Hit, "loaded")
}

func testFirstCallerCancelled(t *testing.T, s cache.Store) {
	k := Key(t, "cancel")
	c := newCache(t, s, cache.Options{})
	started := make(chan struct{})
	release := make(chan struct{})
	var loads atomic.Int32
	load := func(ctx context.Context) ([]byte, error) {
		if loads.Add(1) == 1 {
			close(started)
		}
		select {
		case <-release:
			return []byte("v"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoad(ctx, k, time.Minute, load)
		first <- err
	}()
	<-started
	const others = 10
	results := make(chan error, others)
	for range others {
		go func() {
			v, err := c.GetOrLoad(context.Background(), k, time.Minute, load)
			if err == nil && string(v) != "v" {
				err = errors.New("got " + string(v))
			}
			results <- err
		}()
	}
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled first caller got %v, want context.Canceled", err)
	}
	close(release)
	for range others {
		if err := <-results; err != nil {
			t.Errorf("other caller: %v", err)
		}
	}
	if got := loads.Load(); got != 1 {
		t.Errorf("loads = %d, want 1", got)
	}
	wantEntry(t, s, k, cache.Hit, "v")
}

func testErrorNotCached(t *testing.T, s cache.Store) {
	k := Key(t, "loaderr")
	c := newCache(t, s, cache.Options{})
	boom := errors.New("boom")
	var loads atomic.Int32
	failing := func(ctx context.Context) ([]byte, error) { loads.Add(1); return nil, boom }
	if _, err := c.GetOrLoad(context.Background(), k, time.Minute, failing); !errors.Is(err, boom) {
		t.Fatalf("GetOrLoad = %v, want the loader's error", err)
	}
	if e := wantEntry(t, s, k, cache.Miss, ""); e.Leased {
		t.Errorf("a failed load left its lease")
	}
	if _, err := c.GetOrLoad(context.Background(), k, time.Minute, failing); !errors.Is(err, boom) {
		t.Fatalf("second GetOrLoad = %v, want the loader's error", err)
	}
	if got := loads.Load(); got != 2 {
		t.Errorf("loads = %d, want 2 (errors are not cached)", got)
	}
	v, err := c.GetOrLoad(context.Background(), k, time.Minute, func(context.Context) ([]byte, error) { return []byte("ok"), nil })
	if err != nil || string(v) != "ok" {
		t.Errorf("GetOrLoad after errors = %q, %v; want ok", v, err)
	}
}

func testNegativeCached(t *testing.T, s cache.Store) {
	k := Key(t, "nf")
	c := newCache(t, s, cache.Options{})
	var loads atomic.Int32
	load := func(ctx context.Context) ([]byte, error) {
		loads.Add(1)
		return nil, errors.Join(errors.New("no such row"), cache.ErrNotFound)
	}
	for i := range 3 {
		if _, err := c.GetOrLoad(context.Background(), k, time.Minute, load); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("GetOrLoad #%d = %v, want ErrNotFound", i, err)
		}
	}
	if got := loads.Load(); got != 1 {
		t.Errorf("loads = %d, want 1 (not-found is cached)", got)
	}
	r, err := c.Get(context.Background(), k)
	if err != nil || r.Status != cache.Negative {
		t.Errorf("Get = %v, %v; want negative", r.Status, err)
	}
}

func testWaitsForLease(t *testing.T, s cache.Store) {
	// Another instance holds the lease and fills it: GetOrLoad must not load.
	k := Key(t, "wait")
	token := mustLease(t, s, k, time.Minute)
	c := newCache(t, s, cache.Options{LeaseWait: 5 * time.Second})
	var loads atomic.Int32
	done := make(chan error, 1)
	go func() {
		v, err := c.GetOrLoad(context.Background(), k, time.Minute, func(context.Context) ([]byte, error) {
			loads.Add(1)
			return []byte("mine"), nil
		})
		if err == nil && string(v) != "theirs" {
			err = errors.New("got " + string(v))
		}
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	mustFill(t, s, k, token, hit("theirs"), true)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("GetOrLoad: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("GetOrLoad did not return 5s after the fill")
	}
	if got := loads.Load(); got != 0 {
		t.Errorf("loads = %d, want 0", got)
	}
}

func testLeaseHolderGone(t *testing.T, s cache.Store) {
	// The lease holder never fills: after LeaseWait the caller loads for
	// itself and does not store (the key belongs to the lease holder).
	k := Key(t, "gone")
	mustLease(t, s, k, time.Minute)
	c := newCache(t, s, cache.Options{LeaseWait: 100 * time.Millisecond})
	start := time.Now()
	v, err := c.GetOrLoad(context.Background(), k, time.Minute, func(context.Context) ([]byte, error) {
		return []byte("self"), nil
	})
	if err != nil || string(v) != "self" {
		t.Fatalf("GetOrLoad = %q, %v; want self", v, err)
	}
	if el := time.Since(start); el < 100*time.Millisecond || el > 3*time.Second {
		t.Errorf("GetOrLoad took %v, want about LeaseWait (100ms)", el)
	}
	if e := Get(t, s, k); !e.Leased {
		t.Errorf("key = %v, want still leased (nothing stored)", e.Status)
	}
}

func testVoidedFillNotStored(t *testing.T, s cache.Store) {
	// A Delete during the load voids the lease: the loaded (older) value is
	// returned to the callers but never stored.
	k := Key(t, "voidfill")
	c := newCache(t, s, cache.Options{})
	v, err := c.GetOrLoad(context.Background(), k, time.Minute, func(ctx context.Context) ([]byte, error) {
		if err := c.Delete(ctx, k); err != nil {
			return nil, err
		}
		return []byte("before-write"), nil
	})
	if err != nil || string(v) != "before-write" {
		t.Fatalf("GetOrLoad = %q, %v", v, err)
	}
	wantEntry(t, s, k, cache.Miss, "")
}

func testOnResult(t *testing.T, s cache.Store) {
	k := Key(t, "metrics")
	var mu sync.Mutex
	var got []string
	c := newCache(t, s, cache.Options{OnResult: func(tier, result string) {
		mu.Lock()
		defer mu.Unlock()
		if tier == "" {
			t.Errorf("OnResult with empty tier")
		}
		got = append(got, result)
	}})
	ctx := context.Background()
	if _, err := c.Get(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, k, []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := c.SetNegative(ctx, k, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, k); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, _ = c.Get(cctx, k)
	want := []string{cache.ResultMiss, cache.ResultHit, cache.ResultNegative, cache.ResultError}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("OnResult results = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("OnResult results = %v, want %v", got, want)
		}
	}
}
