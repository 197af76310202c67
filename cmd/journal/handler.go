package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/cache"
	"github.com/journalsvc/journal/cache/memorycache"
	"github.com/journalsvc/journal/cache/rediscache"
	"github.com/journalsvc/journal/entrycache"
	"github.com/journalsvc/journal/httpapi"
	"github.com/journalsvc/journal/internal/config"
	"github.com/journalsvc/journal/internal/metrics"
	"github.com/journalsvc/journal/internal/purge"
	"github.com/journalsvc/journal/internal/redisconn"
	"github.com/journalsvc/journal/internal/tracing"
	"github.com/journalsvc/journal/password"
	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/httplimit"
	"github.com/journalsvc/journal/ratelimit/memorylimit"
	"github.com/journalsvc/journal/ratelimit/redislimit"
)

// stack is the handler and what must be closed after the server stopped.
type stack struct {
	handler http.Handler
	// ops serves /metrics, /livez and /readyz when JOURNAL_OPS_ADDR is set
	// (handler then answers them 404); nil otherwise.
	ops     http.Handler
	closers []func()
}

// close releases the stack's resources in reverse order of creation.
func (s *stack) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

// newHandler builds the HTTP handler stack on db: the rate limiter deciding
// policies and the entry cache (Redis-backed when JOURNAL_REDIS_URL is set,
// in-process otherwise), the background purge, and the API (httpapi) with a
// fresh Prometheus registry and /readyz checking the database (and Redis when
// configured) and answering "draining" once draining is set. On error,
// whatever was built is closed.
func newHandler(cfg config.Config, policies httpapi.Policies, logger *slog.Logger, instance string, db journal.Database, draining *atomic.Bool, tr *tracing.Tracing) (_ *stack, err error) {
	st := &stack{}
	defer func() {
		if err != nil {
			st.close()
		}
	}()
	reg := metrics.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		return nil, err
	}
	if err := metrics.RegisterOutbox(reg, db.PendingChanges); err != nil {
		return nil, err
	}
	trusted, err := httplimit.NewTrustedProxies(cfg.TrustedProxies...)
	if err != nil {
		return nil, &config.Error{Setting: "JOURNAL_TRUSTED_PROXIES", Want: err.Error()}
	}

	var (
		primary    ratelimit.Limiter // nil: the in-process limiter alone
		instances  func() int64
		cacheStore cache.Store
		cacheUp    func() bool // nil: in-process, always up
		redisCheck httpapi.Check
		bypass     func(context.Context) bool
	)
	if cfg.Redis == nil {
		ms, err := memorycache.New(memorycache.Options{})
		if err != nil {
			return nil, err
		}
		cacheStore = ms
	} else {
		conn := redisconn.Start(redisconn.Options{
			URL:    *cfg.Redis,
			Logger: logger.With("instance", instance),
			Limiter: redislimit.Options{
				Prefix:     cfg.RedisPrefix,
				Timeout:    cfg.RedisTimeout,
				Lease:      cfg.RateLimitLease,
				InstanceID: instance,
				Logger:     logger.With("instance", instance),
			},
			Cache:     rediscache.Options{NearMaxAge: cfg.CacheNearMaxAge, Timeout: cfg.RedisTimeout},
			Client:    rediscache.ClientConfig{OnInvalidations: m.OnInvalidations},
			OnLag:     m.OnInvalidationLag,
			NewClient: tr.NewRedisClient(),
		})
		st.closers = append(st.closers, conn.Close)
		primary, instances = conn.Limiter(), conn.LiveInstances
		cacheStore = conn.CacheStore()
		cacheUp = conn.CacheHealthy
		redisCheck = func(ctx context.Context) error {
			err := conn.Ready(ctx)
			if errors.Is(err, redisconn.ErrWarming) {
				return fmt.Errorf("%w: %w", httpapi.ErrStarting, err)
			}
			return err
		}
		bypass = redisconn.Spent
		if err := metrics.RegisterRedisLimiter(reg, conn.LimiterStats); err != nil {
			return nil, err
		}
	}
	local := memorylimit.New(memorylimit.Options{})
	st.closers = append(st.closers, func() { _ = local.Close() })
	var limiter ratelimit.Limiter = local
	if primary != nil {
		limiter, err = ratelimit.NewFallback(primary, local, ratelimit.FallbackOptions{Instances: instances})
		if err != nil {
			return nil, err
		}
	}
	limiter = tr.Limiter(limiter) // a span per decision when tracing is on
	logger.Info("rate limits", "instance", instance, "policies", policies.Summary())

	cached, err := entrycache.New(noClose{db}, cacheStore, entrycache.Options{
		Prefix:       cfg.RedisPrefix,
		TTL:          cfg.CacheTTL,
		Logger:       logger.With("instance", instance),
		OnTrust:      m.OnTrust,
		OnInvalidate: m.OnOutboxApplied,
		Healthy:      cacheUp,
		// A reader waits for another instance's fill at most a few Redis
		// budgets: a fill that failed (Redis restarting) must not hold every
		// reader of the key for the library's default 500ms.
		Cache:  cache.Options{OnResult: m.OnCacheResult, Jitter: 0.1, LeaseWait: max(4*cfg.RedisTimeout, 100*time.Millisecond)},
		Bypass: bypass,
	})
	if err != nil {
		return nil, err
	}
	st.closers = append(st.closers, func() { _ = cached.Close() })

	// The purge of expired tokens and idempotency records runs on every
	// instance; the database lets one run at a time. It stops before the
	// database closes.
	purgeCtx, stopPurge := context.WithCancel(context.Background())
	purged := make(chan struct{})
	go func() {
		defer close(purged)
		purge.Run(purgeCtx, db, purge.Options{
			Interval: purgeInterval,
			Logger:   logger.With("instance", instance),
			OnPurge:  m.OnPurge,
		})
	}()
	st.closers = append(st.closers, func() { stopPurge(); <-purged })

	apiOpts := httpapi.Options{
		Logger: logger,
		// Users and Tokens go through the cache: their revocations must
		// drop cached tokens on every instance.
		Users:          cached,
		Tokens:         cached,
		Entries:        cached,
		Idempotency:    db,
		IdempotencyTTL: cfg.IdempotencyTTL,
		Passwords:      password.New(password.Options{}),
		Metrics:        reg,
		InstanceID:     instance,
		TokenTTL:       cfg.TokenTTL,
		Database:       db.Ping,
		Redis:          redisCheck,
		Draining:       draining.Load,
		Limiter:        limiter,
		Policies:       policies,
		TrustedProxies: trusted,
		OnDecision:     m.OnDecision,
	}
	if tr != nil {
		apiOpts.StartSpan = tr.StartRequest
	}
	var h http.Handler
	if cfg.OpsAddr != "" {
		h, st.ops, err = httpapi.NewSplitServer(apiOpts)
	} else {
		h, err = httpapi.NewServer(apiOpts)
	}
	if err != nil {
		return nil, err
	}
	st.handler = h
	if cfg.Redis != nil {
		st.handler = redisconn.WithBudget(h, cfg.RedisTimeout)
	}
	return st, nil
}

// purgeInterval is the time between two purges of expired tokens and
// idempotency records: with the default token and idempotency lifetimes, a
// minute keeps both tables within a minute of their live rows.
const purgeInterval = time.Minute

// noClose keeps entrycache's Close from closing the database, which run
// closes itself after the server stopped.
type noClose struct{ journal.Database }

func (noClose) Close() error { return nil }
