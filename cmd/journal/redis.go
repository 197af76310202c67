package main

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/journalsvc/journal/cache"
	"github.com/journalsvc/journal/cache/rediscache"
	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/memorylimit"
	"github.com/journalsvc/journal/ratelimit/redislimit"
)

// errRedisConnecting is what the cache and the limiter see before the first
// connection to Redis succeeds.
var errRedisConnecting = errors.New("redis: not connected yet")

// errBudgetSpent is returned by cache calls made after the request's Redis
// budget is spent (entrycache bypasses the cache before that happens).
var errBudgetSpent = errors.New("redis: request's time budget spent")

// redisBackends holds the Redis client and the limiter and cache store built
// on it. Redis being down at start-up does not stop the service (DESIGN.md
// 2): connect keeps trying in the background, and until it succeeds the
// limiter decides by each policy's fail mode and the cache store fails every
// call (so entrycache reads the database). Safe for concurrent use.
type redisBackends struct {
	url     RedisURL
	log     *slog.Logger
	limOpts redislimit.Options
	rcOpts  rediscache.Options
	ccfg    rediscache.ClientConfig

	client  atomic.Pointer[rueidis.Client]
	limiter atomic.Pointer[redislimit.Limiter]
	store   atomic.Pointer[rediscache.Store]
	lag     atomic.Pointer[rediscache.LagProbe]
	onLag   func(time.Duration) // observes the invalidation lag; nil: no probe

	stop chan struct{}
	done sync.WaitGroup
	once sync.Once
}

// redisConnectRetry is the pause between connection attempts at start-up.
const redisConnectRetry = time.Second

// startRedis tries to connect once, synchronously, and keeps trying in the
// background if that fails. Close stops it.
// onLag, if not nil, receives the invalidation lag measured by a
// rediscache.LagProbe on the key <prefix>lag, shared by every instance.
func startRedis(u RedisURL, log *slog.Logger, limOpts redislimit.Options, rcOpts rediscache.Options, ccfg rediscache.ClientConfig, onLag func(time.Duration)) *redisBackends {
	b := &redisBackends{url: u, log: log, limOpts: limOpts, rcOpts: rcOpts, ccfg: ccfg, onLag: onLag, stop: make(chan struct{})}
	b.ccfg.OnInvalidatedKey = func(key string) {
		if p := b.lag.Load(); p != nil {
			p.Invalidated(key)
		}
	}
	if err := b.connect(); err != nil {
		log.Warn("redis unavailable at start-up; serving degraded and retrying in the background", "redis", u.String(), "err", err)
		b.done.Add(1)
		go func() {
			defer b.done.Done()
			t := time.NewTicker(redisConnectRetry)
			defer t.Stop()
			for {
				select {
				case <-b.stop:
					return
				case <-t.C:
					if err := b.connect(); err == nil {
						return
					}
				}
			}
		}()
	}
	return b
}

func (b *redisBackends) clientOptions() rueidis.ClientOption {
	opt := rediscache.ClientOptions(b.url.Addrs, b.ccfg)
	opt.Username = b.url.Username
	opt.Password = b.url.Password
	opt.SelectDB = b.url.DB
	if b.url.TLS {
		opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if b.url.Cluster() {
		opt.ShuffleInit = true
	}
	return opt
}

func (b *redisBackends) connect() error {
	client, near, err := rediscache.NewClient(b.clientOptions())
	if err != nil {
		return err
	}
	if !near {
		b.log.Warn("redis refuses client-side caching (CLIENT TRACKING): no near cache, every cached read goes to Redis")
	}
	lim, err := redislimit.New(client, b.limOpts)
	if err != nil {
		client.Close()
		return err
	}
	// redislimit reads the server's maxmemory-policy in the background and
	// warns through limOpts.Logger when it could evict the limiter's keys.
	st, err := rediscache.New(client, b.rcOpts)
	if err != nil {
		_ = lim.Close()
		client.Close()
		return err
	}
	b.client.Store(&client)
	b.limiter.Store(lim)
	b.store.Store(st)
	if b.onLag != nil && near {
		b.lag.Store(rediscache.NewLagProbe(client, b.limOpts.Prefix+"lag", 2*time.Second, b.onLag))
	}
	b.log.Info("redis connected", "redis", b.url.String(), "cluster", b.url.Cluster(), "near_cache", near)
	return nil
}

// Ping checks Redis for /readyz.
func (b *redisBackends) Ping(ctx context.Context) error {
	c := b.client.Load()
	if c == nil {
		return errRedisConnecting
	}
	return (*c).Do(ctx, (*c).B().Ping().Build()).Error()
}

// Close stops connecting and closes the limiter, the cache store and the
// client.
func (b *redisBackends) Close() {
	b.once.Do(func() { close(b.stop) })
	b.done.Wait()
	if p := b.lag.Load(); p != nil {
		p.Close()
	}
	if l := b.limiter.Load(); l != nil {
		_ = l.Close()
	}
	if s := b.store.Load(); s != nil {
		s.Close()
	}
	if c := b.client.Load(); c != nil {
		(*c).Close()
	}
}

// redisLimiter is the service's ratelimit.Limiter when Redis is configured:
// the redislimit.Limiter once connected; before that, each policy's fail
// mode with a local limiter for FailLocal (at the full limit: no heartbeat
// has told this instance how many others run).
type redisLimiter struct {
	b     *redisBackends
	local *memorylimit.Limiter
}

var _ ratelimit.Limiter = (*redisLimiter)(nil)

// Decide decides in Redis within the request's Redis budget; before the
// first connection, or with the budget spent, by each policy's fail mode.
func (l *redisLimiter) Decide(ctx context.Context, subject string, items ...ratelimit.Item) (ratelimit.Decision, error) {
	return l.decide(ctx, subject, items, false)
}

// Peek is Decide without consuming.
func (l *redisLimiter) Peek(ctx context.Context, subject string, items ...ratelimit.Item) (ratelimit.Decision, error) {
	return l.decide(ctx, subject, items, true)
}

func (l *redisLimiter) decide(ctx context.Context, subject string, items []ratelimit.Item, peek bool) (ratelimit.Decision, error) {
	r := l.b.limiter.Load()
	if r == nil {
		return ratelimit.DecideWithout(ctx, l.local, subject, items, peek, 1, errRedisConnecting)
	}
	bctx, done, ok := redisCall(ctx)
	if !ok {
		return ratelimit.DecideWithout(ctx, l.local, subject, items, peek, r.LiveInstances(), errBudgetSpent)
	}
	defer done()
	if peek {
		return r.Peek(bctx, subject, items...)
	}
	return r.Decide(bctx, subject, items...)
}

func (l *redisLimiter) Reset(ctx context.Context, subject, policy string) error {
	if r := l.b.limiter.Load(); r != nil {
		return r.Reset(ctx, subject, policy)
	}
	return l.local.Reset(ctx, subject, policy)
}

// redisCacheStore is the service's cache.Store when Redis is configured: the
// rediscache.Store once connected, an error before.
type redisCacheStore struct{ b *redisBackends }

var _ cache.Store = redisCacheStore{}

// get returns the connected store and ctx bounded by the request's Redis
// budget; done charges the call.
func (s redisCacheStore) get(ctx context.Context) (*rediscache.Store, context.Context, func(), error) {
	st := s.b.store.Load()
	if st == nil {
		return nil, ctx, nil, errRedisConnecting
	}
	bctx, done, ok := redisCall(ctx)
	if !ok {
		return st, ctx, nil, errBudgetSpent
	}
	return st, bctx, done, nil
}

// cleanup is get for Fill and Release, which end a fill lease: they run even
// with the budget spent (bounded by the store's own timeout and charged), or
// the lease would stay until it expires and every other reader of the key
// would wait for a fill that never comes.
func (s redisCacheStore) cleanup(ctx context.Context) (*rediscache.Store, context.Context, func(), error) {
	st, bctx, done, err := s.get(ctx)
	if errors.Is(err, errBudgetSpent) {
		return st, ctx, func() {}, nil
	}
	return st, bctx, done, err
}

func (s redisCacheStore) Name() string { return "redis" }

// Healthy reports whether the store is connected and passes its liveness
// check (entrycache reads the database while it does not).
func (s redisCacheStore) Healthy() bool {
	st := s.b.store.Load()
	return st != nil && st.Healthy()
}

func (s redisCacheStore) Get(ctx context.Context, key string) (cache.Entry, error) {
	st, ctx, done, err := s.get(ctx)
	if err != nil {
		return cache.Entry{}, err
	}
	defer done()
	return st.Get(ctx, key)
}

func (s redisCacheStore) Set(ctx context.Context, key string, e cache.Entry, ttl time.Duration) error {
	st, ctx, done, err := s.get(ctx)
	if err != nil {
		return err
	}
	defer done()
	return st.Set(ctx, key, e, ttl)
}

// Delete invalidates keys after a write, within the request's Redis budget
// and the store's timeout (rediscache returns at the deadline even while its
// client reconnects). Invalidations run inside the outbox transaction,
// holding its row locks: the background replayer, which has no request
// budget, must not hold them longer than one Redis deadline either, or a
// write of the same user waits behind it.
func (s redisCacheStore) Delete(ctx context.Context, keys ...string) error {
	st, ctx, done, err := s.get(ctx)
	if err != nil {
		return err
	}
	defer done()
	return st.Delete(ctx, keys...)
}

func (s redisCacheStore) Lease(ctx context.Context, key string, ttl time.Duration) (string, cache.Entry, error) {
	st, ctx, done, err := s.get(ctx)
	if err != nil {
		return "", cache.Entry{}, err
	}
	defer done()
	return st.Lease(ctx, key, ttl)
}

func (s redisCacheStore) Fill(ctx context.Context, key, token string, e cache.Entry, ttl time.Duration) (bool, error) {
	st, ctx, done, err := s.cleanup(ctx)
	if err != nil {
		return false, err
	}
	defer done()
	return st.Fill(ctx, key, token, e, ttl)
}

func (s redisCacheStore) Release(ctx context.Context, key, token string) error {
	st, ctx, done, err := s.cleanup(ctx)
	if err != nil {
		return err
	}
	defer done()
	return st.Release(ctx, key, token)
}
