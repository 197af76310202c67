// Package memorycache is a bounded in-process [cache.Store] on otter v2
// (W-TinyLFU eviction, per-entry expiry, a maximum weight in bytes).
//
// It keeps the full Store contract, leases included, so the conformance suite
// of package cachetest runs unchanged; within one process the lease is
// redundant with the single-flight of [cache.Cache], and there is no other
// instance to be coherent with. Use it for a single instance (no Redis).
package memorycache

import (
	"context"
	"errors"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/journalsvc/journal/cache"
	"github.com/maypok86/otter/v2"
)

// DefaultMaxBytes is the default of [Options.MaxBytes]: 64 MiB.
const DefaultMaxBytes = 64 << 20

// entryOverhead approximates the bytes an entry costs beyond key and value.
const entryOverhead = 96

// Options configure a [Store]. The zero value is usable.
type Options struct {
	// MaxBytes bounds the approximate memory of all entries (keys, values and
	// a fixed per-entry overhead). Default DefaultMaxBytes. Least valuable
	// entries are evicted beyond it, so a write may be forgotten early.
	MaxBytes uint64
	// Now returns the current time; expiry is judged by it. Default time.Now.
	Now func() time.Time
}

type item struct {
	status cache.Status
	value  []byte
	leased bool
	token  string
	expiry time.Time
	ttl    time.Duration
	delta  time.Duration
}

// Store is an in-process cache.Store. It is safe for concurrent use. Create it
// with [New]; it needs no Close.
type Store struct {
	c   *otter.Cache[string, *item]
	now func() time.Time
	seq atomic.Uint64
}

var _ cache.Store = (*Store)(nil)

type expiry struct{}

func (expiry) ExpireAfterCreate(e otter.Entry[string, *item]) time.Duration { return e.Value.ttl }
func (expiry) ExpireAfterUpdate(e otter.Entry[string, *item], _ *item) time.Duration {
	return e.Value.ttl
}
func (expiry) ExpireAfterRead(e otter.Entry[string, *item]) time.Duration { return e.ExpiresAfter() }

// New returns a Store bounded by opts.MaxBytes.
func New(opts Options) (*Store, error) {
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c, err := otter.New(&otter.Options[string, *item]{
		MaximumWeight: opts.MaxBytes,
		Weigher: func(k string, it *item) uint32 {
			return uint32(min(len(k)+len(it.value)+len(it.token)+entryOverhead, math.MaxUint32))
		},
		ExpiryCalculator: expiry{},
	})
	if err != nil {
		return nil, err
	}
	return &Store{c: c, now: opts.Now}, nil
}

// Name returns "memory".
func (s *Store) Name() string { return "memory" }

func (s *Store) token(kind byte) string {
	return string(kind) + strconv.FormatUint(s.seq.Add(1), 36)
}

func (s *Store) live(it *item, now time.Time) bool {
	return it != nil && now.Before(it.expiry)
}

func (s *Store) entry(it *item) cache.Entry {
	if it.leased {
		return cache.Entry{Status: cache.Miss, Leased: true, Token: it.token, Expiry: it.expiry, Tier: "memory"}
	}
	return cache.Entry{Status: it.status, Value: it.value, Token: it.token, Expiry: it.expiry, Delta: it.delta, Tier: "memory"}
}

// Get implements cache.Store. It fails only when ctx is done.
func (s *Store) Get(ctx context.Context, key string) (cache.Entry, error) {
	if err := ctx.Err(); err != nil {
		return cache.Entry{}, err
	}
	it, ok := s.c.GetIfPresent(key)
	if !ok || !s.live(it, s.now()) {
		return cache.Entry{Status: cache.Miss, Tier: "memory"}, nil
	}
	return s.entry(it), nil
}

func (s *Store) newItem(e cache.Entry, ttl time.Duration) (*item, error) {
	if ttl <= 0 {
		return nil, cache.ErrInvalidTTL
	}
	it := &item{status: e.Status, ttl: ttl, expiry: s.now().Add(ttl), delta: e.Delta}
	switch e.Status {
	case cache.Hit:
		// Copy, so the caller may reuse its slice.
		it.value = append(make([]byte, 0, len(e.Value)), e.Value...)
		it.token = s.token('v')
	case cache.Negative:
		it.token = s.token('n')
	default:
		return nil, errors.New("memorycache: only Hit and Negative entries can be stored")
	}
	return it, nil
}

// Set implements cache.Store.
func (s *Store) Set(ctx context.Context, key string, e cache.Entry, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	it, err := s.newItem(e, ttl)
	if err != nil {
		return err
	}
	s.c.Set(key, it)
	return nil
}

// Delete implements cache.Store.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, k := range keys {
		s.c.Invalidate(k)
	}
	return nil
}

// Lease implements cache.Store.
func (s *Store) Lease(ctx context.Context, key string, ttl time.Duration) (string, cache.Entry, error) {
	if err := ctx.Err(); err != nil {
		return "", cache.Entry{}, err
	}
	if ttl <= 0 {
		return "", cache.Entry{}, cache.ErrInvalidTTL
	}
	now := s.now()
	var token string
	var held cache.Entry
	s.c.Compute(key, func(old *item, found bool) (*item, otter.ComputeOp) {
		if found && s.live(old, now) {
			held = s.entry(old)
			return old, otter.CancelOp
		}
		token = s.token('l')
		return &item{leased: true, token: token, ttl: ttl, expiry: now.Add(ttl)}, otter.WriteOp
	})
	return token, held, nil
}

// Fill implements cache.Store.
func (s *Store) Fill(ctx context.Context, key, token string, e cache.Entry, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	it, err := s.newItem(e, ttl)
	if err != nil {
		return false, err
	}
	now := s.now()
	stored := false
	s.c.ComputeIfPresent(key, func(old *item) (*item, otter.ComputeOp) {
		if !s.live(old, now) || old.token != token || token == "" {
			return old, otter.CancelOp
		}
		stored = true
		return it, otter.WriteOp
	})
	return stored, nil
}

// Release implements cache.Store.
func (s *Store) Release(ctx context.Context, key, token string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.c.ComputeIfPresent(key, func(old *item) (*item, otter.ComputeOp) {
		if old.leased && old.token == token {
			return nil, otter.InvalidateOp
		}
		return old, otter.CancelOp
	})
	return nil
}
