//go:build unix

package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/journalsvc/journal/internal/config"
	"github.com/journalsvc/journal/internal/testenv"
)

// BenchmarkRedisHandler measures GET /v1/entries/{id} through the handler
// newHandler builds with JOURNAL_REDIS_URL set (Redis limiter with leases,
// Redis cache with its near cache, the request budget), called in process:
// no listener, no client, so allocs/op and ns/op are the service's own
// work per request, the part of BenchmarkFullStack's redis variant that the
// service controls. Limits are set high, access log at warn, SQLite.
//
//	go test -run '^$' -bench RedisHandler -benchmem ./cmd/journal
func BenchmarkRedisHandler(b *testing.B) {
	vars := map[string]string{
		"JOURNAL_DATABASE_URL":    "sqlite:" + filepath.Join(b.TempDir(), "journal.db"),
		"JOURNAL_REDIS_URL":       "redis://" + testenv.RedisAddr(b),
		"JOURNAL_REDIS_PREFIX":    testenv.RandomPrefix(),
		"JOURNAL_RATE_LIMIT_IP":   benchRate,
		"JOURNAL_RATE_LIMIT_USER": benchRate,
		"JOURNAL_LOG_LEVEL":       "warn",
	}
	cfg, err := config.Parse(nil, env(vars))
	if err != nil {
		b.Fatal(err)
	}
	policies, err := cfg.Policies()
	if err != nil {
		b.Fatal(err)
	}
	logger := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: cfg.LogLevel}))
	db, err := openStore(b.Context(), cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	var draining atomic.Bool
	st, err := newHandler(cfg, policies, logger, "bench", db, &draining, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.close)
	srv := httptest.NewServer(st.handler)
	b.Cleanup(srv.Close)
	testenv.WaitFor(b, 10*time.Second, "cache trusted", func() bool {
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(body), "\njournal_cache_trusted 1\n")
	})
	c := signup(b, srv.URL, "bench")
	r := c.do("POST", "/v1/entries", map[string]string{"title": "entry", "body": "a short body of a journal entry"})
	expect(b, "create", r, http.StatusCreated)
	path := "/v1/entries/" + decodeJSON[entryJSON](b, r).ID
	auth := "Bearer " + c.token

	get := func() int {
		// net/http gives each request a context of its own that it
		// cancels when the request ends; the contexts the service derives
		// register with it.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req := httptest.NewRequestWithContext(ctx, "GET", path, nil)
		req.Header.Set("Authorization", auth)
		w := &benchWriter{h: make(http.Header)}
		st.handler.ServeHTTP(w, req)
		return w.code
	}
	for range 100 { // fill the near cache and the leases
		if code := get(); code != http.StatusOK {
			b.Fatalf("warm-up GET %s: %d", path, code)
		}
	}
	b.ReportAllocs()
	// As many requests in flight as BenchmarkFullStack's clients: they
	// share the near-cache barrier rounds (at most one per millisecond).
	b.SetParallelism(benchClients / runtime.GOMAXPROCS(0))
	cpu0 := cpuTime(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if code := get(); code != http.StatusOK {
				b.Errorf("GET %s: %d", path, code)
				return
			}
		}
	})
	b.StopTimer()
	// With 64 requests in flight ns/op is mostly their wait for the
	// barrier rounds; the CPU the process spent per request (user and
	// system, its own goroutines and the garbage collector included) is the
	// cost the service controls.
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime returns the CPU time (user and system) the process has used.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchWriter is a minimal ResponseWriter, so BenchmarkRedisHandler
// measures the handler rather than httptest.ResponseRecorder.
type benchWriter struct {
	h    http.Header
	code int
}

func (w *benchWriter) Header() http.Header { return w.h }

func (w *benchWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return len(p), nil
}

func (w *benchWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
