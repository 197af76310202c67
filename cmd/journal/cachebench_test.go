package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/cache"
	"github.com/journalsvc/journal/cache/rediscache"
	"github.com/journalsvc/journal/cache/rediscache/rediscachetest"
	"github.com/journalsvc/journal/entrycache"
	"github.com/journalsvc/journal/httpapi"
	"github.com/journalsvc/journal/internal/config"
	"github.com/journalsvc/journal/internal/metrics"
	"github.com/journalsvc/journal/internal/redisconn"
	"github.com/journalsvc/journal/internal/testenv"
	"github.com/journalsvc/journal/password"
	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/memorylimit"
	"github.com/journalsvc/journal/ratelimit/redislimit"
	"github.com/journalsvc/journal/sqlite"
)

// benchRate is a limit no benchmark reaches: every decision admits, but the
// limiter still decides (and, on Redis, runs its script) on every request.
const benchRate = "1000000000/1h"

// BenchmarkFullStack measures GET /v1/entries/{id} and a 20-entry list page
// through everything run builds, over loopback HTTP/1.1 keep-alive, the
// configuration of the full-stack goal (docs/design.md, "Numbers"): IP limit
// + auth + user limit + entry cache, limits set high, access log at warn (not
// written). Variants:
//
//   - redis: JOURNAL_REDIS_URL set (Redis limiter: two EVALSHA per request;
//     token and entry served from the rueidis near cache);
//   - memory: JOURNAL_REDIS_URL empty (memorylimit + memorycache);
//   - uncached: the same Redis limiter and middleware, but the API reads
//     tokens and entries straight from the database (the entry cache left
//     out of the wiring): what the cache saves per request.
//
// Each on SQLite and PostgreSQL.
//
//	go test -run '^$' -bench FullStack -benchtime 3s ./cmd/journal
func BenchmarkFullStack(b *testing.B) {
	redisURL := "redis://" + testenv.RedisAddr(b)
	for dbName, dbURL := range databases(b) {
		for _, variant := range []string{"redis", "memory", "uncached"} {
			b.Run(dbName+"/"+variant, func(b *testing.B) {
				vars := map[string]string{
					"JOURNAL_DATABASE_URL":    dbURL(),
					"JOURNAL_RATE_LIMIT_IP":   benchRate,
					"JOURNAL_RATE_LIMIT_USER": benchRate,
					"JOURNAL_LOG_LEVEL":       "warn",
					"JOURNAL_REDIS_PREFIX":    testenv.RandomPrefix(),
				}
				if variant != "memory" {
					vars["JOURNAL_REDIS_URL"] = redisURL
				}
				var base string
				if variant == "uncached" {
					base = startUncached(b, vars)
				} else {
					base = startQuiet(b, vars)
				}
				benchAPI(b, base)
			})
		}
	}
}

// benchAPI creates a user with 25 entries on base and runs the get and
// list20 sub-benchmarks against it.
func benchAPI(b *testing.B, base string) {
	c := signup(b, base, "bench")
	var id string
	for i := range 25 {
		r := c.do("POST", "/v1/entries", map[string]string{"title": fmt.Sprintf("entry %d", i), "body": "a short body of a journal entry"})
		expect(b, "create", r, http.StatusCreated)
		id = decodeJSON[entryJSON](b, r).ID
	}
	hc := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256},
	}
	b.Cleanup(hc.CloseIdleConnections)
	bench := func(path string) func(*testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(benchClients / runtime.GOMAXPROCS(0))
			b.RunParallel(func(pb *testing.PB) {
				req, err := http.NewRequest("GET", base+path, nil)
				if err != nil {
					b.Error(err)
					return
				}
				req.Header.Set("Authorization", "Bearer "+c.token)
				for pb.Next() {
					resp, err := hc.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err != nil || resp.StatusCode != http.StatusOK {
						b.Errorf("GET %s: %d, %v", path, resp.StatusCode, err)
						return
					}
				}
			})
		}
	}
	b.Run("get", bench("/v1/entries/"+id))
	b.Run("list20", bench("/v1/entries?limit=20"))
}

// benchClients is the number of concurrent clients of the HTTP benchmarks,
// as wrk's -c64 in bench/fullstack.sh.
const benchClients = 64

// startQuiet is startJournal for vars that may set JOURNAL_LOG_LEVEL to
// warn (no access log written, as in bench/fullstack.sh), which also leaves
// out the "listening" line startJournal reads the address from: it serves
// on a free loopback port it picks itself. It returns the base URL.
func startQuiet(tb testing.TB, vars map[string]string) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	j := launch(tb, hooks{}, vars, []string{"-addr", addr})
	j.waitReady(tb, "http://"+addr)
	return "http://" + addr
}

// startUncached serves the stack newHandler builds for vars, except that
// the API reads users, tokens and entries from the database directly: the
// Redis limiter, the middleware chain and the http.Server are the service's
// own. It returns the base URL; everything stops at Cleanup.
func startUncached(tb testing.TB, vars map[string]string) string {
	tb.Helper()
	cfg, err := config.Parse(nil, env(vars))
	if err != nil {
		tb.Fatal(err)
	}
	if cfg.Redis == nil {
		tb.Fatal("startUncached needs JOURNAL_REDIS_URL")
	}
	logger := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: cfg.LogLevel}))
	db, err := openStore(context.Background(), cfg, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		tb.Fatal(err)
	}
	conn := redisconn.Start(redisconn.Options{URL: *cfg.Redis, Logger: logger,
		Limiter: redislimit.Options{Prefix: cfg.RedisPrefix, Timeout: cfg.RedisTimeout, InstanceID: "uncached"}})
	tb.Cleanup(conn.Close)
	local := memorylimit.New(memorylimit.Options{})
	tb.Cleanup(func() { _ = local.Close() })
	limiter, err := ratelimit.NewFallback(conn.Limiter(), local, ratelimit.FallbackOptions{Instances: conn.LiveInstances})
	if err != nil {
		tb.Fatal(err)
	}
	policies, err := cfg.Policies()
	if err != nil {
		tb.Fatal(err)
	}
	h, err := httpapi.NewServer(httpapi.Options{
		Logger: logger, Users: db, Tokens: db, Entries: db, Idempotency: db,
		Passwords: password.New(password.Options{}), Metrics: reg, InstanceID: "uncached",
		Database: db.Ping, Redis: conn.Ready, Limiter: limiter, Policies: policies, OnDecision: m.OnDecision,
	})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := newHTTPServer(h, logger)
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// BenchmarkEntryTiers reads one entry through entrycache (what the API's
// GET /v1/entries/{id} calls) from each tier: near (rueidis near-cache hit),
// redis (the same Store on a client with client-side caching disabled, so
// every read is a Redis GET) and database (the SQLite or PostgreSQL store
// itself, no cache).
//
//	go test -run '^$' -bench EntryTiers -benchtime 2s ./cmd/journal
func BenchmarkEntryTiers(b *testing.B) {
	addr := testenv.RedisAddr(b)
	for dbName, dbURL := range databases(b) {
		b.Run(dbName, func(b *testing.B) {
			var db journal.Database
			var err error
			if u := dbURL(); dbName == "sqlite" {
				db, err = sqlite.Open(context.Background(), u[len("sqlite:"):])
			} else {
				cfg, perr := config.Parse(nil, env(map[string]string{"JOURNAL_DATABASE_URL": u}))
				if perr != nil {
					b.Fatal(perr)
				}
				db, err = openStore(context.Background(), cfg, nil)
			}
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = db.Close() })
			ctx := context.Background()
			now := time.Now()
			u := journal.User{ID: journal.NewID(now), Username: "tiers", PasswordHash: "x", CreatedAt: now}
			if err := db.CreateUser(ctx, u); err != nil {
				b.Fatal(err)
			}
			e, err := db.CreateEntry(ctx, journal.Entry{ID: journal.NewID(now), UserID: u.ID, Title: "hello", Body: "a short body of a journal entry", Version: 1, CreatedAt: now, UpdatedAt: now})
			if err != nil {
				b.Fatal(err)
			}
			// read runs the timed loop after a warm-up read and reset.
			read := func(b *testing.B, es journal.EntryStore, reset func()) {
				if got, err := es.Entry(ctx, u.ID, e.ID); err != nil || got.Title != e.Title {
					b.Fatalf("warm-up Entry = %+v, %v", got, err)
				}
				reset()
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := es.Entry(ctx, u.ID, e.ID); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			for _, tier := range []string{"near", "redis"} {
				b.Run(tier, func(b *testing.B) {
					opt := rediscache.ClientOptions([]string{addr}, rediscache.ClientConfig{})
					opt.DisableCache = tier == "redis"
					client, _, err := rediscache.NewClient(opt)
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(client.Close) // after the store's
					rs := rediscachetest.Store(b, client, rediscache.Options{})
					var tiers [2]atomic.Int64 // near, redis hits
					ec, err := entrycache.New(noClose{db}, rs, entrycache.Options{
						Prefix:  testenv.RandomPrefix(),
						Healthy: rs.Healthy,
						Cache: cache.Options{OnResult: func(t, r string) {
							if r == cache.ResultHit && t == "near" {
								tiers[0].Add(1)
							} else if r == cache.ResultHit && t == "redis" {
								tiers[1].Add(1)
							}
						}},
					})
					if err != nil {
						b.Fatal(err)
					}
					defer ec.Close()
					testenv.WaitFor(b, 10*time.Second, "entry cache trusted", ec.Trusted)
					_, _ = ec.Entry(ctx, u.ID, e.ID) // fill
					read(b, ec, func() { tiers[0].Store(0); tiers[1].Store(0) })
					hits := map[string]int64{"near": tiers[0].Load(), "redis": tiers[1].Load()}
					if hits[tier] != int64(b.N) {
						b.Fatalf("%d reads, %v hits by tier", b.N, hits)
					}
				})
			}
			b.Run("database", func(b *testing.B) { read(b, db, func() {}) })
		})
	}
}
