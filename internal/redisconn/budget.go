package redisconn

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"
)

// redisBudget is the time one request may still spend waiting on Redis, all
// calls together (JOURNAL_REDIS_TIMEOUT): the IP decision, the token lookup,
// the user decision and the entry read share it. Each call is bounded by what
// is left and charged what it took; when nothing is left the limiter decides
// by fail mode and the cache is bypassed for the database, without waiting on
// Redis at all. Safe for concurrent use.
type redisBudget struct {
	left atomic.Int64 // nanoseconds
	// ordered is set once a near-cache barrier completed after the request
	// began (see Conn.CacheStore): its reads see every write that returned
	// before it.
	ordered atomic.Bool
}

type budgetKey struct{}

// WithBudget gives every request a fresh budget of d.
func WithBudget(next http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := &redisBudget{}
		b.left.Store(int64(d))
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), budgetKey{}, b)))
	})
}

// budgetFrom returns the request's budget, or nil outside a request (start-up,
// background work): then calls are bounded by the components' own timeouts.
func budgetFrom(ctx context.Context) *redisBudget {
	b, _ := ctx.Value(budgetKey{}).(*redisBudget)
	return b
}

// Spent reports whether ctx carries a budget with nothing left.
func Spent(ctx context.Context) bool {
	b := budgetFrom(ctx)
	return b != nil && b.left.Load() <= 0
}

// reserve starts a call within the request's remaining budget without
// deriving a context: deadline is when what is left runs out (zero outside a
// request: no budget bounds the call). ok is false when the budget is spent;
// otherwise the charge's done must be called when the call returns, to
// charge it.
func reserve(ctx context.Context) (deadline time.Time, _ charge, ok bool) {
	b := budgetFrom(ctx)
	if b == nil {
		return time.Time{}, charge{}, true
	}
	left := b.left.Load()
	if left <= 0 {
		return time.Time{}, charge{}, false
	}
	start := time.Now()
	return start.Add(time.Duration(left)), charge{b: b, start: start}, true
}

// call is reserve with ctx bounded by the remaining budget.
func call(ctx context.Context) (_ context.Context, _ charge, ok bool) {
	deadline, ch, ok := reserve(ctx)
	if !ok || deadline.IsZero() {
		return ctx, ch, ok
	}
	ctx, ch.cancel = context.WithDeadline(ctx, deadline)
	return ctx, ch, true
}

// charge is what a call owes its budget: a value, not a closure, so that a
// call allocates nothing for it. The zero charge owes nothing.
type charge struct {
	b      *redisBudget
	start  time.Time
	cancel context.CancelFunc
}

// done releases the call's context and charges the time it took.
func (c charge) done() {
	if c.cancel != nil {
		c.cancel()
	}
	if c.b != nil {
		c.b.left.Add(-int64(time.Since(c.start)))
	}
}
