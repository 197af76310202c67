package httplimit

import (
	"context"
	"sync/atomic"

	"github.com/journalsvc/journal/ratelimit"
)

// Outcome summarises what rate limiting did to a request, for access logs and
// metrics. Outcomes are ordered by severity; when several decisions touch one
// request (an ip middleware, then a user middleware) the context keeps the
// most severe. The zero value is [OutcomeNone].
type Outcome uint32

// The outcomes, from least to most severe.
const (
	// OutcomeNone: no policy evaluated the request (skipped route, no
	// subject, no items).
	OutcomeNone Outcome = iota
	// OutcomeAllowed: every policy admitted, using the shared store.
	OutcomeAllowed
	// OutcomeDegraded: admitted, but decided without the shared store
	// (a ratelimit.Fallback decided it locally or by failing open).
	OutcomeDegraded
	// OutcomeShadowDenied: admitted, but a shadow policy would have denied.
	OutcomeShadowDenied
	// OutcomeUnavailable: answered 503 because a fail-closed policy could
	// not be decided.
	OutcomeUnavailable
	// OutcomeDenied: answered 429.
	OutcomeDenied
)

// String returns "none", "allowed", "degraded", "shadow-denied",
// "unavailable" or "denied".
func (o Outcome) String() string {
	switch o {
	case OutcomeNone:
		return "none"
	case OutcomeAllowed:
		return "allowed"
	case OutcomeDegraded:
		return "degraded"
	case OutcomeShadowDenied:
		return "shadow-denied"
	case OutcomeUnavailable:
		return "unavailable"
	case OutcomeDenied:
		return "denied"
	}
	return "outcome(" + itoa(uint32(o)) + ")"
}

// MarshalText implements encoding.TextMarshaler, so slog and encoding/json
// print the String form.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

func itoa(u uint32) string {
	var b [10]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + u%10)
		u /= 10
		if u == 0 {
			return string(b[i:])
		}
	}
}

// Admitted reports whether the request went on to the next handler.
func (o Outcome) Admitted() bool { return o != OutcomeDenied && o != OutcomeUnavailable }

// OutcomeOf classifies a decision that Decide wrote without error for items.
func OutcomeOf(items []ratelimit.Item, d *ratelimit.Decision) Outcome {
	if !d.Allowed {
		return OutcomeDenied
	}
	o := OutcomeAllowed
	for i := range d.Results {
		r := &d.Results[i]
		if items[i].Policy.Shadow && !r.Allowed {
			return OutcomeShadowDenied
		}
		if r.Degraded {
			o = OutcomeDegraded
		}
	}
	return o
}

type outcomeKey struct{}

type outcomeRecord struct{ v atomic.Uint32 }

// raise stores o if it is more severe than the recorded outcome.
func (rec *outcomeRecord) raise(o Outcome) {
	for {
		cur := rec.v.Load()
		if uint32(o) <= cur || rec.v.CompareAndSwap(cur, uint32(o)) {
			return
		}
	}
}

// WithOutcome returns a copy of ctx carrying an empty outcome record, which
// every [Middleware] (and [Middleware.Limit]) running with a context derived
// from it updates. An access-log middleware placed before the rate-limit
// middlewares calls it, passes the request on, and then reads
// [OutcomeFromContext]:
//
//	r = r.WithContext(httplimit.WithOutcome(r.Context()))
//	next.ServeHTTP(w, r)
//	logger.Info("request", "ratelimit", httplimit.OutcomeFromContext(r.Context()))
//
// A Middleware that finds no record installs one for the handlers after it.
func WithOutcome(ctx context.Context) context.Context {
	return context.WithValue(ctx, outcomeKey{}, &outcomeRecord{})
}

// OutcomeFromContext returns the most severe outcome recorded in ctx so far,
// or [OutcomeNone] when ctx carries no record (see [WithOutcome]) or no
// decision was made yet.
func OutcomeFromContext(ctx context.Context) Outcome {
	if rec := recordFrom(ctx); rec != nil {
		return Outcome(rec.v.Load())
	}
	return OutcomeNone
}

func recordFrom(ctx context.Context) *outcomeRecord {
	rec, _ := ctx.Value(outcomeKey{}).(*outcomeRecord)
	return rec
}
