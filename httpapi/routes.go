package httpapi

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// access says which per-route middleware a route gets.
type access int

const (
	accessPublic      access = iota // IP limit
	accessAuth                      // IP limit, auth, user limit
	accessOperational               // nothing: never limited nor authenticated
	// accessOps is accessOperational, and the route moves to the operations
	// handler of NewSplitServer (JOURNAL_OPS_ADDR).
	accessOps
)

// route is one row of the API table.
type route struct {
	Pattern string // ServeMux pattern with method
	Access  access
	// Limits are the rate-limit policies the route evaluates beyond IP
	// (every public or authenticated route) and User (every authenticated
	// one).
	Limits  limitSet
	Handler http.Handler
}

// routes is the whole API surface, in one place, with each route's access
// and rate-limit policies. The OpenAPI document (openapi.json) describes
// exactly these routes; a test keeps the two equal. lim limits password
// checks (nil: no limit).
func routes(o Options, lim *logins) []route {
	lg := o.Logger
	return []route{
		{"POST /v1/users", accessPublic, limitSignup, handleUserCreate(lg, o.Users, o.Passwords, o.Now)},
		{"GET /v1/users/me", accessAuth, 0, handleUserMe(lg, o.Users)},
		{"PUT /v1/users/me/password", accessAuth, limitLogin, handlePasswordChange(lg, o.Users, o.Passwords, lim, o.Now)},
		{"DELETE /v1/users/me", accessAuth, 0, handleUserDelete(lg, o.Users, o.Now)},
		{"POST /v1/tokens", accessPublic, limitLogin, handleTokenCreate(lg, o.Users, o.Tokens, o.Passwords, lim, o.TokenTTL, o.Now)},
		{"GET /v1/tokens", accessAuth, 0, handleTokenList(lg, o.Tokens, o.Now)},
		{"DELETE /v1/tokens", accessAuth, 0, handleTokenRevokeAll(lg, o.Tokens, o.Now)},
		{"DELETE /v1/tokens/current", accessAuth, 0, handleTokenRevoke(lg, o.Tokens)},
		{"DELETE /v1/tokens/{id}", accessAuth, 0, handleTokenRevokeID(lg, o.Tokens, o.Now)},

		{"GET /v1/entries", accessAuth, 0, handleEntryList(lg, o.Entries)},
		{"POST /v1/entries", accessAuth, 0, handleEntryCreate(lg, o.Entries, idempotency{o.Idempotency, o.IdempotencyTTL, o.IdempotencyPending}, o.Now)},
		{"GET /v1/entries/{id}", accessAuth, 0, handleEntryGet(lg, o.Entries)},
		{"PATCH /v1/entries/{id}", accessAuth, 0, handleEntryPatch(lg, o.Entries, o.Now)},
		{"DELETE /v1/entries/{id}", accessAuth, 0, handleEntryDelete(lg, o.Entries)},
		{"GET /v1/export", accessAuth, 0, handleExport(lg, o.Entries)},

		{"GET /livez", accessOps, 0, handleLivez(lg)},
		{"GET /readyz", accessOps, 0, handleReadyz(lg, o.Database, o.Redis, o.Draining, o.ReadyTimeout)},
		{"GET /metrics", accessOps, 0, promhttp.HandlerFor(o.Metrics, promhttp.HandlerOpts{})},
		{"GET /openapi.json", accessOperational, 0, handleOpenAPI()},
	}
}
