package cache_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/journalsvc/journal/cache"
	"github.com/journalsvc/journal/cache/memorycache"
)

// failing wraps a real store and fails every call while down is set, like a
// Redis outage.
type failing struct {
	cache.Store
	down  atomic.Bool
	calls atomic.Int32 // calls while down
}

var errDown = errors.New("store down")

func (f *failing) Get(ctx context.Context, key string) (cache.Entry, error) {
	if f.down.Load() {
		f.calls.Add(1)
		return cache.Entry{}, errDown
	}
	return f.Store.Get(ctx, key)
}

func (f *failing) Set(ctx context.Context, key string, e cache.Entry, ttl time.Duration) error {
	if f.down.Load() {
		f.calls.Add(1)
		return errDown
	}
	return f.Store.Set(ctx, key, e, ttl)
}

func (f *failing) Lease(ctx context.Context, key string, ttl time.Duration) (string, cache.Entry, error) {
	if f.down.Load() {
		f.calls.Add(1)
		return "", cache.Entry{}, errDown
	}
	return f.Store.Lease(ctx, key, ttl)
}

func (f *failing) Fill(ctx context.Context, key, token string, e cache.Entry, ttl time.Duration) (bool, error) {
	if f.down.Load() {
		f.calls.Add(1)
		return false, errDown
	}
	return f.Store.Fill(ctx, key, token, e, ttl)
}

func newMemory(tb testing.TB, now func() time.Time) *memorycache.Store {
	tb.Helper()
	s, err := memorycache.New(memorycache.Options{Now: now})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func newCache(tb testing.TB, s cache.Store, opts cache.Options) *cache.Cache {
	tb.Helper()
	c, err := cache.New(s, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func TestNewNilStore(t *testing.T) {
	if _, err := cache.New(nil, cache.Options{}); !errors.Is(err, cache.ErrNilStore) {
		t.Errorf("New(nil) = %v, want ErrNilStore", err)
	}
}

func TestStoreErrorIsError(t *testing.T) {
	f := &failing{Store: newMemory(t, nil)}
	var results []string
	c := newCache(t, f, cache.Options{OnResult: func(tier, result string) { results = append(results, tier+"/"+result) }})
	f.down.Store(true)
	if r, err := c.Get(context.Background(), "k"); !errors.Is(err, errDown) {
		t.Errorf("Get on a failing store = %v, %v; want the store's error", r.Status, err)
	}
	if len(results) != 1 || results[0] != "memory/error" {
		t.Errorf("OnResult got %v, want [memory/error]", results)
	}
}

// slowLoads counts loads and the most that ran at once. Its load takes 20ms
// and returns "db".
type slowLoads struct{ running, peak, loads atomic.Int32 }

func (s *slowLoads) load(context.Context) ([]byte, error) {
	s.loads.Add(1)
	n := s.running.Add(1)
	for {
		p := s.peak.Load()
		if n <= p || s.peak.CompareAndSwap(p, n) {
			break
		}
	}
	time.Sleep(20 * time.Millisecond)
	s.running.Add(-1)
	return []byte("db"), nil
}

func TestDegradedLoadsNotWrittenBack(t *testing.T) {
	f := &failing{Store: newMemory(t, nil)}
	c := newCache(t, f, cache.Options{DegradedLoads: 2})
	f.down.Store(true)
	var sl slowLoads
	load, peak, loads := sl.load, &sl.peak, &sl.loads
	var wg sync.WaitGroup
	for i := range 10 {
		key := string(rune('a' + i))
		for range 5 {
			wg.Go(func() {
				v, err := c.GetOrLoad(context.Background(), key, time.Minute, load)
				if err != nil || string(v) != "db" {
					t.Errorf("GetOrLoad(%s) = %q, %v", key, v, err)
				}
			})
		}
	}
	wg.Wait()
	if p := peak.Load(); p > 2 {
		t.Errorf("%d loads ran at once while the store failed, want at most DegradedLoads 2", p)
	}
	if n := loads.Load(); n < 10 || n > 50 {
		t.Errorf("loads = %d", n)
	}
	f.down.Store(false)
	for i := range 10 {
		if e, _ := f.Get(context.Background(), string(rune('a'+i))); e.Status != cache.Miss {
			t.Errorf("key %c = %v after the outage, want miss (nothing written back)", 'a'+i, e.Status)
		}
	}
}

// TestLoadBypassesStore: Load answers from the loader without reading or
// writing a working store, single-flight per key.
func TestLoadBypassesStore(t *testing.T) {
	s := newMemory(t, nil)
	c := newCache(t, s, cache.Options{})
	ctx := context.Background()
	if err := c.Set(ctx, "k", []byte("cached"), time.Minute); err != nil {
		t.Fatal(err)
	}
	v, err := c.Load(ctx, "k", func(context.Context) ([]byte, error) { return []byte("db"), nil })
	if err != nil || string(v) != "db" {
		t.Errorf("Load(k) = %q, %v; want the loader's value", v, err)
	}
	if r, _ := c.Get(ctx, "k"); string(r.Value) != "cached" {
		t.Errorf("k holds %q after Load, want the stored value untouched", r.Value)
	}
	if _, err := c.Load(ctx, "m", func(context.Context) ([]byte, error) { return []byte("db"), nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Load(ctx, "nf", func(context.Context) ([]byte, error) { return nil, cache.ErrNotFound }); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Load of a missing value = %v, want ErrNotFound", err)
	}
	for _, k := range []string{"m", "nf"} {
		if r, _ := c.Get(ctx, k); r.Status != cache.Miss {
			t.Errorf("%s = %v after Load, want miss (nothing stored)", k, r.Status)
		}
	}

	release := make(chan struct{})
	var loads atomic.Int32
	slow := func(context.Context) ([]byte, error) {
		loads.Add(1)
		<-release
		return []byte("db"), nil
	}
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			if v, err := c.Load(ctx, "shared", slow); err != nil || string(v) != "db" {
				t.Errorf("Load(shared) = %q, %v", v, err)
			}
		})
	}
	for loads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the other callers join the flight
	close(release)
	wg.Wait()
	if n := loads.Load(); n != 1 {
		t.Errorf("5 concurrent Loads of one key ran %d loads, want 1", n)
	}
}

// TestDegradedBoundShared: GetOrLoad on a failing store and Load share the
// one bound of DegradedLoads.
func TestDegradedBoundShared(t *testing.T) {
	f := &failing{Store: newMemory(t, nil)}
	c := newCache(t, f, cache.Options{DegradedLoads: 2})
	f.down.Store(true)
	var sl slowLoads
	load, peak := sl.load, &sl.peak
	var wg sync.WaitGroup
	for i := range 8 {
		key := string(rune('a' + i))
		wg.Go(func() {
			var v []byte
			var err error
			if i%2 == 0 {
				v, err = c.GetOrLoad(context.Background(), key, time.Minute, load)
			} else {
				v, err = c.Load(context.Background(), key, load)
			}
			if err != nil || string(v) != "db" {
				t.Errorf("key %s = %q, %v", key, v, err)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > 2 {
		t.Errorf("%d loads ran at once without the store, want at most DegradedLoads 2", p)
	}
}

func TestEarlyRefresh(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	s := newMemory(t, clock)
	u := 0.5
	c := newCache(t, s, cache.Options{EarlyRefresh: 1, Now: clock, Rand: func() float64 { return u }})
	ctx := context.Background()
	var loads atomic.Int32
	refreshed := make(chan struct{}, 10)
	load := func(ctx context.Context) ([]byte, error) {
		n := loads.Add(1)
		if n == 1 {
			advance(time.Second) // the first load takes 1s by the fake clock: delta = 1s
		} else {
			refreshed <- struct{}{}
		}
		return []byte{byte('0' + n)}, nil
	}
	v, err := c.GetOrLoad(ctx, "k", time.Minute, load)
	if err != nil || string(v) != "1" {
		t.Fatalf("first GetOrLoad = %q, %v", v, err)
	}
	// With u = 0.5 the refresh window is delta*beta*ln 2 ≈ 0.69s before expiry.
	advance(59 * time.Second) // 1s left (filled at +1s, ttl 60s): no refresh yet
	if v, _ := c.GetOrLoad(ctx, "k", time.Minute, load); string(v) != "1" || loads.Load() != 1 {
		t.Fatalf("GetOrLoad 1s before expiry = %q with %d loads, want the cached value and no refresh", v, loads.Load())
	}
	advance(500 * time.Millisecond) // 0.5s left: refresh in the background
	if v, _ := c.GetOrLoad(ctx, "k", time.Minute, load); string(v) != "1" {
		t.Fatalf("GetOrLoad in the refresh window = %q, want the current value", v)
	}
	select {
	case <-refreshed:
	case <-time.After(3 * time.Second):
		t.Fatal("no early refresh")
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		r, err := c.Get(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		if string(r.Value) == "2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("refreshed value not stored: %q", r.Value)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestJitter(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	s := newMemory(t, func() time.Time { return now })
	c := newCache(t, s, cache.Options{Jitter: 0.2, Rand: func() float64 { return 0.99 }})
	ctx := context.Background()
	if err := c.Set(ctx, "k", []byte("v"), 100*time.Second); err != nil {
		t.Fatal(err)
	}
	e, _ := s.Get(ctx, "k")
	if ttl := e.Expiry.Sub(now); ttl < 80*time.Second || ttl > 81*time.Second {
		t.Errorf("ttl with jitter 0.2 and rand 0.99 = %v, want about 80.2s", ttl)
	}
}

func TestInvalidTTL(t *testing.T) {
	c := newCache(t, newMemory(t, nil), cache.Options{})
	if _, err := c.GetOrLoad(context.Background(), "k", 0, nil); !errors.Is(err, cache.ErrInvalidTTL) {
		t.Errorf("GetOrLoad with ttl 0 = %v, want ErrInvalidTTL", err)
	}
	if err := c.SetNegative(context.Background(), "k", 0); !errors.Is(err, cache.ErrInvalidTTL) {
		t.Errorf("SetNegative with ttl 0 = %v, want ErrInvalidTTL", err)
	}
}

// TestStatusWords keeps one word per state: what Status.String prints is
// what OnResult reports for it, so a metric label and a logged status agree.
func TestStatusWords(t *testing.T) {
	for _, tt := range []struct {
		s    cache.Status
		want string
	}{
		{cache.Hit, cache.ResultHit},
		{cache.Negative, cache.ResultNegative},
		{cache.Miss, cache.ResultMiss},
	} {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("%d.String() = %q, want %q", tt.s, got, tt.want)
		}
	}
}
