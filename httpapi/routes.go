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
		{"POST /v1/tokens", accessPublic, handleTokenCreate(lg, o.Users, o.Tokens, o.Passwords, o.TokenTTL, o.Now)},
		{"DELETE /v1/tokens/current", accessAuth, handleTokenRevoke(lg, o.Tokens)},

		{"GET /v1/entries", accessAuth, handleEntryList(lg, o.Entries)},
		{"POST /v1/entries", accessAuth, handleEntryCreate(lg, o.Entries, o.Now)},
		{"GET /v1/entries/{id}", accessAuth, handleEntryGet(lg, o.Entries)},
		{"PATCH /v1/entries/{id}", accessAuth, handleEntryPatch(lg, o.Entries, o.Now)},
		{"DELETE /v1/entries/{id}", accessAuth, handleEntryDelete(lg, o.Entries)},

		{"GET /livez", accessOps, handleLivez(lg)},
		{"GET /readyz", accessOps, handleReadyz(lg, o.Database, o.Redis, o.Draining, o.ReadyTimeout)},
		{"GET /metrics", accessOps, promhttp.HandlerFor(o.Metrics, promhttp.HandlerOpts{})},
		{"GET /openapi.json", accessOperational, handleOpenAPI()},
	}
}
