package redisconn

import (
	"context"
	"fmt"

	"github.com/journalsvc/journal/ratelimit"
)

// Limiter returns the Redis rate limiter as a ratelimit.Limiter for the
// primary of the service's ratelimit.Fallback: each decision runs within the
// request's Redis budget; before the first connection, or with the budget
// spent, it fails with an error wrapping [ratelimit.ErrUnavailable] at once.
func (c *Conn) Limiter() ratelimit.Limiter { return limiter{c} }

type limiter struct{ c *Conn }

func (l limiter) Decide(ctx context.Context, subject string, items ...ratelimit.Item) (ratelimit.Decision, error) {
	return l.decide(ctx, subject, items, false)
}

func (l limiter) Peek(ctx context.Context, subject string, items ...ratelimit.Item) (ratelimit.Decision, error) {
	return l.decide(ctx, subject, items, true)
}

func (l limiter) decide(ctx context.Context, subject string, items []ratelimit.Item, peek bool) (ratelimit.Decision, error) {
	r := l.c.limiter.Load()
	if r == nil {
		return ratelimit.Decision{}, fmt.Errorf("%w: %w", ratelimit.ErrUnavailable, ErrConnecting)
	}
	bctx, done, ok := call(ctx)
	if !ok {
		// Redis was slow for this request; it is not known to be down.
		return ratelimit.Decision{}, fmt.Errorf("%w: %w", ratelimit.ErrUnavailable, ErrBudgetSpent)
	}
	defer done()
	if peek {
		return r.Peek(bctx, subject, items...)
	}
	return r.Decide(bctx, subject, items...)
}

func (l limiter) Reset(ctx context.Context, subject, policy string) error {
	r := l.c.limiter.Load()
	if r == nil {
		return fmt.Errorf("%w: %w", ratelimit.ErrUnavailable, ErrConnecting)
	}
	return r.Reset(ctx, subject, policy)
}
