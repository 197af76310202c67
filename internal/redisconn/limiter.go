package redisconn

import (
	"context"
	"fmt"

	"github.com/journalsvc/journal/ratelimit"
)

// Limiter returns the Redis rate limiter as a ratelimit.Limiter for the
// primary of the service's ratelimit.Fallback: each decision runs within the
// request's Redis budget. Before the first connection it fails at once with
// an error wrapping [ratelimit.ErrUnavailable] (Redis is down: the first
// attempt failed). With the budget spent it fails at once with an error
// wrapping [ratelimit.ErrUnavailable] and [ratelimit.ErrSlow]: earlier calls
// of this request were slow, which says nothing of Redis, which may be
// granting the subject's quota to other requests and instances meanwhile,
// so the fallback must not grant a share of it.
func (c *Conn) Limiter() ratelimit.Limiter { return limiter{c} }

type limiter struct{ c *Conn }

func (l limiter) Decide(ctx context.Context, d *ratelimit.Decision, subject string, items ...ratelimit.Item) error {
	return l.decide(ctx, d, subject, items, false)
}

func (l limiter) Peek(ctx context.Context, d *ratelimit.Decision, subject string, items ...ratelimit.Item) error {
	return l.decide(ctx, d, subject, items, true)
}

func (l limiter) decide(ctx context.Context, d *ratelimit.Decision, subject string, items []ratelimit.Item, peek bool) error {
	r := l.c.limiter.Load()
	if r == nil {
		return unavailable(d, ErrConnecting)
	}
	// The budget bounds the decision through DecideBy, which derives a
	// context only for a round trip: most decisions are answered from
	// leases.
	deadline, ch, ok := reserve(ctx)
	if !ok {
		return unavailable(d, fmt.Errorf("%w: %w", ratelimit.ErrSlow, ErrBudgetSpent))
	}
	defer ch.done()
	if peek {
		return r.PeekBy(ctx, deadline, d, subject, items...)
	}
	return r.DecideBy(ctx, deadline, d, subject, items...)
}

// unavailable leaves d without results, as a failed decision must, and
// returns cause wrapped in ratelimit.ErrUnavailable.
func unavailable(d *ratelimit.Decision, cause error) error {
	*d = ratelimit.Decision{Results: d.Results[:0]}
	return fmt.Errorf("%w: %w", ratelimit.ErrUnavailable, cause)
}

func (l limiter) Reset(ctx context.Context, subject, policy string) error {
	r := l.c.limiter.Load()
	if r == nil {
		return fmt.Errorf("%w: %w", ratelimit.ErrUnavailable, ErrConnecting)
	}
	return r.Reset(ctx, subject, policy)
}
