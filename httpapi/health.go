package httpapi

import (
	"context"
	_ "embed"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"
)

func handleLivez(logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, r, logger, http.StatusOK, map[string]string{"status": "up"})
	})
}

// ErrStarting, wrapped by the error of a readiness [Check], says that the
// dependency answers but is still getting ready (the rate limiter dialing its
// connections): /readyz then answers 503 "unready" with the check's status
// "starting", so that no traffic reaches the instance before it can serve it
// at full speed. Any other error is "down".
var ErrStarting = errors.New("httpapi: dependency starting")

// checkJSON is one dependency in the /readyz answer.
type checkJSON struct {
	Status    string `json:"status"` // "up", "starting" or "down"
	LatencyMS int64  `json:"latency_ms"`
}

// readyJSON is the /readyz answer.
type readyJSON struct {
	Status string               `json:"status"` // ready, degraded, draining, unready
	Checks map[string]checkJSON `json:"checks"`
}

// handleReadyz runs the checks concurrently, each bounded by timeout, and
// answers 200 "ready", 200 "degraded" (Redis down), 503 "unready" (database
// down, or Redis starting: see [ErrStarting]) or 503 "draining" (shutting
// down; takes precedence).
func handleReadyz(logger *slog.Logger, database, redis Check, draining func() bool, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		checks := map[string]Check{"database": database}
		if redis != nil {
			checks["redis"] = redis
		}
		out := readyJSON{Checks: make(map[string]checkJSON, len(checks))}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for name, check := range checks {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(r.Context(), timeout)
				defer cancel()
				start := time.Now()
				err := check(ctx)
				c := checkJSON{Status: "up", LatencyMS: time.Since(start).Milliseconds()}
				if errors.Is(err, ErrStarting) {
					c.Status = "starting"
				} else if err != nil {
					c.Status = "down"
					logger.LogAttrs(r.Context(), slog.LevelWarn, "readiness check failed",
						slog.String("check", name), slog.String("error", err.Error()))
				}
				mu.Lock()
				out.Checks[name] = c
				mu.Unlock()
			})
		}
		wg.Wait()
		status := http.StatusOK
		switch {
		case draining():
			out.Status, status = "draining", http.StatusServiceUnavailable
		case out.Checks["database"].Status != "up", out.Checks["redis"].Status == "starting":
			out.Status, status = "unready", http.StatusServiceUnavailable
		case redis != nil && out.Checks["redis"].Status != "up":
			out.Status = "degraded"
		default:
			out.Status = "ready"
		}
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", strconv.Itoa(1))
		}
		writeJSON(w, r, logger, status, out)
	})
}

//go:embed openapi.json
var openAPIDoc []byte

func handleOpenAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(openAPIDoc)))
		_, _ = w.Write(openAPIDoc)
	})
}
