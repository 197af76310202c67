// Package httpapi is the HTTP layer of the journal service: the API of
// docs/design.md, "Public contract", on a net/http ServeMux, with handlers,
// authentication, middleware, problem+json errors (RFC 9457), health
// endpoints, request metrics and the OpenAPI document.
//
// [NewServer] builds the whole handler from explicit dependencies; nothing is
// global. routes.go lists every route with its access (public, authenticated
// or operational), and a test keeps openapi.json equal to it. errors.go maps
// every error to one status and problem body. The middleware order is fixed:
//
//	recover -> request ID -> access log -> IP limit -> auth -> user limit -> handler
//
// so a flood is refused before any password is hashed or the database is
// read, and every refusal is logged. The four operational routes (/livez,
// /readyz, /metrics, /openapi.json) are never rate limited nor authenticated;
// [NewSplitServer] moves the first three to a handler of their own, for a
// listener that only operators reach.
package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/password"
	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/httplimit"
)

// Metrics is a Prometheus registry: where the server registers its
// collectors and what /metrics serves. *prometheus.Registry implements it.
type Metrics interface {
	prometheus.Registerer
	prometheus.Gatherer
}

// Check reports whether a dependency answers; a nil error means up. It
// should honour ctx, which carries the readiness timeout.
type Check func(ctx context.Context) error

// Options are the dependencies and settings of NewServer. Fields marked
// required must be set; the others have the stated defaults.
type Options struct {
	// Logger receives one JSON access-log line per request and the details
	// of internal errors and panics. Required.
	Logger *slog.Logger
	// Users, Tokens and Entries are the stores. Required. Tokens.TokenByHash
	// is called once per authenticated request and may be a cache.
	// Users and Tokens carry the revocations of password changes, account
	// deletions and logouts, so they must invalidate any token cache.
	Users   journal.UserStore
	Tokens  journal.TokenStore
	Entries journal.EntryStore
	// Idempotency keeps the Idempotency-Key records of POST /v1/entries.
	// Required.
	Idempotency journal.IdempotencyStore
	// IdempotencyTTL is how long the response to a request with an
	// Idempotency-Key is replayed (JOURNAL_IDEMPOTENCY_TTL). Zero: 24h.
	IdempotencyTTL time.Duration
	// IdempotencyPending is the longest a first request holds its
	// Idempotency-Key, so a request that crashed does not block its key
	// for longer. Zero: 30s.
	IdempotencyPending time.Duration
	// Passwords hashes and verifies passwords under its concurrency bound.
	// Required.
	Passwords *password.Hasher
	// Metrics is the registry the server registers its collectors in and
	// serves on /metrics. Required; registering twice in one registry fails.
	Metrics Metrics
	// InstanceID is sent as X-Instance on every response and logged on every
	// line. Required.
	InstanceID string
	// TokenTTL is the lifetime of a token made by POST /v1/tokens.
	// Zero: 720h.
	TokenTTL time.Duration
	// Now is the clock. Nil: time.Now.
	Now func() time.Time

	// Database checks the database for /readyz: down means 503 "unready".
	// Required.
	Database Check
	// Redis checks Redis for /readyz: down means 200 "degraded". Nil: Redis
	// is not configured and /readyz omits it.
	Redis Check
	// Draining reports that the process is shutting down: /readyz answers
	// 503 "draining". Nil: never.
	Draining func() bool
	// ReadyTimeout bounds each readiness check. Zero: 2s.
	ReadyTimeout time.Duration

	// StartSpan, when set, starts the trace span of each request: it returns
	// the context that carries the span (the handlers and everything they
	// call see it), the trace id, which the access-log line carries as
	// "trace_id", and the function that ends the span with the route pattern
	// the mux matched ("" when none) and the status. Nil: no spans.
	StartSpan func(r *http.Request) (ctx context.Context, traceID string, end func(route string, status int))

	// Limiter decides the rate limits of Policies (a ratelimit.Fallback
	// around the Redis limiter, or an in-process one). Nil: no rate limits.
	Limiter ratelimit.Limiter
	// Policies are the policies Limiter applies; the route table says which
	// route evaluates which (routes.go).
	Policies Policies
	// TrustedProxies are the peers whose forwarding headers name the
	// client, for the IP-keyed policies. Nil: none.
	TrustedProxies *httplimit.TrustedProxies
	// OnDecision, when set, observes every rate-limit decision, for
	// metrics (httplimit.Options.OnDecision).
	OnDecision func(r *http.Request, o httplimit.Outcome, items []ratelimit.Item, d *ratelimit.Decision, err error)
}

// Defaults of Options.
const (
	DefaultTokenTTL           = 720 * time.Hour
	DefaultReadyTimeout       = 2 * time.Second
	DefaultIdempotencyTTL     = 24 * time.Hour
	DefaultIdempotencyPending = 30 * time.Second
)

// NewServer returns the HTTP handler of the whole API. It returns an error
// naming the first missing required dependency, or the error of registering
// the metrics collectors.
func NewServer(opts Options) (http.Handler, error) {
	h, _, err := newServer(opts, false)
	return h, err
}

// NewSplitServer is NewServer for a service with a separate operations
// listener: api serves every route except GET /livez, /readyz and /metrics,
// which it answers 404 like any unknown path, and ops serves those three
// only. /openapi.json stays on api. Both share opts: one registry, one
// access log (an ops request is logged like any other), one readiness.
func NewSplitServer(opts Options) (api, ops http.Handler, err error) {
	return newServer(opts, true)
}

// newServer builds the API handler and, with split, the operations handler
// (nil otherwise).
func newServer(opts Options, split bool) (api, ops http.Handler, err error) {
	switch {
	case opts.Logger == nil:
		return nil, nil, errors.New("httpapi: Options.Logger is required")
	case opts.Users == nil:
		return nil, nil, errors.New("httpapi: Options.Users is required")
	case opts.Tokens == nil:
		return nil, nil, errors.New("httpapi: Options.Tokens is required")
	case opts.Entries == nil:
		return nil, nil, errors.New("httpapi: Options.Entries is required")
	case opts.Idempotency == nil:
		return nil, nil, errors.New("httpapi: Options.Idempotency is required")
	case opts.IdempotencyTTL < 0 || opts.IdempotencyPending < 0:
		return nil, nil, errors.New("httpapi: Options.IdempotencyTTL and IdempotencyPending must not be negative")
	case opts.Passwords == nil:
		return nil, nil, errors.New("httpapi: Options.Passwords is required")
	case opts.Metrics == nil:
		return nil, nil, errors.New("httpapi: Options.Metrics is required")
	case opts.InstanceID == "":
		return nil, nil, errors.New("httpapi: Options.InstanceID is required")
	case opts.Database == nil:
		return nil, nil, errors.New("httpapi: Options.Database is required")
	case opts.TokenTTL < 0:
		return nil, nil, errors.New("httpapi: Options.TokenTTL must not be negative")
	}
	if opts.TokenTTL == 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	if opts.IdempotencyTTL == 0 {
		opts.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if opts.IdempotencyPending == 0 {
		opts.IdempotencyPending = DefaultIdempotencyPending
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}
	if opts.Draining == nil {
		opts.Draining = func() bool { return false }
	}
	m, err := newMetrics(opts.Metrics)
	if err != nil {
		return nil, nil, err
	}

	lim, err := newLimits(&opts)
	if err != nil {
		return nil, nil, err
	}
	mux, opsMux := http.NewServeMux(), http.NewServeMux()
	for _, rt := range routes(opts, lim.passwords()) {
		if split && rt.Access == accessOps {
			opsMux.Handle(rt.Pattern, routeChain(rt, opts, lim))
			continue
		}
		mux.Handle(rt.Pattern, routeChain(rt, opts, lim))
	}
	notFound := handleUnmatched(opts.Logger, errNoRoute)
	notAllowed := handleUnmatched(opts.Logger, errMethodNotAllowed)
	// The operations listener is never limited, its unmatched requests
	// neither.
	opsNotFound, opsNotAllowed := notFound, notAllowed
	if ip := lim.ipStage(0); ip != nil {
		notFound, notAllowed = ip(notFound), ip(notAllowed)
	}
	api = outerChain(problemMux(mux, notFound, notAllowed), opts, m)
	if split {
		ops = outerChain(problemMux(opsMux, opsNotFound, opsNotAllowed), opts, m)
	}
	return api, ops, nil
}

// outerChain wraps h in the middleware every request passes, outermost
// first: recover, request ID, access log.
func outerChain(h http.Handler, opts Options, m *metrics) http.Handler {
	h = accessLog(opts.Logger, opts.InstanceID, m, opts.StartSpan)(h)
	h = requestID(opts.InstanceID)(h)
	return recoverer(opts.Logger)(h)
}

// routeChain wraps one route's handler in the per-route middleware, outermost
// first: route label capture, IP limit, auth, user limit, query check.
func routeChain(rt route, opts Options, lim *limits) http.Handler {
	h := rt.Handler
	if rt.Access == accessPublic || rt.Access == accessAuth {
		h = wellFormedQuery(opts.Logger, h)
	}
	if rt.Access == accessAuth {
		if user := lim.userStage(); user != nil {
			h = user(h)
		}
		h = authenticate(opts.Tokens, opts.Logger, opts.Now)(h)
	}
	if rt.Access == accessPublic || rt.Access == accessAuth {
		if ip := lim.ipStage(rt.Limits); ip != nil {
			h = ip(h)
		}
	}
	return capturePattern(h)
}
