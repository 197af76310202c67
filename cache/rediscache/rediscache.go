// Package rediscache is a [cache.Store] on Redis (standalone or Cluster) with a
// near cache in each instance, kept coherent by Redis server-assisted
// client-side caching (RESP3 CLIENT TRACKING) through rueidis.
//
// Reads go through rueidis DoCache: a value read once is served from the
// instance's memory until Redis pushes an invalidation for its key (any write,
// by any instance), until it expires in Redis, or for at most
// [Options.NearMaxAge], whichever comes first. rueidis flushes a connection's
// near cache when the connection is lost.
//
// Read-your-writes on the writing instance: Redis sends the writer's own
// invalidation after the reply to its write (redis/redis#9422), so a read right
// after a write could still find the old copy. Every write of this Store is
// therefore sent in one pipeline with a PTTL of the same key, on the
// connection that also serves the key's near-cache reads (one connection per
// node, see [ClientOptions]); Redis delivers the invalidation before the PTTL's
// reply, so when a write returns its invalidation has been applied. Other
// instances see the write when its invalidation reaches them, after the
// invalidation lag that [LagProbe] measures.
//
// Hung Redis: rueidis drops a connection whose PING is not answered within
// ConnWriteTimeout, flushing its near cache. In addition the Store PINGs every
// node every [Options.LivenessInterval]; while a PING fails it serves no
// near-cache copy (reads go to Redis and fail with its error), so a paused
// Redis turns reads into errors within about LivenessInterval+PingTimeout.
//
// Values are stored with a small header: a kind byte ('v' value, 'n' negative
// entry), a 16-hex-digit version id, the expiry and the load time; a fill
// lease is the string "lease:<id>". Keys are used as given: the caller chooses
// the prefix, and with Redis Cluster the hash tags.
package rediscache

import (
	"context"
	"crypto/sha1"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/journalsvc/journal/cache"
	"github.com/journalsvc/journal/internal/tick"
	"github.com/redis/rueidis"
)

var (
	//go:embed lease.lua
	leaseLua string
	//go:embed fill.lua
	fillLua string
	//go:embed release.lua
	releaseLua string
)

// Errors.
var (
	// ErrNilClient is returned by New without a client.
	ErrNilClient = errors.New("rediscache: nil client")
	// ErrMalformed reports a key holding something this package did not write.
	ErrMalformed = errors.New("rediscache: malformed entry")
)

// Options configure a [Store]. The zero value gives the documented defaults.
type Options struct {
	// NearMaxAge is the longest a near-cache copy is served without Redis
	// confirming it (the DoCache TTL; rueidis also caps it at the key's PTTL).
	// Default 30s (JOURNAL_CACHE_NEAR_MAX_AGE).
	NearMaxAge time.Duration
	// Timeout bounds each call to Redis (on top of the caller's context).
	// Default 50ms. Calls are never retried.
	Timeout time.Duration
	// LivenessInterval is the gap between liveness PINGs. Default 250ms.
	LivenessInterval time.Duration
	// PingTimeout bounds a liveness PING. Default 250ms.
	PingTimeout time.Duration
	// BarrierInterval is the least time between two rounds of
	// [Store.Barrier]. Default 1ms.
	BarrierInterval time.Duration
	// OnHealth, if set, is called when the liveness check changes its verdict
	// (false: near cache not served). It must be fast.
	OnHealth func(healthy bool)
	// Now returns the current time, used for the expiry stamped in values.
	// Default time.Now.
	Now func() time.Time
}

// Store is a cache.Store on Redis. It is safe for concurrent use. Create it
// with [New] and stop it with [Store.Close]; the client stays the caller's.
type Store struct {
	client  rueidis.Client
	opts    Options
	healthy atomic.Bool
	bar     barrier
	fill    script
	lease   script
	release script

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

var _ cache.Store = (*Store)(nil)

type script struct{ src, sha string }

func newScript(src string) script {
	sum := sha1.Sum([]byte(src))
	return script{src: src, sha: hex.EncodeToString(sum[:])}
}

// New returns a Store using client, which should be built from
// [ClientOptions] (see there for why). New does not contact Redis; it starts
// the liveness goroutine, which Close stops.
func New(client rueidis.Client, opts Options) (*Store, error) {
	if client == nil {
		return nil, ErrNilClient
	}
	if opts.NearMaxAge <= 0 {
		opts.NearMaxAge = 30 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 50 * time.Millisecond
	}
	if opts.LivenessInterval <= 0 {
		opts.LivenessInterval = 250 * time.Millisecond
	}
	if opts.PingTimeout <= 0 {
		opts.PingTimeout = 250 * time.Millisecond
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.BarrierInterval <= 0 {
		opts.BarrierInterval = time.Millisecond
	}
	s := &Store{
		client:  client,
		opts:    opts,
		fill:    newScript(fillLua),
		lease:   newScript(leaseLua),
		release: newScript(releaseLua),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	s.healthy.Store(true)
	go s.liveness()
	return s, nil
}

// Close stops the liveness check. It does not close the client. The Store
// must not be used after Close.
func (s *Store) Close() {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
}

// Healthy reports the last verdict of the liveness check: false means the
// near cache is not served.
func (s *Store) Healthy() bool { return s.healthy.Load() }

func (s *Store) liveness() {
	defer close(s.done)
	tick.Every(s.stop, s.opts.LivenessInterval, func() bool {
		ok := s.ping()
		if s.healthy.Swap(ok) != ok && s.opts.OnHealth != nil {
			s.opts.OnHealth(ok)
		}
		return true
	})
}

// ping PINGs every node; it reports whether all answered within
// PingTimeout. It returns at PingTimeout even when rueidis does not (while it
// reconnects to a hung node its callers wait for the dial, see doMulti): a
// verdict that waits for the dial would keep a hung Redis "healthy" for a
// second, and every write meanwhile would spend its whole deadline on it.
func (s *Store) ping() bool {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.PingTimeout)
	defer cancel()
	return s.pingNodes(ctx) == nil
}

// pingNodes PINGs every node on its connection and returns the first error,
// at ctx's deadline at the latest.
func (s *Store) pingNodes(ctx context.Context) error {
	nodes := s.client.Nodes()
	if len(nodes) == 0 {
		return errNoNodes
	}
	return bounded(ctx, func() error {
		var wg sync.WaitGroup
		var first atomic.Pointer[error]
		for _, n := range nodes {
			wg.Go(func() {
				if err := n.Do(ctx, n.B().Ping().Build()).Error(); err != nil {
					first.CompareAndSwap(nil, &err)
				}
			})
		}
		wg.Wait()
		if err := first.Load(); err != nil {
			return *err
		}
		return nil
	}, ctx.Err)
}

var errNoNodes = errors.New("rediscache: no Redis node known")

// Name returns "redis".
func (s *Store) Name() string { return "redis" }

// withTimeout bounds ctx by Options.Timeout. When ctx already ends no later
// (the service's per-request Redis budget), ctx is returned as is: a derived
// context would not change the deadline, only allocate a cancelCtx and
// register it with its parent on every Get.
func (s *Store) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && !dl.After(time.Now().Add(s.opts.Timeout)) {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.opts.Timeout)
}

// Get implements cache.Store. Entry.Tier is "near" for a near-cache hit and
// "redis" otherwise.
func (s *Store) Get(ctx context.Context, key string) (cache.Entry, error) {
	if err := ctx.Err(); err != nil {
		return cache.Entry{}, err
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	var resp rueidis.RedisResult
	if s.healthy.Load() {
		resp = s.client.DoCache(ctx, s.client.B().Get().Key(key).Cache(), s.opts.NearMaxAge)
	} else {
		// Redis failed its last liveness check: rueidis may be reconnecting,
		// and would hold this read for the dial (see doMulti). Healthy reads
		// are not guarded: a near-cache hit must stay cheap, and a
		// reconnection starts only after ConnWriteTimeout without answers,
		// by when the liveness check (bounded by PingTimeout) has normally
		// given its verdict.
		resp = s.doMulti(ctx, s.client.B().Get().Key(key).Build())[0]
	}
	tier := "redis"
	if resp.IsCacheHit() {
		tier = "near"
	}
	v, err := resp.ToString()
	if rueidis.IsRedisNil(err) {
		return cache.Entry{Status: cache.Miss, Tier: tier}, nil
	}
	if err != nil {
		return cache.Entry{}, fmt.Errorf("rediscache: get: %w", err)
	}
	b, _ := resp.AsBytes() // v's bytes, not copied; no error where v had none
	e, err := decode(v, b)
	e.Tier = tier
	return e, err
}

// Encoding: kind(1) id(16 hex) expiry-unix-ms(8) delta-µs(8) value.
const (
	idLen       = 16
	tokenLen    = 1 + idLen
	headerLen   = tokenLen + 16
	leasePrefix = "lease:"
)

func newID() string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

func (s *Store) encode(e cache.Entry, ttl time.Duration) (string, error) {
	if ttl <= 0 {
		return "", cache.ErrInvalidTTL
	}
	var kind byte
	switch e.Status {
	case cache.Hit:
		kind = 'v'
	case cache.Negative:
		kind = 'n'
	default:
		return "", errors.New("rediscache: only Hit and Negative entries can be stored")
	}
	b := make([]byte, 0, headerLen+len(e.Value))
	b = append(b, kind)
	b = append(b, newID()...)
	b = binary.BigEndian.AppendUint64(b, uint64(s.opts.Now().Add(ttl).UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, uint64(max(e.Delta, 0).Microseconds()))
	if kind == 'v' {
		b = append(b, e.Value...)
	}
	return string(b), nil
}

// decode parses a value as stored, given both as the string rueidis holds
// (v) and as the same bytes, not copied (b, from RedisResult.AsBytes): the
// token is a substring of v and the value a subslice of b, so a near-cache
// hit copies nothing.
func decode(v string, b []byte) (cache.Entry, error) {
	if len(v) == len(leasePrefix)+idLen && v[:len(leasePrefix)] == leasePrefix {
		return cache.Entry{Status: cache.Miss, Leased: true, Token: v}, nil
	}
	if len(b) < headerLen || (b[0] != 'v' && b[0] != 'n') {
		return cache.Entry{}, ErrMalformed
	}
	e := cache.Entry{
		Status: cache.Hit,
		Token:  v[:tokenLen],
		Expiry: time.UnixMilli(int64(binary.BigEndian.Uint64(b[tokenLen:]))),
		Delta:  time.Duration(binary.BigEndian.Uint64(b[tokenLen+8:])) * time.Microsecond,
	}
	if b[0] == 'n' {
		e.Status = cache.Negative
	} else {
		e.Value = b[headerLen:]
	}
	return e, nil
}

func ms(d time.Duration) string {
	return strconv.FormatInt(max(d.Milliseconds(), 1), 10)
}

// barrier returns the command sent after each write of key on the same
// connection: its reply comes after the invalidation the write caused.
func (s *Store) barrier(key string) rueidis.Completed {
	return s.client.B().Pttl().Key(key).Build()
}

// writeErr returns the first error among the results of a write pipeline.
func writeErr(op string, resps []rueidis.RedisResult) error {
	for _, r := range resps {
		if err := r.Error(); err != nil {
			return fmt.Errorf("rediscache: %s: %w", op, err)
		}
	}
	return nil
}

// doMulti is client.DoMulti bounded by ctx even when the client does not
// honour it: while rueidis reconnects to a hung server (one that accepts TCP
// but answers nothing, like a paused master), its callers wait for the
// reconnection's dial timeout, not for their own deadline, and the dial may
// take many times what ctx allows. A write must not wait that long; it gets
// ctx's error instead, and its result is whatever Redis did, as for any
// timed-out write. Get uses it only while the liveness check fails: near-cache
// hits must stay cheap, and a goroutine per call would cost as much as the
// hit itself.
func (s *Store) doMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	if _, ok := ctx.Deadline(); !ok {
		return s.client.DoMulti(ctx, cmds...)
	}
	return bounded(ctx, func() []rueidis.RedisResult { return s.client.DoMulti(ctx, cmds...) },
		func() []rueidis.RedisResult {
			r := make([]rueidis.RedisResult, len(cmds))
			for i := range r {
				r[i] = rueidis.NewErrorResult(ctx.Err())
			}
			return r
		})
}

// bounded returns call's result, or expired's once ctx ends, whichever comes
// first; call goes on in its goroutine until rueidis lets it return.
func bounded[T any](ctx context.Context, call, expired func() T) T {
	done := make(chan T, 1)
	go func() { done <- call() }()
	select {
	case r := <-done:
		return r
	case <-ctx.Done():
		return expired()
	}
}

// settle makes one more round trip after a write of key. Redis queues the
// invalidations a write causes for other connections while it runs the write
// and flushes them to their sockets before it reads the next command, so when
// settle returns the invalidations are on their way to every other instance
// (on one host: already in their socket buffers).
func (s *Store) settle(ctx context.Context, keys ...string) {
	cmds := make(rueidis.Commands, 0, len(keys))
	for _, k := range keys {
		cmds = append(cmds, s.barrier(k))
	}
	s.doMulti(ctx, cmds...)
}

// Set implements cache.Store.
func (s *Store) Set(ctx context.Context, key string, e cache.Entry, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	v, err := s.encode(e, ttl)
	if err != nil {
		return err
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	err = writeErr("set", s.doMulti(ctx,
		s.client.B().Set().Key(key).Value(v).PxMilliseconds(max(ttl.Milliseconds(), 1)).Build(),
		s.barrier(key)))
	if err == nil {
		s.settle(ctx, key)
	}
	return err
}

// Delete implements cache.Store. Each key is deleted by its own DEL (so keys
// of different Cluster slots are fine), all in one pipeline.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	cmds := make(rueidis.Commands, 0, 2*len(keys))
	for _, k := range keys {
		cmds = append(cmds, s.client.B().Del().Key(k).Build(), s.barrier(k))
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	if err := writeErr("delete", s.doMulti(ctx, cmds...)); err != nil {
		return err
	}
	s.settle(ctx, keys...)
	return nil
}

// eval runs sc on key with args, followed by the barrier, trying EVALSHA first
// and EVAL when the script is not loaded.
func (s *Store) eval(ctx context.Context, op string, sc script, key string, args ...string) (rueidis.RedisResult, error) {
	resps := s.doMulti(ctx,
		s.client.B().Evalsha().Sha1(sc.sha).Numkeys(1).Key(key).Arg(args...).Build(),
		s.barrier(key))
	if rerr, ok := rueidis.IsRedisErr(resps[0].Error()); ok && rerr.IsNoScript() {
		resps = s.doMulti(ctx,
			s.client.B().Eval().Script(sc.src).Numkeys(1).Key(key).Arg(args...).Build(),
			s.barrier(key))
	}
	if err := writeErr(op, resps); err != nil {
		return rueidis.RedisResult{}, err
	}
	return resps[0], nil
}

// Lease implements cache.Store: SET key lease:<id> NX PX ttl, in Lua so that
// a lost race returns what the key holds in the same round trip.
func (s *Store) Lease(ctx context.Context, key string, ttl time.Duration) (string, cache.Entry, error) {
	if err := ctx.Err(); err != nil {
		return "", cache.Entry{}, err
	}
	if ttl <= 0 {
		return "", cache.Entry{}, cache.ErrInvalidTTL
	}
	token := leasePrefix + newID()
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	res, err := s.eval(ctx, "lease", s.lease, key, token, ms(ttl))
	if err != nil {
		return "", cache.Entry{}, err
	}
	if n, err := res.AsInt64(); err == nil && n == 1 {
		return token, cache.Entry{}, nil
	}
	v, err := res.ToString()
	if rueidis.IsRedisNil(err) {
		return "", cache.Entry{Status: cache.Miss, Tier: "redis"}, nil
	}
	if err != nil {
		return "", cache.Entry{}, fmt.Errorf("rediscache: lease: %w", err)
	}
	b, _ := res.AsBytes() // v's bytes, not copied; no error where v had none
	held, err := decode(v, b)
	held.Tier = "redis"
	return "", held, err
}

// Fill implements cache.Store (compare-and-set in Lua).
func (s *Store) Fill(ctx context.Context, key, token string, e cache.Entry, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if token == "" {
		return false, nil
	}
	v, err := s.encode(e, ttl)
	if err != nil {
		return false, err
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	res, err := s.eval(ctx, "fill", s.fill, key, token, v, ms(ttl))
	if err != nil {
		return false, err
	}
	n, err := res.AsInt64()
	if err != nil {
		return false, fmt.Errorf("rediscache: fill: %w", err)
	}
	if n == 1 {
		s.settle(ctx, key)
	}
	return n == 1, nil
}

// Release implements cache.Store.
func (s *Store) Release(ctx context.Context, key, token string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	_, err := s.eval(ctx, "release", s.release, key, token)
	return err
}
