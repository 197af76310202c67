// Package redislimit is the Redis backend of [ratelimit.Limiter]: one limit
// held across any number of instances sharing a Redis (or Redis Cluster).
//
// Invariants:
//   - One EVALSHA round trip per decision, covering every policy; the script
//     (decide.lua, EVAL on NOSCRIPT) implements exactly the reference
//     semantics of the memory backend. Concurrent decisions share script
//     calls (batch.go): each is still one round trip and all-or-nothing, and
//     a batch runs atomically.
//   - Time is redis.call('TIME') inside the script: instance clocks cannot
//     matter.
//   - Every key written gets its TTL in the same script; keys found without a
//     TTL are repaired. Keys are [ratelimit.Key]: prefix + "rl:{subject}:policy",
//     so one decision is one Cluster slot.
//   - A caller waits at most Options.Timeout (default 50ms), without retries,
//     even while rueidis reconnects. A script call that fails, or has no
//     reply within [FlightTimeout], counts against Redis; after
//     Options.BreakerFailures consecutive such calls a circuit breaker opens
//     and no decision touches Redis until a background probe succeeds. A
//     caller that stops waiting earlier does not count: on a saturated
//     process the reply is late because the process did not run, not because
//     Redis did not answer.
//   - When Redis cannot decide, Decide and Peek return an error wrapping
//     [ratelimit.ErrUnavailable], and also [ratelimit.ErrSlow] when the call
//     timed out while the breaker is closed: Redis may still decide the
//     call, and a saturated process cannot tell a slow Redis from its own
//     delay; a refused or dropped connection, or an open breaker, is not
//     slow; the fail modes (open, closed, local at the instance's
//     share) are decided by [ratelimit.Fallback], which a service wraps
//     around this limiter with [Limiter.LiveInstances] as its count of
//     instances.
//   - A local deny cache answers a denied (subject, policies, costs) until its
//     retry time without a round trip. [Limiter.Reset] clears it here and, by
//     PUBLISH, on every other instance.
//   - [Limiter.Warm] dials the connections and loads the script before the
//     first decision needs them, so a new instance's first decisions do not
//     pay for a cold connection.
//
// Observe a Limiter through [Limiter.Stats].
package redislimit

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/internal/backend"
)

//go:embed decide.lua
var decideSrc string

// Default option values.
const (
	DefaultPrefix            = "journal:"
	DefaultTimeout           = 50 * time.Millisecond
	DefaultBreakerFailures   = 5
	DefaultProbeInterval     = 150 * time.Millisecond
	DefaultHeartbeatInterval = time.Second
	DefaultDenyCacheSize     = 1 << 16
)

// FlightTimeout is the least time a script call waits for its reply before it
// counts as a failure of Redis (the limiter waits max(Options.Timeout,
// FlightTimeout)). Callers stop waiting at their own deadline; the call goes
// on, so a reply delayed only by a saturated process still closes the
// breaker's count instead of opening it. It is about the time rueidis needs
// to notice a dead connection with the recommended client options.
const FlightTimeout = 500 * time.Millisecond

// Options configures a [Limiter]. The zero value is usable.
type Options struct {
	// Prefix starts every key the limiter writes. Default "journal:". It
	// must not contain '{' or '}'.
	Prefix string
	// Timeout bounds the time a decision waits for Redis. Default 50ms. The
	// caller's context may shorten it.
	Timeout time.Duration
	// BreakerFailures is the number of consecutive failed script calls that
	// opens the circuit breaker. Default 5.
	BreakerFailures int
	// ProbeInterval is the period of the background probe (PING) while the
	// breaker is open. Default 150ms.
	ProbeInterval time.Duration
	// InstanceID names this instance in the live-instance set. Default
	// hostname:pid.
	InstanceID string
	// HeartbeatInterval is how often the instance refreshes its heartbeat;
	// an instance missing for 3 intervals is no longer live. Default 1s.
	// A negative value disables heartbeats (LiveInstances stays 1).
	HeartbeatInterval time.Duration
	// DenyCacheSize bounds the number of cached denials. Default 65,536;
	// negative disables the deny cache.
	DenyCacheSize int
	// Lease is the longest this instance holds quota it took ahead for a
	// policy with Policy.Lease (see lease.go): decisions of such policies
	// are then mostly answered without a round trip. 0 (the default)
	// decides every request in Redis.
	Lease time.Duration
	// LeaseSubjects bounds the (subject, policy) pairs whose leases and
	// rates are tracked. Default 65,536; beyond it, decisions are exact.
	LeaseSubjects int
	// Now is the local clock, used only for durations (the deny cache's
	// expiry, the leases' lapse). Decisions in Redis use Redis TIME.
	// Default time.Now.
	Now func() time.Time
	// Logger receives start-up warnings (an evicting maxmemory-policy) and
	// breaker transitions. Default: discard.
	Logger *slog.Logger
}

// Limiter is a Redis-backed [ratelimit.Limiter], safe for concurrent use.
// Create it with [New] and stop its background goroutines with
// [Limiter.Close]; it must not be used after Close.
type Limiter struct {
	client     rueidis.Client
	opts       Options
	prefix     string
	decide     *rueidis.Lua
	now        func() time.Time
	log        *slog.Logger
	deny       *denyCache
	leases     *leases // nil: exact mode
	batch      *batcher
	brk        breaker
	live       instances
	resetCh    string
	givebackCh string

	// scriptNow, when set (only by tests, via export_test.go), is sent to
	// the script as the time instead of Redis TIME.
	scriptNow func() time.Time

	stats counters
	warm  warmState

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
// maxmemory-policy. It does not wait for Redis (call [Limiter.Warm] for
// that): an unreachable Redis shows up as decisions failing with
// [ratelimit.ErrUnavailable], not as an error here. It returns an error only
// for a nil client or invalid options.
//
// The client should be created with rueidis.ClientOption{DisableRetry: true}
// (the limiter never retries; it has a deadline), a ConnWriteTimeout of a few
// hundred milliseconds and a short Dialer.KeepAlive, so a dead server is
// detected quickly. On standalone Redis the decisions use up to four
// dedicated connections of the client (Client.Dedicate), released at Close.
func New(client rueidis.Client, opts Options) (*Limiter, error) {
	return newLimiter(client, opts, nil)
}

// newLimiter is New; scriptNow, when not nil (tests only), is the time sent
// to the script and the local clock.
func newLimiter(client rueidis.Client, opts Options, scriptNow func() time.Time) (*Limiter, error) {
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
		client:     client,
		opts:       opts,
		prefix:     opts.Prefix,
		decide:     rueidis.NewLuaScript(decideSrc),
		resetCh:    opts.Prefix + "rl:reset",
		givebackCh: opts.Prefix + "rl:giveback",
		now:        opts.Now,
		scriptNow:  scriptNow,
		log:        opts.Logger,
		ctx:        ctx,
		cancel:     cancel,
	}
	l.brk.init(l)
	l.live.init(l)
	l.batch = newBatcher(l)
	if opts.DenyCacheSize > 0 {
		l.deny = newDenyCache(opts.DenyCacheSize)
	}
	if opts.Lease < 0 {
		return nil, fmt.Errorf("redislimit: negative lease %v", opts.Lease)
	}
	if opts.Lease > 0 {
		if opts.LeaseSubjects <= 0 {
			opts.LeaseSubjects = DefaultDenyCacheSize
		}
		l.leases = &leases{}
		l.leases.init(l, opts.Lease, opts.LeaseSubjects)
		l.wg.Add(1)
		go l.leases.sweeper()
	}
	l.wg.Add(2)
	go l.checkEviction()
	go l.subscribeResets()
	if opts.HeartbeatInterval > 0 {
		l.wg.Add(1)
		go l.live.heartbeats()
	}
	return l, nil
}

// Close stops the background goroutines and removes this instance from the
// live set (best effort). It does not close the client.
// Close is idempotent and safe to call concurrently.
func (l *Limiter) Close() error {
	l.closeOnce.Do(func() {
		if l.leases != nil {
			l.leases.closeAll(l.localNow().UnixMicro())
		}
		if l.opts.HeartbeatInterval > 0 {
			l.live.leave()
		}
		l.cancel()
		l.wg.Wait()
		l.batch.close()
	})
	return nil
}

// LiveInstances returns N_live: the instances seen alive in Redis by the
// last successful heartbeat (at least 1), kept through an outage. It is the
// Instances function of the [ratelimit.Fallback] around l.
func (l *Limiter) LiveInstances() int64 { return l.live.count.Load() }

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
// [ratelimit.ErrInvalid]; when Redis cannot answer in time (failure,
// timeout, open breaker) the error wraps [ratelimit.ErrUnavailable]; a ctx
// cancelled by the caller returns ctx.Err(). A caller's deadline counts as
// Redis not answering in time.
func (l *Limiter) Decide(ctx context.Context, d *ratelimit.Decision, subject string, items ...ratelimit.Item) error {
	return l.run(ctx, time.Time{}, d, subject, items, false)
}

// Peek implements [ratelimit.Limiter]: it writes the Decision Decide would
// write, consuming nothing (one round trip, or none on a deny-cache hit).
// Errors are those of Decide.
func (l *Limiter) Peek(ctx context.Context, d *ratelimit.Decision, subject string, items ...ratelimit.Item) error {
	return l.run(ctx, time.Time{}, d, subject, items, true)
}

// DecideBy is Decide with ctx bounded by deadline: it decides as
// Decide(context.WithDeadline(ctx, deadline), ...) would, but derives that
// context only for a decision that goes to Redis. A decision answered in
// process (from a lease or the deny cache) then costs no context and no
// timer. The zero deadline adds no bound.
func (l *Limiter) DecideBy(ctx context.Context, deadline time.Time, d *ratelimit.Decision, subject string, items ...ratelimit.Item) error {
	return l.run(ctx, deadline, d, subject, items, false)
}

// PeekBy is Peek with ctx bounded by deadline, as DecideBy is Decide.
func (l *Limiter) PeekBy(ctx context.Context, deadline time.Time, d *ratelimit.Decision, subject string, items ...ratelimit.Item) error {
	return l.run(ctx, deadline, d, subject, items, true)
}

// Reset implements [ratelimit.Limiter]: it deletes the key in Redis, clears
// this instance's deny cache and leases for subject, and publishes the reset
// so that every other instance clears its own. It returns an error wrapping
// [ratelimit.ErrUnavailable] when Redis fails.
func (l *Limiter) Reset(ctx context.Context, subject, policy string) error {
	if l.deny != nil {
		l.deny.clear(subject)
	}
	if l.leases != nil {
		l.leases.drop(subject)
	}
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

var errBreakerOpen = errors.New("redislimit: circuit breaker open")

// run decides (or peeks); a non-zero deadline bounds ctx for the round trip
// (see DecideBy).
func (l *Limiter) run(ctx context.Context, deadline time.Time, d *ratelimit.Decision, subject string, items []ratelimit.Item, peek bool) error {
	if err := backend.ValidateItems(items); err != nil {
		backend.Fail(d)
		return err
	}
	var lease *ask
	var sent int64
	if l.leases != nil && leased(items) {
		sent = l.localNow().UnixMicro()
		if l.leases.take(subject, items, backend.Results(d, len(items)), peek, sent) {
			l.stats.leaseLocal.Add(1)
			backend.Combine(d, items)
			return nil
		}
	}
	var dkey uint64
	if l.deny != nil {
		dkey = l.deny.itemsKey(items)
		if l.deny.get(d, subject, dkey, items, l.localNow()) {
			l.stats.denyHits.Add(1)
			return nil
		}
	}
	if l.brk.isOpen() {
		l.stats.unavailable.Add(1)
		backend.Fail(d)
		return fmt.Errorf("%w: %w", ratelimit.ErrUnavailable, errBreakerOpen)
	}
	if sent != 0 && !peek {
		if a, ok := l.leases.prepare(subject, items, sent); ok {
			lease = &a
		}
	}
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	denied, grants, err := l.eval(ctx, d, subject, items, peek, lease)
	if err != nil {
		if lease != nil {
			l.leases.unask(subject, items, lease)
		}
		backend.Fail(d)
		if errors.Is(ctx.Err(), context.Canceled) {
			return ctx.Err() // the caller gave up
		}
		l.stats.unavailable.Add(1)
		if timedOut(err) && !l.brk.isOpen() {
			// No reply in time proves nothing about Redis: the call may
			// be running there now, or the process did not run to read
			// its reply. Only the breaker, fed by flights that wait
			// FlightTimeout, declares Redis down.
			return fmt.Errorf("%w: %w: %w", ratelimit.ErrUnavailable, ratelimit.ErrSlow, err)
		}
		return fmt.Errorf("%w: %w", ratelimit.ErrUnavailable, err)
	}
	if lease != nil {
		l.leases.send(l.leases.granted(subject, items, d.Results, lease, grants, sent))
	}
	if l.deny != nil {
		if !d.Allowed && d.RetryAfter > 0 && denied.states != nil {
			now := l.localNow()
			l.deny.put(subject, dkey, now.Add(d.RetryAfter), now, denied.redisAt, denied.states)
		} else if d.Allowed && !peek {
			l.deny.clear(subject) // this decision changed the subject's state
		}
	}
	return nil
}

// timedOut reports whether err is a deadline (the caller's, or a
// connection's read or write deadline) rather than Redis refusing or
// dropping the connection.
func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

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
	states  []backend.State
}

// grants are what a lease decision's script call reports per item: the units
// granted ahead, where they stand and Redis' time (see decide.lua).
type grants struct{ units, at, now []int64 }

// eval decides items into d through the batcher: one script call, possibly
// shared with other decisions. lease, if not nil, is what the decision asks
// of each item's lease.
func (l *Limiter) eval(ctx context.Context, d *ratelimit.Decision, subject string, items []ratelimit.Item, peek bool, lease *ask) (deniedAt, grants, error) {
	c := newCall()
	c.peek = peek
	for i := range items {
		it := &items[i]
		c.keys = append(c.keys, ratelimit.Key(l.prefix, subject, it.Policy.Name))
		c.specs = append(c.specs, spec{l.policyArgs(it.Policy), strconv.FormatInt(backend.Cost(it), 10), it.Policy.Shadow})
	}
	if lease != nil {
		c.lease, c.div = lease, 2*l.LiveInstances()
	}
	pp := c.perPolicy()
	msgs, err := l.batch.do(ctx, l.opts.Timeout, c)
	n := pp * len(items)
	if err == nil && len(msgs) != n && len(msgs) != n+1+len(items) {
		err = fmt.Errorf("redislimit: script returned %d values for %d items", len(msgs), len(items))
	}
	if err != nil {
		return deniedAt{}, grants{}, err
	}
	results := backend.Results(d, len(items))
	var g grants
	if pp == 7 {
		g = grants{make([]int64, len(items)), make([]int64, len(items)), make([]int64, len(items))}
	}
	for i := range items {
		var v [7]int64
		for j := range pp {
			if v[j], err = msgs[pp*i+j].AsInt64(); err != nil {
				return deniedAt{}, grants{}, err
			}
		}
		results[i] = ratelimit.Result{
			Allowed:    v[0] == 1,
			Remaining:  v[1],
			RetryAfter: time.Duration(v[2]) * time.Microsecond,
			ResetAfter: time.Duration(v[3]) * time.Microsecond,
		}
		if pp == 7 {
			g.units[i], g.at[i], g.now[i] = v[4], v[5], v[6]
		}
	}
	var den deniedAt
	if len(msgs) > n {
		den.redisAt, _ = msgs[n].AsInt64()
		den.states = make([]backend.State, len(items))
		for i := range items {
			raw, _ := msgs[n+1+i].ToString()
			den.states[i] = parseState(raw)
		}
	}
	backend.Combine(d, items)
	return den, g, nil
}

// policyArgs are the script arguments describing one policy.
type policyArgs struct{ alg, a, b string }

// policyArgs returns (and caches: policies are few and long-lived) the
// script arguments of p.
func (l *Limiter) policyArgs(p ratelimit.Policy) policyArgs {
	key := p
	key.Fail, key.Shadow, key.Lease = 0, false, false
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
