package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/httpapi"
	"github.com/journalsvc/journal/internal/config"
	"github.com/journalsvc/journal/internal/tracing"
	"github.com/journalsvc/journal/postgres"
	"github.com/journalsvc/journal/sqlite"
)

// run is the whole program: it parses the configuration from args and getenv,
// opens the listener and serves from then on (the start-up handlers of
// httpapi.NewStarting while the database opens, then the handler stack)
// until ctx is cancelled, then shuts down gracefully (see serve) and returns
// nil. Cancelled while the database opens, it closes the listener at once.
// -h writes the settings to stdout and returns nil. Logs are JSON lines on
// stderr; the first is {"msg":"listening","addr":"HOST:PORT",...} with the
// actual address (and "ops_addr" with the operations listener's, when
// JOURNAL_OPS_ADDR is set). Errors: a *config.Error or *config.UsageError for
// bad configuration, the policy file's included, returned before anything is
// opened; any other error when the service cannot start or stop cleanly.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runWith(ctx, args, getenv, stdout, stderr, hooks{})
}

// hooks are the parts of run a test may replace; the zero value is the
// service as it ships.
type hooks struct {
	// spans, when set, receives the trace spans (tracing must still be
	// turned on by the OTEL_* variables) instead of the OTLP exporter.
	spans sdktrace.SpanExporter
}

// runWith is run with hooks.
func runWith(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, h hooks) error {
	cfg, err := config.Parse(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		config.Usage(stdout)
		return nil
	}
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	// The policy file is configuration: an invalid one stops start-up before
	// anything is opened, like any other invalid setting.
	policies, err := cfg.Policies()
	if err != nil {
		return err
	}

	// The listener next: a bind error surfaces before anything else starts,
	// and the instance ID can name the actual port.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	defer ln.Close() // for the error paths; Shutdown closes it otherwise
	var opsLn net.Listener
	listening := []any{"addr", ln.Addr().String()}
	if cfg.OpsAddr != "" {
		if opsLn, err = net.Listen("tcp", cfg.OpsAddr); err != nil {
			return fmt.Errorf("JOURNAL_OPS_ADDR: %w", err)
		}
		defer opsLn.Close()
		listening = append(listening, "ops_addr", opsLn.Addr().String())
	}
	instance := cfg.InstanceID
	if instance == "" {
		instance = defaultInstanceID(ln.Addr())
	}
	// httpapi adds the instance to its own lines; run's lines get it here.
	runLog := logger.With("instance", instance)
	runLog.Info("listening", append(listening, "database", cfg.Database.String())...)
	if cfg.Redis == nil {
		runLog.Info("JOURNAL_REDIS_URL is empty: rate limiter and cache are in-process, single instance only")
	}
	tr, err := tracing.New(ctx, cfg.Tracing, instance, h.spans)
	if err != nil {
		return err
	}
	if tr != nil {
		runLog.Info("tracing on: spans go to the OTLP exporter of the OTEL_* variables")
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
		defer cancel()
		if err := tr.Shutdown(sctx); err != nil {
			runLog.Warn("tracing: spans not exported at shutdown", "err", err)
		}
	}()

	// Both listeners answer from here on: while the database opens (its
	// migrations or a reindex may take minutes) /livez answers 200, /readyz
	// 503 "unready" with the database "starting", and the API 503 with
	// Retry-After (httpapi.NewStarting); the full handlers replace them once
	// it is open.
	var draining atomic.Bool
	api, ops := &handoff{}, &handoff{}
	startAPI, startOps := httpapi.NewStarting(logger, instance, opsLn != nil)
	api.set(startAPI)
	srv := newHTTPServer(api, runLog)
	served := make(chan error, 1)
	go func() { served <- serve(ctx, runLog, srv, ln, &draining, cfg.ShutdownDrain, cfg.ShutdownTimeout) }()
	stopOps := func() {}
	if opsLn != nil {
		// The operations listener outlives the API's shutdown, so that
		// /readyz reports "draining" throughout it.
		ops.set(startOps)
		opsSrv := newHTTPServer(ops, runLog)
		opsDone := make(chan error, 1)
		go func() { opsDone <- opsSrv.Serve(opsLn) }()
		stopOps = sync.OnceFunc(func() {
			sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
			defer cancel()
			if err := opsSrv.Shutdown(sctx); err != nil {
				_ = opsSrv.Close()
			}
			if err := <-opsDone; !errors.Is(err, http.ErrServerClosed) {
				runLog.Error("operations listener failed", "err", err)
			}
		})
		defer stopOps()
	}
	// abort stops serving at once, for a start-up that cannot finish.
	abort := func() {
		_ = srv.Close()
		<-served
		stopOps()
	}

	runLog.Info("opening database: migrations, then the search index")
	opened := time.Now()
	store, err := openStore(ctx, cfg, tr)
	if err != nil {
		abort()
		if ctx.Err() != nil {
			runLog.Info("stopped during start-up")
			return nil
		}
		return fmt.Errorf("open database %s: %w", cfg.Database, err)
	}
	defer func() {
		if err := store.Close(); err != nil {
			runLog.Error("close database", "err", err)
		}
	}()
	runLog.Info("database open", "took", time.Since(opened).Round(time.Millisecond).String())

	st, err := newHandler(cfg, policies, logger, instance, store, &draining, tr)
	if err != nil {
		abort()
		return err
	}
	defer st.close() // Redis, the limiter and the cache, before the database
	if opsLn != nil {
		ops.set(st.ops)
	}
	api.set(st.handler)
	err = <-served
	stopOps()
	return err
}

// handoff is the handler a server starts with: it serves the start-up
// handlers until set replaces them with the full ones.
type handoff struct{ h atomic.Pointer[http.Handler] }

func (s *handoff) set(h http.Handler) { s.h.Store(&h) }

func (s *handoff) ServeHTTP(w http.ResponseWriter, r *http.Request) { (*s.h.Load()).ServeHTTP(w, r) }

// defaultInstanceID returns hostname:port of the listener.
func defaultInstanceID(addr net.Addr) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	port := "0"
	if ta, ok := addr.(*net.TCPAddr); ok {
		port = strconv.Itoa(ta.Port)
	}
	return host + ":" + port
}

// storeOpenTimeout bounds opening the database: connecting, the migrations
// and the reindex of the search index. Connecting is bounded on its own (a
// database that is down fails start-up at once), and every reindex batch by
// the query timeout, so this only stops a start-up that makes no end; it is
// long because the instance answers /livez meanwhile, and a reindex of a
// large database takes minutes. A reindex cut short resumes where its last
// committed batch ended.
const storeOpenTimeout = 15 * time.Minute

// tracingFlushTimeout bounds the export of the last spans at exit.
const tracingFlushTimeout = 5 * time.Second

// openStore opens the database of cfg and applies its migrations. With tr,
// every PostgreSQL query is a span (SQLite's are not traced).
func openStore(ctx context.Context, cfg config.Config, tr *tracing.Tracing) (journal.Database, error) {
	ctx, cancel := context.WithTimeout(ctx, storeOpenTimeout)
	defer cancel()
	if cfg.Database.SQLitePath != "" {
		return sqlite.Open(ctx, cfg.Database.SQLitePath)
	}
	return postgres.Open(ctx, cfg.Database.PostgresURL, cfg.DatabaseMaxConns, postgres.WithTracer(tr.PgxTracer()))
}
