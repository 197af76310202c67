// Package redislimit is the Redis backend of [ratelimit.Limiter]: one limit
// held across any number of instances sharing a Redis (or Redis Cluster).
//
// Invariants (DESIGN 4.2):
//   - One EVALSHA round trip per decision, covering every policy; the script
//     (decide.lua, EVAL on NOSCRIPT) implements exactly [ratelimit.Policy.Eval].
//     Concurrent decisions share script calls (batch.go): each is still one
//     round trip and all-or-nothing, and a batch runs atomically.
//   - Time is redis.call('TIME') inside the script: instance clocks cannot
//     matter.
//   - Every key written gets its TTL in the same script; keys found without a
//     TTL are repaired. Keys are [ratelimit.Key]: prefix + "rl:{subject}:policy",
//     so one decision is one Cluster slot.
//   - Each call waits at most Options.Timeout (default 50ms), without retries,
//     even while rueidis reconnects (it makes callers wait for a dial).
//     After Options.BreakerFailures consecutive failures a circuit breaker
//     opens: no request touches Redis until a background probe succeeds.
//   - While Redis is unavailable each policy follows its [ratelimit.FailMode]:
//     FailOpen admits (Degraded), FailClosed returns an error wrapping
//     [ratelimit.ErrUnavailable], FailLocal (the default) decides in process at
//     ceil(N / N_live), N_live being the live instances seen in Redis before
//     the outage (heartbeats in a sorted set with a TTL; at least 1).
//   - A local deny cache answers a denied (subject, policies, costs) until its
//     retry time without a round trip. [Limiter.Reset] clears it here and, by
//     PUBLISH, on every other instance.
package redislimit

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/memorylimit"
)

//go:embed decide.lua
var decideSrc string

//go:embed heartbeat.lua
var heartbeatSrc string

// Default option values.
const (
	DefaultPrefix            = "journal:"
	DefaultTimeout           = 50 * time.Millisecond
	DefaultBreakerFailures   = 5
	DefaultProbeInterval     = 150 * time.Millisecond
	DefaultHeartbeatInterval = time.Second
	DefaultDenyCacheSize     = 1 << 16
)

// Options configures a [Limiter]. The zero value is usable.
type Options struct {
	// Prefix starts every key the limiter writes. Default "journal:". It
	// must not contain '{' or '}'.
	Prefix string
	// Timeout bounds each call to Redis (a decision is one call). Default
	// 50ms. The caller's context may shorten it.
	Timeout time.Duration
	// BreakerFailures is the number of consecutive failed calls that opens
	// the circuit breaker. Default 5.
	BreakerFailures int
	// ProbeInterval is the period of the background probe (PING, with
	// Timeout as its deadline) while the breaker is open. Default 150ms.
	ProbeInterval time.Duration
	// InstanceID names this instance in the live-instance set. Default
	// hostname:pid.
	InstanceID string
	// HeartbeatInterval is how often the instance refreshes its heartbeat;
	// an instance missing for 3 intervals is no longer live. Default 1s.
	// A negative value disables heartbeats (N_live stays 1).
	HeartbeatInterval time.Duration
	// DenyCacheSize bounds the number of cached denials. Default 65,536;
	// negative disables the deny cache.
	DenyCacheSize int
	// LocalMaxKeys bounds the keys of the local fallback limiter; 0 means
	// memorylimit's default.
	LocalMaxKeys int
	// Now is the local clock, used only for durations: deny-cache expiry and
	// the local fallback. Decisions in Redis use Redis TIME. Default time.Now.
	Now func() time.Time
	// Logger receives start-up warnings (an evicting maxmemory-policy) and
	// breaker transitions. Default: discard.
	Logger *slog.Logger
	// OnBreaker, if set, is called (synchronously, so it must not block) each
	// time the breaker opens (true) or closes (false).
	OnBreaker func(open bool)
	// OnRedisCall, if set, is called after each decision's Redis call with
	// its duration and error (nil on success), for latency metrics.
	OnRedisCall func(d time.Duration, err error)
}

// Stats are cumulative counters of a Limiter, for metrics.
type Stats struct {
	RedisCalls     uint64 // decision scripts sent to Redis (a batch is one)
	RedisErrors    uint64 // of which failed (timeouts included)
	DenyCacheHits  uint64 // decisions answered by the deny cache
	Degraded       uint64 // decisions taken without Redis (open or local)
	Unavailable    uint64 // decisions failed closed (ErrUnavailable)
	BreakerOpens   uint64 // times the breaker opened
	BreakerOpen    bool   // the breaker is open now
	LiveInstances  int64  // N_live as last seen in Redis (at least 1)
	DenyCacheItems int    // entries held by the deny cache
}

// Limiter is a Redis-backed [ratelimit.Limiter], safe for concurrent use.
// Create it with [New] and stop its background goroutines with
// [Limiter.Close]; it must not be used after Close.
type Limiter struct {
	client  rueidis.Client
	opts    Options
	prefix  string
	decide  *rueidis.Lua
	beat    *rueidis.Lua
	resetCh string
	zsetKey string
	now     func() time.Time
	log     *slog.Logger
	local   *memorylimit.Limiter
	deny    *denyCache

	// scriptNow, when set (only by tests, via export_test.go), is sent to
	// the script as the time instead of Redis TIME.
	scriptNow func() time.Time

	batch *batcher

	failures  atomic.Int64
	open      atomic.Bool
	probing   atomic.Bool
	liveCount atomic.Int64

	calls, errs, denyHits, degraded, unavailable, opens atomic.Uint64

	argCache    sync.Map // ratelimit.Policy -> policyArgs
	argCacheLen atomic.Int64

	evictMu     sync.Mutex
	evictPolicy string

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var _ ratelimit.Limiter = (*Limiter)(nil)

// New returns a Limiter using client, and starts its background goroutines:
// heartbeats, the reset subscriber and a one-off check of the server's
// maxmemory-policy. It does not wait for Redis: an unreachable Redis shows up
// as failed decisions (and the fail modes), not as an error here. It returns
// an error only for a nil client or invalid options.
//
// The client should be created with rueidis.ClientOption{DisableRetry: true}
// (the limiter never retries; it has a deadline), a ConnWriteTimeout of a few
// hundred milliseconds and a short Dialer.KeepAlive, so a dead server is
// detected quickly. On standalone Redis the decisions use up to four
// dedicated connections of the client (Client.Dedicate), released at Close.
// Each call then runs in the calling goroutine, unless the client's
// connections read in the background (ClientOption.OnInvalidations set).
// That is still correct, at more CPU per call.
func New(client rueidis.Client, opts Options) (*Limiter, error) {
	if client == nil {
		return nil, errors.New("redislimit: nil client")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(opts.Prefix, "{}") {
		return nil, fmt.Errorf("redislimit: prefix %q must not contain braces", opts.Prefix)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.BreakerFailures <= 0 {
		opts.BreakerFailures = DefaultBreakerFailures
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = DefaultProbeInterval
	}
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if opts.DenyCacheSize == 0 {
		opts.DenyCacheSize = DefaultDenyCacheSize
	}
	if opts.InstanceID == "" {
		host, _ := os.Hostname()
		opts.InstanceID = host + ":" + strconv.Itoa(os.Getpid())
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Limiter{
		client:  client,
		opts:    opts,
		prefix:  opts.Prefix,
		decide:  rueidis.NewLuaScript(decideSrc),
		beat:    rueidis.NewLuaScript(heartbeatSrc),
		resetCh: opts.Prefix + "rl:reset",
		zsetKey: opts.Prefix + "rl:instances",
		now:     opts.Now,
		log:     opts.Logger,
		local:   memorylimit.New(memorylimit.Options{Now: opts.Now, MaxKeys: opts.LocalMaxKeys}),
		ctx:     ctx,
		cancel:  cancel,
	}
	l.batch = newBatcher(l)
	if opts.DenyCacheSize > 0 {
		l.deny = newDenyCache(opts.DenyCacheSize)
	}
	l.liveCount.Store(1)
	l.wg.Add(2)
	go l.checkEviction()
	go l.subscribeResets()
	if opts.HeartbeatInterval > 0 {
		l.wg.Add(1)
		go l.heartbeats()
	}
	return l, nil
}

// Close stops the background goroutines and removes this instance from the
// live set (best effort). It does not close the client.
// Close is idempotent and safe to call concurrently.
func (l *Limiter) Close() error {
	l.closeOnce.Do(func() {
		if l.opts.HeartbeatInterval > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), l.opts.Timeout)
			l.client.Do(ctx, l.client.B().Zrem().Key(l.zsetKey).Member(l.opts.InstanceID).Build())
			cancel()
		}
		l.cancel()
		l.wg.Wait()
		l.batch.close()
		l.local.Close()
	})
	return nil
}

// Stats returns the limiter's counters.
func (l *Limiter) Stats() Stats {
	s := Stats{
		RedisCalls:    l.calls.Load(),
		RedisErrors:   l.errs.Load(),
		DenyCacheHits: l.denyHits.Load(),
		Degraded:      l.degraded.Load(),
		Unavailable:   l.unavailable.Load(),
		BreakerOpens:  l.opens.Load(),
		BreakerOpen:   l.open.Load(),
		LiveInstances: l.liveCount.Load(),
	}
	if l.deny != nil {
		s.DenyCacheItems = l.deny.len()
	}
	return s
}

// BreakerOpen reports whether the circuit breaker is open (Redis is being
// bypassed).
func (l *Limiter) BreakerOpen() bool { return l.open.Load() }

// LiveInstances returns N_live: the instances seen alive in Redis by the
// last successful heartbeat (at least 1).
func (l *Limiter) LiveInstances() int64 { return l.liveCount.Load() }

// EvictionPolicy returns the server's maxmemory-policy as read at start-up
// ("" if not known yet or unreadable) and whether it can evict the limiter's
// keys (every policy but noeviction can: the keys all have TTLs).
func (l *Limiter) EvictionPolicy() (policy string, evictable bool) {
	l.evictMu.Lock()
	defer l.evictMu.Unlock()
	return l.evictPolicy, l.evictPolicy != "" && l.evictPolicy != "noeviction"
}

func (l *Limiter) checkEviction() {
	defer l.wg.Done()
	for attempt := 0; attempt < 30; attempt++ {
		ctx, cancel := context.WithTimeout(l.ctx, time.Second)
		m, err := l.client.Do(ctx, l.client.B().ConfigGet().Parameter("maxmemory-policy").Build()).AsStrMap()
		cancel()
		if err == nil {
			policy := m["maxmemory-policy"]
			l.evictMu.Lock()
			l.evictPolicy = policy
			l.evictMu.Unlock()
			if policy != "" && policy != "noeviction" {
				l.log.Warn("redislimit: the Redis maxmemory-policy can evict rate-limit keys under memory pressure; use noeviction or a separate Redis for the limiter",
					"maxmemory-policy", policy)
			}
			return
		}
		if _, ok := rueidis.IsRedisErr(err); ok {
			return // CONFIG is disabled (managed Redis): nothing to learn
		}
		select {
		case <-l.ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// Decide implements [ratelimit.Limiter]. Errors: invalid items wrap
// [ratelimit.ErrInvalid]; when Redis cannot answer (failure, timeout, open
// breaker) and a policy fails closed, the error wraps
// [ratelimit.ErrUnavailable]; a ctx cancelled by the caller returns ctx.Err().
func (l *Limiter) Decide(ctx context.Context, subject string, items ...ratelimit.Item) (ratelimit.Decision, error) {
	return l.run(ctx, subject, items, false)
}

// Peek implements [ratelimit.Limiter]: the Decision Decide would return,
// consuming nothing (one round trip, or none on a deny-cache hit).
func (l *Limiter) Peek(ctx context.Context, subject string, items ...ratelimit.Item) (ratelimit.Decision, error) {
	return l.run(ctx, subject, items, true)
}

// Reset implements [ratelimit.Limiter]: it deletes the key in Redis, clears
// this instance's deny cache and local fallback state for subject, and
// publishes the reset so that every other instance clears its deny cache. It
// returns an error wrapping [ratelimit.ErrUnavailable] when Redis fails.
func (l *Limiter) Reset(ctx context.Context, subject, policy string) error {
	if l.deny != nil {
		l.deny.clear(subject)
	}
	_ = l.local.Reset(ctx, subject, policy)
	ctx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
	defer cancel()
	key := ratelimit.Key(l.prefix, subject, policy)
	res := l.client.DoMulti(ctx,
		l.client.B().Del().Key(key).Build(),
		l.client.B().Publish().Channel(l.resetCh).Message(subject).Build())
	for _, r := range res {
		if err := r.Error(); err != nil {
			return fmt.Errorf("%w: reset: %w", ratelimit.ErrUnavailable, err)
		}
	}
	return nil
}

func (l *Limiter) run(ctx context.Context, subject string, items []ratelimit.Item, peek bool) (ratelimit.Decision, error) {
	if err := ratelimit.ValidateItems(items); err != nil {
		return ratelimit.Decision{}, err
	}
	var dkey uint64
	if l.deny != nil {
		dkey = l.deny.itemsKey(items)
		if d, ok := l.deny.get(subject, dkey, items, l.localNow()); ok {
			l.denyHits.Add(1)
			return d, nil
		}
	}
	if l.open.Load() {
		return l.fallback(ctx, subject, items, peek, errBreakerOpen)
	}
	d, denied, err := l.eval(ctx, subject, items, peek)
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			// The caller gave up: not Redis' failure. (A caller's deadline,
			// e.g. a per-request Redis budget, is treated as a timeout.)
			return ratelimit.Decision{}, ctx.Err()
		}
		l.failed(err)
		return l.fallback(ctx, subject, items, peek, err)
	}
	l.failures.Store(0)
	if l.deny != nil {
		if !d.Allowed && d.RetryAfter > 0 && denied.states != nil {
			now := l.localNow()
			l.deny.put(subject, dkey, now.Add(d.RetryAfter), now, denied.redisAt, denied.states)
		} else if d.Allowed && !peek {
			l.deny.clear(subject) // this decision changed the subject's state
		}
	}
	return d, nil
}

var errBreakerOpen = errors.New("redislimit: circuit breaker open")

func (l *Limiter) localNow() time.Time {
	if l.scriptNow != nil {
		return l.scriptNow()
	}
	return l.now()
}

// deniedAt is what the script reports with a denial: its time and the
// stored state of each item.
type deniedAt struct {
	redisAt int64
	states  []ratelimit.State
}

// eval decides items through the batcher: one script call, possibly
// shared with other decisions.
func (l *Limiter) eval(ctx context.Context, subject string, items []ratelimit.Item, peek bool) (ratelimit.Decision, deniedAt, error) {
	c := newCall()
	c.peek = peek
	tag := ratelimit.SubjectTag(subject)
	for _, it := range items {
		p := &it.Policy
		cost := it.Cost
		if cost == 0 {
			cost = 1
		}
		c.keys = append(c.keys, l.prefix+"rl:{"+tag+"}:"+p.Name)
		c.specs = append(c.specs, spec{l.policyArgs(*p), strconv.FormatInt(cost, 10), p.Shadow})
	}
	start := time.Now()
	msgs, err := l.batch.do(ctx, l.opts.Timeout, c)
	n := 4 * len(items)
	if err == nil && len(msgs) != n && len(msgs) != n+1+len(items) {
		err = fmt.Errorf("redislimit: script returned %d values for %d items", len(msgs), len(items))
	}
	var results []ratelimit.Result
	if err == nil {
		results = make([]ratelimit.Result, len(items))
		for i, it := range items {
			var v [4]int64
			for j := range v {
				if v[j], err = msgs[4*i+j].AsInt64(); err != nil {
					break
				}
			}
			if err != nil {
				break
			}
			results[i] = ratelimit.Result{
				Policy:     it.Policy,
				Allowed:    v[0] == 1,
				Remaining:  v[1],
				RetryAfter: time.Duration(v[2]) * time.Microsecond,
				ResetAfter: time.Duration(v[3]) * time.Microsecond,
			}
		}
	}
	if l.opts.OnRedisCall != nil {
		l.opts.OnRedisCall(time.Since(start), err)
	}
	if err != nil {
		l.errs.Add(1)
		return ratelimit.Decision{}, deniedAt{}, err
	}
	var den deniedAt
	if len(msgs) > n {
		den.redisAt, _ = msgs[n].AsInt64()
		den.states = make([]ratelimit.State, len(items))
		for i := range items {
			raw, _ := msgs[n+1+i].ToString()
			den.states[i] = parseState(raw)
		}
	}
	return ratelimit.Combine(results), den, nil
}

// policyArgs are the script arguments describing one policy.
type policyArgs struct{ alg, a, b string }

// policyArgs returns (and caches: policies are few and long-lived) the
// script arguments of p.
func (l *Limiter) policyArgs(p ratelimit.Policy) policyArgs {
	key := p
	key.Fail, key.Shadow = 0, false
	if v, ok := l.argCache.Load(key); ok {
		return v.(policyArgs)
	}
	var pa policyArgs
	switch p.Algorithm {
	case ratelimit.GCRA:
		t := p.EmissionInterval().Microseconds()
		pa = policyArgs{"g", strconv.FormatInt(t, 10), strconv.FormatInt(t*p.Limit(), 10)}
	case ratelimit.Sliding:
		pa = policyArgs{"s", strconv.FormatInt(p.Rate.Per.Milliseconds(), 10), strconv.FormatInt(p.Rate.N, 10)}
	default:
		pa = policyArgs{"f", strconv.FormatInt(p.Rate.Per.Milliseconds(), 10), strconv.FormatInt(p.Rate.N, 10)}
	}
	if l.argCacheLen.Add(1) <= maxArgCache {
		l.argCache.Store(key, pa)
	}
	return pa
}

// maxArgCache bounds the policy argument cache (policies come from
// configuration, but nothing stops a caller from making them up).
const maxArgCache = 1024

// failed counts a failed call and opens the breaker after enough of them.
func (l *Limiter) failed(err error) {
	if l.failures.Add(1) < int64(l.opts.BreakerFailures) {
		return
	}
	if l.open.CompareAndSwap(false, true) {
		l.opens.Add(1)
		l.log.Warn("redislimit: circuit breaker open; deciding by fail mode until Redis answers", "err", err)
		if l.opts.OnBreaker != nil {
			l.opts.OnBreaker(true)
		}
		if l.probing.CompareAndSwap(false, true) {
			l.wg.Add(1)
			go l.probe()
		}
	}
}

// probe pings Redis every ProbeInterval while the breaker is open and closes
// it on the first answer.
func (l *Limiter) probe() {
	defer l.wg.Done()
	defer l.probing.Store(false)
	t := time.NewTicker(l.opts.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(l.ctx, max(l.opts.Timeout, 100*time.Millisecond))
		err := l.client.Do(ctx, l.client.B().Ping().Build()).Error()
		cancel()
		if err == nil {
			l.failures.Store(0)
			l.open.Store(false)
			l.log.Info("redislimit: circuit breaker closed; Redis answers again")
			if l.opts.OnBreaker != nil {
				l.opts.OnBreaker(false)
			}
			return
		}
	}
}

// fallback decides without Redis, by each policy's fail mode, at this
// instance's share for the live instances last seen.
func (l *Limiter) fallback(ctx context.Context, subject string, items []ratelimit.Item, peek bool, cause error) (ratelimit.Decision, error) {
	d, err := ratelimit.DecideWithout(ctx, l.local, subject, items, peek, l.liveCount.Load(), cause)
	switch {
	case errors.Is(err, ratelimit.ErrUnavailable):
		l.unavailable.Add(1)
	case err == nil:
		l.degraded.Add(1)
	}
	return d, err
}

// heartbeats refreshes this instance in the live set and records N_live.
func (l *Limiter) heartbeats() {
	defer l.wg.Done()
	window := 3 * l.opts.HeartbeatInterval
	t := time.NewTicker(l.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		if !l.open.Load() {
			ctx, cancel := context.WithTimeout(l.ctx, max(l.opts.Timeout, 250*time.Millisecond))
			n, err := l.beat.Exec(ctx, l.client, []string{l.zsetKey},
				[]string{l.opts.InstanceID, strconv.FormatInt(window.Milliseconds(), 10)}).AsInt64()
			cancel()
			if err == nil {
				l.liveCount.Store(max(n, 1))
			}
		}
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// subscribeResets clears the deny cache for subjects reset by any instance.
func (l *Limiter) subscribeResets() {
	defer l.wg.Done()
	for l.ctx.Err() == nil {
		err := l.client.Receive(l.ctx, l.client.B().Subscribe().Channel(l.resetCh).Build(), func(m rueidis.PubSubMessage) {
			if l.deny != nil {
				l.deny.clear(m.Message)
			}
		})
		if l.ctx.Err() != nil {
			return
		}
		l.log.Debug("redislimit: reset subscription ended; resubscribing", "err", err)
		select {
		case <-l.ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// denyCache remembers denied decisions until their retry time, as the states
// and Redis time the script saw, so that a hit re-evaluates the decision
// exactly ([ratelimit.Policy.Eval] at Redis time plus the local time elapsed):
// the same answer Redis would give while nothing else changes the keys. It is
// keyed by subject, then by a seeded hash of (policies, costs); an admitted
// decision of a subject on this instance drops the subject's entries (its
// state changed). Sharded and bounded.
type denyCache struct {
	seed     maphash.Seed
	perShard int
	shards   [64]denyShard
}

type denyShard struct {
	mu sync.Mutex
	m  map[uint64]*denials // by subject hash
	_  [48]byte
}

// denials are the cached denials of one subject (at most maxPerSubject).
type denials struct {
	entries []denyEntry
}

const maxPerSubject = 4

type denyEntry struct {
	itemsKey uint64
	until    time.Time // local time
	localAt  int64     // local Unix µs when cached
	redisAt  int64     // Redis Unix µs the script used
	states   []ratelimit.State
}

func newDenyCache(size int) *denyCache {
	c := &denyCache{seed: maphash.MakeSeed(), perShard: max(1, size/64)}
	for i := range c.shards {
		c.shards[i].m = make(map[uint64]*denials)
	}
	return c
}

// itemsKey hashes everything of items that a decision depends on.
func (c *denyCache) itemsKey(items []ratelimit.Item) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	var buf [8 * 6]byte
	for _, it := range items {
		p := it.Policy
		h.WriteString(p.Name)
		b := buf[:0]
		for _, x := range []int64{p.Rate.N, int64(p.Rate.Per), p.Burst, int64(p.Algorithm), it.Cost, boolInt(p.Shadow)} {
			b = appendInt64(b, x)
		}
		h.Write(b)
	}
	return h.Sum64()
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func appendInt64(b []byte, x int64) []byte {
	u := uint64(x)
	return append(b, byte(u), byte(u>>8), byte(u>>16), byte(u>>24), byte(u>>32), byte(u>>40), byte(u>>48), byte(u>>56))
}

func (c *denyCache) shard(subject string) (*denyShard, uint64) {
	sh := maphash.String(c.seed, subject)
	return &c.shards[sh%64], sh
}

// get returns the cached denial of (subject, items), re-evaluated at now.
func (c *denyCache) get(subject string, key uint64, items []ratelimit.Item, now time.Time) (ratelimit.Decision, bool) {
	s, sh := c.shard(subject)
	s.mu.Lock()
	ds := s.m[sh]
	if ds == nil {
		s.mu.Unlock()
		return ratelimit.Decision{}, false
	}
	var e denyEntry
	found := false
	for i, x := range ds.entries {
		if x.itemsKey != key {
			continue
		}
		if now.Before(x.until) {
			e, found = x, true
		} else {
			ds.entries = append(ds.entries[:i], ds.entries[i+1:]...)
			if len(ds.entries) == 0 {
				delete(s.m, sh)
			}
		}
		break
	}
	s.mu.Unlock()
	if !found {
		return ratelimit.Decision{}, false
	}
	d := evalStates(items, e.states, e.redisAt+now.UnixMicro()-e.localAt)
	return d, !d.Allowed
}

// evalStates is the decision of the script over the given stored states at
// nowMicros, without writing anything.
func evalStates(items []ratelimit.Item, states []ratelimit.State, nowMicros int64) ratelimit.Decision {
	results := make([]ratelimit.Result, len(items))
	for i, it := range items {
		_, results[i], _ = it.Policy.Eval(states[i], nowMicros, max(it.Cost, 1))
	}
	d := ratelimit.Combine(results)
	if !d.Allowed {
		ratelimit.Uncharged(results, items, states, nowMicros)
	}
	return d
}

func (c *denyCache) put(subject string, key uint64, until time.Time, now time.Time, redisAt int64, states []ratelimit.State) {
	s, sh := c.shard(subject)
	s.mu.Lock()
	defer s.mu.Unlock()
	ds := s.m[sh]
	if ds == nil {
		if len(s.m) >= c.perShard {
			for k, x := range s.m { // drop subjects whose denials all expired, else an arbitrary one
				if !now.Before(x.latest()) {
					delete(s.m, k)
				}
			}
			if len(s.m) >= c.perShard {
				for k := range s.m {
					delete(s.m, k)
					break
				}
			}
		}
		ds = &denials{}
		s.m[sh] = ds
	}
	e := denyEntry{itemsKey: key, until: until, localAt: now.UnixMicro(), redisAt: redisAt, states: states}
	for i, x := range ds.entries {
		if x.itemsKey == key {
			ds.entries[i] = e
			return
		}
	}
	if len(ds.entries) >= maxPerSubject {
		ds.entries = ds.entries[1:]
	}
	ds.entries = append(ds.entries, e)
}

func (d *denials) latest() time.Time {
	var t time.Time
	for _, e := range d.entries {
		if e.until.After(t) {
			t = e.until
		}
	}
	return t
}

// clear forgets every denial of subject.
func (c *denyCache) clear(subject string) {
	s, sh := c.shard(subject)
	s.mu.Lock()
	delete(s.m, sh)
	s.mu.Unlock()
}

func (c *denyCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for _, ds := range s.m {
			n += len(ds.entries)
		}
		s.mu.Unlock()
	}
	return n
}

// parseState decodes a value written by decide.lua: "TAT" (GCRA, up to 18
// digits; "g:TAT" of earlier versions), "s:W:C:P" or "f:W:C"; anything else is
// the zero state, as in the script.
func parseState(raw string) ratelimit.State {
	var st ratelimit.State
	if tat, ok := parseTAT(strings.TrimPrefix(raw, "g:")); ok {
		return ratelimit.State{Algorithm: ratelimit.GCRA, T: tat}
	}
	if len(raw) < 3 || raw[1] != ':' {
		return st
	}
	switch raw[0] {
	case 's':
		st.Algorithm = ratelimit.Sliding
	case 'f':
		st.Algorithm = ratelimit.Fixed
	default:
		return st
	}
	for i, f := range strings.SplitN(raw[2:], ":", 3) {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return ratelimit.State{}
		}
		switch i {
		case 0:
			st.T = v
		case 1:
			st.Count = v
		case 2:
			st.Prev = v
		}
	}
	return st
}

// parseTAT parses a GCRA value: 1 to 18 decimal digits.
func parseTAT(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	var v int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		v = v*10 + int64(s[i]-'0')
	}
	return v, true
}
