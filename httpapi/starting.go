package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/journalsvc/journal"
)

// errOpening is what a request gets from the handlers of [NewStarting]: the
// database is not open yet, which maps to 503 with Retry-After like a
// database outage.
var errOpening = fmt.Errorf("%w: the database is still opening", journal.ErrUnavailable)

// NewStarting returns the handlers an instance serves while its database
// opens, which may take minutes when migrations or a reindex run: the
// process answers at once instead of leaving connections in the listen
// backlog. GET /livez answers 200 "up" (the process is alive), GET /readyz
// 503 "unready" with the database check "starting" (no traffic should come
// yet), GET /openapi.json the document, and every other request 503
// problem+json with Retry-After, as during a database outage, so nothing is
// written. Each request gets a request ID, X-Instance and an access-log line.
//
// With split (an operations listener, as for [NewSplitServer]), ops serves
// /livez and /readyz and api answers them 404; otherwise ops is nil. The
// caller swaps in the handlers of [NewServer] once the database is open.
func NewStarting(logger *slog.Logger, instanceID string, split bool) (api, ops http.Handler) {
	opening := handleUnmatched(logger, errOpening)
	starting := func(context.Context) error { return fmt.Errorf("%w: opening", ErrStarting) }
	opts := Options{Logger: logger, InstanceID: instanceID}
	// The counters of this phase are not served: /metrics is not answered
	// until the API's registry exists.
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		panic(err) // a fresh registry has no collectors to conflict with
	}
	mux, opsMux := http.NewServeMux(), http.NewServeMux()
	healthMux := mux
	if split {
		healthMux = opsMux
	}
	healthMux.Handle("GET /livez", capturePattern(handleLivez(logger)))
	healthMux.Handle("GET /readyz", capturePattern(handleReadyz(logger, starting, nil, func() bool { return false }, DefaultReadyTimeout)))
	mux.Handle("GET /openapi.json", capturePattern(handleOpenAPI()))
	mux.Handle("/", opening)
	notFound := handleUnmatched(logger, errNoRoute)
	notAllowed := handleUnmatched(logger, errMethodNotAllowed)
	api = outerChain(problemMux(mux, notFound, notAllowed), opts, m)
	if split {
		ops = outerChain(problemMux(opsMux, notFound, notAllowed), opts, m)
		// The public listener answers the operational paths 404 as
		// NewSplitServer's does.
		for _, p := range []string{"/livez", "/readyz", "/metrics"} {
			mux.Handle(p, notFound)
		}
	}
	return api, ops
}
