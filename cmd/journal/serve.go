package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Limits of the HTTP server. They are not settings: they bound what one
// connection may cost, and the request body limit of httpapi (1 MiB) is far
// below what ReadTimeout allows on any working link.
const (
	// readHeaderTimeout bounds the time to read a request's headers
	// (slowloris).
	readHeaderTimeout = 5 * time.Second
	// readTimeout bounds the time to read a whole request, body included.
	readTimeout = 30 * time.Second
	// writeTimeout bounds the time from the end of the request headers to the
	// end of the response.
	writeTimeout = 30 * time.Second
	// idleTimeout is how long a keep-alive connection may wait for its next
	// request; longer than nginx's upstream keep-alive (60s) so that the proxy,
	// not the server, closes idle connections.
	idleTimeout = 120 * time.Second
	// maxHeaderBytes bounds the request line and headers.
	maxHeaderBytes = 64 << 10
)

// newHTTPServer returns the server run uses, with every timeout set.
// Requests do not inherit run's context: a shutdown lets them finish.
func newHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// serve serves srv on ln until ctx is cancelled, then shuts down gracefully
// (docs/design.md, "Lifecycle and operations"): draining is set at once (readiness answers 503 "draining"),
// keep-alives are disabled so clients reconnect elsewhere, and after drain the
// listener is closed and in-flight requests get up to timeout to finish, on a
// fresh context. serve returns nil after a clean shutdown; an error if Serve
// fails or requests were still running at the timeout (they are then cut
// off). It returns only once the server has stopped.
func serve(ctx context.Context, logger *slog.Logger, srv *http.Server, ln net.Listener, draining *atomic.Bool, drain, timeout time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	draining.Store(true)
	srv.SetKeepAlivesEnabled(false)
	logger.Info("shutdown: readiness is now 503 draining", "drain", drain.String(), "timeout", timeout.String())
	drainTimer := time.NewTimer(drain)
	select {
	case <-drainTimer.C:
	case err := <-errc:
		drainTimer.Stop()
		return fmt.Errorf("serve: %w", err)
	}

	logger.Info("shutdown: closing the listener, waiting for in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		<-errc
		return fmt.Errorf("shutdown: requests still running after JOURNAL_SHUTDOWN_TIMEOUT %s were cut off: %w", timeout, err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	logger.Info("shutdown: all requests finished")
	return nil
}
