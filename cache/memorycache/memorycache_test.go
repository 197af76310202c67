package memorycache_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/journalsvc/journal/cache"
	"github.com/journalsvc/journal/cache/cachetest"
	"github.com/journalsvc/journal/cache/memorycache"
)

func newStore(tb testing.TB, opts memorycache.Options) *memorycache.Store {
	tb.Helper()
	s, err := memorycache.New(opts)
	if err != nil {
		tb.Fatalf("memorycache.New: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	cachetest.Run(t, func(tb testing.TB) cache.Store { return newStore(tb, memorycache.Options{}) })
}

func TestExpiryByClock(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	s := newStore(t, memorycache.Options{Now: func() time.Time { return now }})
	ctx := context.Background()
	if err := s.Set(ctx, "k", cache.Entry{Status: cache.Hit, Value: []byte("v")}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		advance time.Duration
		want    cache.Status
	}{
		{0, cache.Hit},
		{9 * time.Second, cache.Hit},
		{time.Second, cache.Miss}, // exactly at expiry
	} {
		now = now.Add(tt.advance)
		e, err := s.Get(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		if e.Status != tt.want {
			t.Errorf("at +%v: Get = %v, want %v", tt.advance, e.Status, tt.want)
		}
	}
	// An expired value does not block a lease.
	token, _, err := s.Lease(ctx, "k", time.Second)
	if err != nil || token == "" {
		t.Errorf("Lease of an expired key = %q, %v; want a token", token, err)
	}
}

func TestBounded(t *testing.T) {
	const maxBytes = 1 << 20
	s := newStore(t, memorycache.Options{MaxBytes: maxBytes})
	ctx := context.Background()
	value := make([]byte, 1000)
	for i := range 10_000 { // about 10 MB offered
		if err := s.Set(ctx, fmt.Sprint("k", i), cache.Entry{Status: cache.Hit, Value: value}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	held := 0
	for i := range 10_000 {
		e, err := s.Get(ctx, fmt.Sprint("k", i))
		if err != nil {
			t.Fatal(err)
		}
		if e.Status == cache.Hit {
			held++
		}
	}
	if held*1000 > maxBytes {
		t.Errorf("store holds %d values of 1000 bytes, more than MaxBytes %d", held, maxBytes)
	}
	if held == 0 {
		t.Errorf("store holds nothing")
	}
}

func TestSetCopiesValue(t *testing.T) {
	s := newStore(t, memorycache.Options{})
	ctx := context.Background()
	v := []byte("abc")
	if err := s.Set(ctx, "k", cache.Entry{Status: cache.Hit, Value: v}, time.Minute); err != nil {
		t.Fatal(err)
	}
	v[0] = 'X'
	e, _ := s.Get(ctx, "k")
	if got := string(e.Value); got != "abc" {
		t.Errorf("Get = %q after the caller changed its slice, want abc", got)
	}
}
