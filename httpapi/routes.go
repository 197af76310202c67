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
	Handler http.Handler
}

// routes is the whole API surface, in one place. The
// OpenAPI document (openapi.json) describes exactly these routes; a test
// keeps the two equal.
func routes(o Options) []route {
	lg := o.Logger
	return []route{
		{"POST /v1/users", accessPublic, handleUserCreate(lg, o.Users, o.Passwords, o.Now)},
		{"GET /v1/users/me", accessAuth, handleUserMe(lg, o.Users)},
		{"PUT /v1/users/me/password", accessAuth, handlePasswordChange(lg, o.Users, o.Passwords, o.Now)},
		{"DELETE /v1/users/me", accessAuth, handleUserDelete(lg, o.Users, o.Now)},
		{"POST /v1/tokens", accessPublic, handleTokenCreate(lg, o.Users, o.Tokens, o.Passwords, o.TokenTTL, o.Now)},
		{"GET /v1/tokens", accessAuth, handleTokenList(lg, o.Tokens, o.Now)},
		{"DELETE /v1/tokens", accessAuth, handleTokenRevokeAll(lg, o.Tokens, o.Now)},
		{"DELETE /v1/tokens/current", accessAuth, handleTokenRevoke(lg, o.Tokens)},
		{"DELETE /v1/tokens/{id}", accessAuth, handleTokenRevokeID(lg, o.Tokens, o.Now)},

		{"GET /v1/entries", accessAuth, handleEntryList(lg, o.Entries)},
		{"POST /v1/entries", accessAuth, handleEntryCreate(lg, o.Entries, idempotency{o.Idempotency, o.IdempotencyTTL, o.IdempotencyPending}, o.Now)},
		{"GET /v1/entries/{id}", accessAuth, handleEntryGet(lg, o.Entries)},
		{"PATCH /v1/entries/{id}", accessAuth, handleEntryPatch(lg, o.Entries, o.Now)},
		{"DELETE /v1/entries/{id}", accessAuth, handleEntryDelete(lg, o.Entries)},
		{"GET /v1/export", accessAuth, handleExport(lg, o.Entries)},

		{"GET /livez", accessOps, handleLivez(lg)},
		{"GET /readyz", accessOps, handleReadyz(lg, o.Database, o.Redis, o.Draining, o.ReadyTimeout)},
		{"GET /metrics", accessOps, promhttp.HandlerFor(o.Metrics, promhttp.HandlerOpts{})},
		{"GET /openapi.json", accessOperational, handleOpenAPI()},
	}
}
