package cache

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"time"

	"golang.org/x/sync/singleflight"
)

// Results reported to [Options.OnResult]. The first three are the
// [Status.String] of what the key held.
const (
	ResultHit      = "hit"      // the key held a value
	ResultNegative = "negative" // the key held a negative entry
	ResultMiss     = "miss"     // the key held nothing (or a lease)
	ResultError    = "error"    // the store failed
)

// Options configure a [Cache]. The zero value is usable: every field documents
// its default.
type Options struct {
	// LeaseTTL is how long a fill lease holds the key before it expires by
	// itself (for a loader that died). Default 2s.
	LeaseTTL time.Duration
	// LeaseWait bounds how long GetOrLoad polls for another instance's fill
	// before loading for itself without storing. Default 500ms, capped at
	// LeaseTTL.
	LeaseWait time.Duration
	// PollInterval is the pause between polls while another instance holds
	// the lease. Default 5ms.
	PollInterval time.Duration
	// LoadTimeout bounds a fill, which runs on a context detached from the
	// caller that started it. Default 5s.
	LoadTimeout time.Duration
	// NegativeTTL caps the TTL of a negative entry stored when the loader
	// returns ErrNotFound. Default 10s; negative: not-found is not cached.
	NegativeTTL time.Duration
	// Jitter spreads TTLs of writes uniformly in [ttl*(1-Jitter), ttl] so
	// entries written together do not expire together. 0 (default) disables it;
	// values are clamped to [0, 0.5].
	Jitter float64
	// EarlyRefresh is the XFetch beta: a GetOrLoad hit whose entry has a known
	// load time delta refreshes it in the background with probability
	// exp(-remaining/(delta*beta)), while callers keep getting the current
	// value. 1 is the paper's choice; 0 (default) disables early refresh.
	EarlyRefresh float64
	// DegradedLoads bounds the loads of this Cache that run without the
	// store, so an outage does not stampede the source of truth: those of
	// GetOrLoad while the store fails, and every [Cache.Load], together.
	// Default 16.
	DegradedLoads int
	// OnResult, if set, is called once per Get and GetOrLoad with the tier
	// (Entry.Tier, or the store's Name on an error) and one of the Result*
	// constants. It must be fast and safe for concurrent use.
	OnResult func(tier, result string)
	// Now returns the current time. Default time.Now.
	Now func() time.Time
	// Rand returns a uniform float in [0, 1); it must be safe for concurrent
	// use. Default math/rand/v2.Float64.
	Rand func() float64
}

// Cache is a read-through cache over a [Store]. It is safe for concurrent use.
// Create it with [New].
type Cache struct {
	store   Store
	opts    Options
	flights singleflight.Group // fills through the store
	direct  singleflight.Group // loads without the store
	refresh singleflight.Group
	sem     chan struct{} // bounds loads without the store
}

// New returns a Cache over store. It returns ErrNilStore if store is nil.
func New(store Store, opts Options) (*Cache, error) {
	if store == nil {
		return nil, ErrNilStore
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = 2 * time.Second
	}
	if opts.LeaseWait <= 0 {
		opts.LeaseWait = 500 * time.Millisecond
	}
	opts.LeaseWait = min(opts.LeaseWait, opts.LeaseTTL)
	if opts.PollInterval <= 0 {
		opts.PollInterval = 5 * time.Millisecond
	}
	if opts.LoadTimeout <= 0 {
		opts.LoadTimeout = 5 * time.Second
	}
	if opts.NegativeTTL == 0 {
		opts.NegativeTTL = 10 * time.Second
	}
	opts.Jitter = min(max(opts.Jitter, 0), 0.5)
	opts.EarlyRefresh = max(opts.EarlyRefresh, 0)
	if opts.DegradedLoads <= 0 {
		opts.DegradedLoads = 16
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Float64
	}
	return &Cache{store: store, opts: opts, sem: make(chan struct{}, opts.DegradedLoads)}, nil
}

// Store returns the store the Cache reads and writes.
func (c *Cache) Store() Store { return c.store }

func (c *Cache) report(tier, result string) {
	if c.opts.OnResult != nil {
		if tier == "" {
			tier = c.store.Name()
		}
		c.opts.OnResult(tier, result)
	}
}

// Get returns what key holds: Hit with its value, Negative, or Miss (absent,
// expired, or held by a fill lease). A store failure is returned as an error,
// never as a Miss.
func (c *Cache) Get(ctx context.Context, key string) (Result, error) {
	e, err := c.store.Get(ctx, key)
	if err != nil {
		c.report(c.store.Name(), ResultError)
		return Result{}, err
	}
	c.report(e.Tier, e.Status.String())
	if e.Status != Hit {
		return Result{Status: e.Status}, nil
	}
	return Result{Status: Hit, Value: e.Value}, nil
}

// jitter returns ttl shortened by a random fraction of up to Options.Jitter.
func (c *Cache) jitter(ttl time.Duration) time.Duration {
	if c.opts.Jitter == 0 {
		return ttl
	}
	return max(ttl-time.Duration(float64(ttl)*c.opts.Jitter*c.opts.Rand()), 1)
}

// Set stores value under key for ttl (with jitter), replacing a value, a
// negative entry or a lease (which voids that lease). ttl must be positive.
func (c *Cache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return ErrInvalidTTL
	}
	return c.store.Set(ctx, key, Entry{Status: Hit, Value: value}, c.jitter(ttl))
}

// SetNegative stores a negative entry under key for ttl (with jitter).
func (c *Cache) SetNegative(ctx context.Context, key string, ttl time.Duration) error {
	if ttl <= 0 {
		return ErrInvalidTTL
	}
	return c.store.Set(ctx, key, Entry{Status: Negative}, c.jitter(ttl))
}

// Delete removes keys, voiding any fill lease they hold, so a load that
// started before the Delete cannot store its (possibly older) value.
func (c *Cache) Delete(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	return c.store.Delete(ctx, keys...)
}

// LoadFunc loads a value from the source of truth. It returns ErrNotFound
// (possibly wrapped) when the value does not exist; that answer is cached. Any
// other error is returned to the callers and never cached.
type LoadFunc func(ctx context.Context) ([]byte, error)

type loaded struct {
	value    []byte
	notFound bool
}

// GetOrLoad returns the value of key, loading and storing it for ttl (with
// jitter) on a miss. It returns ErrNotFound when the key holds a negative entry
// or the loader reported ErrNotFound, the loader's error when the load failed,
// and ctx's error when ctx is done first.
//
// At most one load per key runs at a time in this Cache: concurrent callers
// share it, whatever their load functions (the first caller's runs). The load
// runs on context.WithoutCancel of the first caller's context bounded by
// Options.LoadTimeout, so it completes (and is stored) even if every caller
// gives up. Across instances sharing a store, the loader first takes a lease in
// the key; the others poll for its fill for up to Options.LeaseWait, then load
// without storing.
//
// When the store fails, GetOrLoad answers as [Cache.Load] does: from the
// loader, bounded, writing nothing back.
func (c *Cache) GetOrLoad(ctx context.Context, key string, ttl time.Duration, load LoadFunc) ([]byte, error) {
	if ttl <= 0 {
		return nil, ErrInvalidTTL
	}
	e, err := c.store.Get(ctx, key)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		c.report(c.store.Name(), ResultError)
		// Do not spend a second store deadline on a store that just failed.
		return c.Load(ctx, key, load)
	}
	c.report(e.Tier, e.Status.String())
	switch e.Status {
	case Hit:
		c.maybeRefresh(ctx, key, e, ttl, load)
		return e.Value, nil
	case Negative:
		return nil, ErrNotFound
	}
	return c.await(ctx, c.flights.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.LoadTimeout)
		defer cancel()
		return c.fill(fctx, key, ttl, load)
	}))
}

// Load answers key from load without reading or writing the store. It is the
// path GetOrLoad takes while the store fails, for a caller that knows the
// store must not be used now (it is unhealthy, or what it holds cannot be
// trusted). Concurrent Loads of one key share one load (single-flight, on a
// context detached from the first caller and bounded by
// [Options.LoadTimeout]); at most [Options.DegradedLoads] such loads run at
// once. It returns ErrNotFound when the loader did, the loader's error, or
// ctx's error when ctx is done first. Nothing is cached and OnResult is not
// called.
func (c *Cache) Load(ctx context.Context, key string, load LoadFunc) ([]byte, error) {
	return c.await(ctx, c.direct.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.LoadTimeout)
		defer cancel()
		return c.loadDegraded(fctx, load)
	}))
}

// await returns the outcome of a flight, or ctx's error when ctx is done
// first (the flight goes on for its other callers).
func (c *Cache) await(ctx context.Context, ch <-chan singleflight.Result) ([]byte, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		l := r.Val.(loaded)
		if l.notFound {
			return nil, ErrNotFound
		}
		return l.value, nil
	}
}

// fill runs once per key per instance at a time, on a detached context.
func (c *Cache) fill(ctx context.Context, key string, ttl time.Duration, load LoadFunc) (loaded, error) {
	waitUntil := c.opts.Now().Add(c.opts.LeaseWait)
	for {
		e, err := c.store.Get(ctx, key)
		if err != nil {
			return c.loadDegraded(ctx, load)
		}
		if l, ok := answer(e); ok {
			return l, nil
		}
		if !e.Leased {
			token, held, err := c.store.Lease(ctx, key, c.opts.LeaseTTL)
			if err != nil {
				return c.loadDegraded(ctx, load)
			}
			if token != "" {
				return c.loadAndFill(ctx, key, token, ttl, load)
			}
			if l, ok := answer(held); ok {
				return l, nil
			}
		}
		if !c.opts.Now().Before(waitUntil) {
			// The lease holder is slow or gone: answer our callers without
			// storing (the key belongs to the lease holder).
			return c.load(ctx, load)
		}
		t := time.NewTimer(c.opts.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return loaded{}, ctx.Err()
		case <-t.C:
		}
	}
}

func answer(e Entry) (loaded, bool) {
	switch e.Status {
	case Hit:
		return loaded{value: e.Value}, true
	case Negative:
		return loaded{notFound: true}, true
	}
	return loaded{}, false
}

func (c *Cache) load(ctx context.Context, load LoadFunc) (loaded, error) {
	v, err := load(ctx)
	if errors.Is(err, ErrNotFound) {
		return loaded{notFound: true}, nil
	}
	if err != nil {
		return loaded{}, err
	}
	return loaded{value: v}, nil
}

// loadDegraded loads without the store: at most Options.DegradedLoads at
// once, nothing written back.
func (c *Cache) loadDegraded(ctx context.Context, load LoadFunc) (loaded, error) {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return loaded{}, ctx.Err()
	}
	defer func() { <-c.sem }()
	return c.load(ctx, load)
}

// loadAndFill loads while holding the lease token and stores the outcome if
// the lease is still ours.
func (c *Cache) loadAndFill(ctx context.Context, key, token string, ttl time.Duration, load LoadFunc) (loaded, error) {
	start := c.opts.Now()
	l, err := c.load(ctx, load)
	delta := c.opts.Now().Sub(start)
	switch {
	case err != nil:
		// Never cache a load error; free the key for the next loader.
		_ = c.store.Release(ctx, key, token)
		return l, err
	case l.notFound && c.opts.NegativeTTL < 0:
		_ = c.store.Release(ctx, key, token)
	case l.notFound:
		// A store error here only loses the fill; the callers get the answer.
		_, _ = c.store.Fill(ctx, key, token, Entry{Status: Negative, Delta: delta}, c.jitter(min(ttl, c.opts.NegativeTTL)))
	default:
		_, _ = c.store.Fill(ctx, key, token, Entry{Status: Hit, Value: l.value, Delta: delta}, c.jitter(ttl))
	}
	return l, nil
}

// maybeRefresh starts a background refresh of a hit per XFetch: with
// probability exp(-remaining/(delta*beta)).
func (c *Cache) maybeRefresh(ctx context.Context, key string, e Entry, ttl time.Duration, load LoadFunc) {
	beta := c.opts.EarlyRefresh
	if beta == 0 || e.Delta <= 0 || e.Expiry.IsZero() || e.Token == "" {
		return
	}
	u := 1 - c.opts.Rand() // (0, 1]
	early := time.Duration(-float64(e.Delta) * beta * math.Log(u))
	if c.opts.Now().Add(early).Before(e.Expiry) {
		return
	}
	detached := context.WithoutCancel(ctx)
	c.refresh.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(detached, c.opts.LoadTimeout)
		defer cancel()
		start := c.opts.Now()
		l, err := c.load(fctx, load)
		if err != nil {
			return nil, err
		}
		ne, fillTTL := Entry{Status: Hit, Value: l.value, Delta: c.opts.Now().Sub(start)}, ttl
		if l.notFound {
			ne = Entry{Status: Negative, Delta: ne.Delta}
			if c.opts.NegativeTTL < 0 {
				return nil, nil
			}
			fillTTL = min(ttl, c.opts.NegativeTTL)
		}
		// Stored only if the key still holds the entry we read: a Delete or
		// Set since then wins.
		_, err = c.store.Fill(fctx, key, e.Token, ne, c.jitter(fillTTL))
		return nil, err
	})
}
