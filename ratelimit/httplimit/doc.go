// Package httplimit is the net/http middleware of the journal rate limiter: it
// finds who is calling, asks a [ratelimit.Limiter] for one atomic decision per
// request, and tells the client about it the standard way.
//
// # Client identity
//
// [ClientIP] returns the TCP peer's address unless the peer is one of the
// [TrustedProxies]; only then are X-Forwarded-For (all lines, right to left,
// skipping trusted hops) or, without it, RFC 7239 Forwarded believed.
// Forwarding headers from anyone else are ignored, so a client cannot choose
// its own key or pin a victim's. [SubjectForIP] keys IPv4 clients by address
// and IPv6 clients by their /64, so rotating addresses inside one /64 does not
// escape a limit.
//
// # Headers and responses
//
// Every request a policy evaluated gets, per draft-ietf-httpapi-ratelimit-headers-10,
// one member per policy in RateLimit-Policy (`"ip";q=100;w=60`) and RateLimit
// (`"ip";r=42;t=1`), appended to those an earlier middleware set, plus the
// legacy X-RateLimit-Limit/-Remaining/-Reset ([SetHeaders]). A denied request
// gets 429, a Retry-After in whole seconds (rounded up, at least 1, the latest
// retry of the violated policies) and an application/problem+json body of type
// quota-exceeded naming the "violated-policies". A fail-closed policy whose
// store is unavailable gets 503 with Retry-After and type
// temporary-reduced-capacity. Shadow policies never block; they and degraded
// results are marked with the ;journal-shadow and ;journal-degraded parameters.
//
// # Composition
//
// One [Middleware] decides for one subject. A service runs one before
// authentication, keyed by client IP (with route-specific policies such as
// signup), and one after it, keyed by the user taken from the request
// context; both sets of members appear on the response. Handlers whose subject
// is only known inside them (a login keyed by IP and username) call
// [Middleware.Limit]. [WithOutcome] and [OutcomeFromContext] let an outer
// access-log middleware learn what happened ("allowed", "denied",
// "shadow-denied", "degraded", "unavailable"); Options.OnDecision feeds
// metrics.
package httplimit
