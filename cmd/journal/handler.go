package main

import (
	"log/slog"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/httpapi"
	"github.com/journalsvc/journal/password"
)

// newHandler builds the HTTP handler stack on store: the API of DESIGN.md
// 3.2 with a fresh Prometheus registry (Go runtime and process collectors
// included), /readyz checking the database and answering "draining" once
// draining is set.
func newHandler(cfg Config, logger *slog.Logger, instance string, store journal.Store, draining *atomic.Bool) (http.Handler, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return httpapi.NewServer(httpapi.Options{
		Logger:     logger,
		Users:      store,
		Tokens:     store,
		Entries:    store,
		Passwords:  password.New(password.Options{}),
		Metrics:    reg,
		InstanceID: instance,
		TokenTTL:   cfg.TokenTTL,
		Database:   store.Ping,
		Draining:   draining.Load,
	})
}
