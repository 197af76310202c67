// Package redisconn connects the journal service to Redis. It parses
// JOURNAL_REDIS_URL ([ParseURL]), connects in the background so the service
// starts while Redis is down ([Start]), builds the rate limiter (redislimit)
// and the cache store (rediscache) on the client once connected, and bounds
// the time each request spends waiting on Redis with a budget that every call
// of the request shares ([WithBudget]).
//
// Until the first connection succeeds, [Conn.Limiter] reports its store
// unavailable (so the service's ratelimit.Fallback decides by fail mode) and
// [Conn.CacheStore] fails every call (so reads go to the database).
package redisconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/journalsvc/journal/cache/rediscache"
	"github.com/journalsvc/journal/internal/tick"
	"github.com/journalsvc/journal/ratelimit/redislimit"
)

// Errors of the adapters and of [Conn.Ready].
var (
	// ErrConnecting: the first connection to Redis has not succeeded yet.
	ErrConnecting = errors.New("redis: not connected yet")
	// ErrBudgetSpent: the request's Redis budget is spent.
	ErrBudgetSpent = errors.New("redis: request's time budget spent")
	// ErrWarming (from Ready): Redis answers, but the limiter has not yet
	// dialed its connections and loaded its script.
	ErrWarming = errors.New("redis: rate limiter warming up")
)

// Options configures [Start].
type Options struct {
	URL    URL
	Logger *slog.Logger // default: discard
	// Limiter and Cache configure the limiter and the cache store built on
	// the client. Client configures the client (rediscache.ClientOptions).
	Limiter redislimit.Options
	Cache   rediscache.Options
	Client  rediscache.ClientConfig
	// OnLag, if set, receives the invalidation lag measured by a
	// rediscache.LagProbe on the key <Limiter.Prefix>lag, which every
	// instance shares (only with a near cache).
	OnLag func(time.Duration)
	// Retry is the pause between connection attempts. Default 1s.
	Retry time.Duration
	// NewClient makes the Redis client, for a caller that wraps it (tracing).
	// Default rueidis.NewClient.
	NewClient func(rueidis.ClientOption) (rueidis.Client, error)
}

// Conn is the service's connection to Redis, with the limiter and cache store
// built on it once connected. Safe for concurrent use; Close it after use.
type Conn struct {
	opts Options
	log  *slog.Logger

	client  atomic.Pointer[rueidis.Client]
	limiter atomic.Pointer[redislimit.Limiter]
	store   atomic.Pointer[rediscache.Store]
	lag     atomic.Pointer[rediscache.LagProbe]
	near    atomic.Bool // the client keeps a near cache

	stop chan struct{}
	done sync.WaitGroup
	once sync.Once
}

// Start tries to connect once, synchronously, and keeps trying in the
// background if that fails, until it succeeds or Close is called.
func Start(opts Options) *Conn {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Retry <= 0 {
		opts.Retry = time.Second
	}
	if opts.NewClient == nil {
		opts.NewClient = rueidis.NewClient
	}
	c := &Conn{opts: opts, log: opts.Logger, stop: make(chan struct{})}
	c.opts.Client.OnInvalidatedKey = func(key string) {
		if p := c.lag.Load(); p != nil {
			p.Invalidated(key)
		}
	}
	if err := c.connect(); err != nil {
		c.log.Warn("redis unavailable at start-up; serving degraded and retrying in the background", "redis", opts.URL.String(), "err", err)
		c.done.Add(1)
		go func() {
			defer c.done.Done()
			tick.Every(c.stop, opts.Retry, func() bool { return c.connect() != nil })
		}()
	}
	return c
}

func (c *Conn) clientOptions() rueidis.ClientOption {
	u := c.opts.URL
	opt := rediscache.ClientOptions(u.Addrs, c.opts.Client)
	opt.Username = u.Username
	opt.Password = u.Password
	opt.SelectDB = u.DB
	if u.TLS {
		opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if u.Cluster() {
		opt.ShuffleInit = true
	}
	return opt
}

func (c *Conn) connect() error {
	client, near, err := rediscache.NewClientWith(c.clientOptions(), c.opts.NewClient)
	if err != nil {
		return err
	}
	if !near {
		c.log.Warn("redis refuses client-side caching (CLIENT TRACKING): no near cache, every cached read goes to Redis")
	}
	lim, err := redislimit.New(client, c.opts.Limiter)
	if err != nil {
		client.Close()
		return err
	}
	st, err := rediscache.New(client, c.opts.Cache)
	if err != nil {
		_ = lim.Close()
		client.Close()
		return err
	}
	// Warm the limiter now, so the instance's first decisions find their
	// connections dialed; a failure here is retried by Ready.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if err := lim.Warm(ctx); err != nil {
		c.log.Warn("redis: rate limiter not warmed up yet", "err", err)
	}
	cancel()
	c.near.Store(near)
	c.client.Store(&client)
	c.limiter.Store(lim)
	c.store.Store(st)
	if c.opts.OnLag != nil && near {
		c.lag.Store(rediscache.NewLagProbe(client, c.opts.Limiter.Prefix+"lag", 2*time.Second, c.opts.OnLag))
	}
	c.log.Info("redis connected", "redis", c.opts.URL.String(), "cluster", c.opts.URL.Cluster(), "near_cache", near)
	return nil
}

// Ready is the readiness check of Redis: nil when Redis answers a PING and
// the limiter is warm; an error wrapping [ErrWarming] while Redis answers
// but the limiter is still dialing its connections or loading its script;
// any other error when Redis is unreachable ([ErrConnecting] before the
// first connection).
func (c *Conn) Ready(ctx context.Context) error {
	cp := c.client.Load()
	if cp == nil {
		return ErrConnecting
	}
	client := *cp
	if err := client.Do(ctx, client.B().Ping().Build()).Error(); err != nil {
		return err
	}
	if err := c.limiter.Load().Warm(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrWarming, err)
	}
	return nil
}

// LimiterStats returns the limiter's counters, and false before the first
// connection.
func (c *Conn) LimiterStats() (redislimit.Stats, bool) {
	if l := c.limiter.Load(); l != nil {
		return l.Stats(), true
	}
	return redislimit.Stats{}, false
}

// LiveInstances returns the live instances the limiter last saw in Redis (1
// before the first connection): the Instances of the service's
// ratelimit.Fallback.
func (c *Conn) LiveInstances() int64 {
	if l := c.limiter.Load(); l != nil {
		return l.LiveInstances()
	}
	return 1
}

// Close stops connecting and closes the limiter, the cache store and the
// client.
func (c *Conn) Close() {
	c.once.Do(func() { close(c.stop) })
	c.done.Wait()
	if p := c.lag.Load(); p != nil {
		p.Close()
	}
	if l := c.limiter.Load(); l != nil {
		_ = l.Close()
	}
	if s := c.store.Load(); s != nil {
		s.Close()
	}
	if cp := c.client.Load(); cp != nil {
		(*cp).Close()
	}
}
