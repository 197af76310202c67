package redislimit_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/memorylimit"
	"github.com/journalsvc/journal/ratelimit/redislimit"
)

// newClient returns a rueidis client of the server (or the cluster) at
// addrs, configured as the limiter expects: no retries, a short write
// timeout and keep-alive, no client-side cache.
func newClient(tb testing.TB, addrs ...string) rueidis.Client {
	tb.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:      addrs,
		DisableRetry:     true,
		DisableCache:     true,
		ConnWriteTimeout: 500 * time.Millisecond,
		Dialer:           net.Dialer{KeepAlive: 200 * time.Millisecond, Timeout: 500 * time.Millisecond},
	})
	if err != nil {
		tb.Fatalf("rueidis.NewClient(%s): %v", addrs, err)
	}
	tb.Cleanup(c.Close)
	return c
}

func newLimiter(tb testing.TB, c rueidis.Client, opts redislimit.Options) *redislimit.Limiter {
	tb.Helper()
	return newFakeTimeLimiter(tb, c, opts, nil)
}

// newFakeTimeLimiter is newLimiter with now, if not nil, as the time of its
// script and its local clock.
func newFakeTimeLimiter(tb testing.TB, c rueidis.Client, opts redislimit.Options, now func() time.Time) *redislimit.Limiter {
	tb.Helper()
	l, err := redislimit.NewWithScriptNow(c, opts, now)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { l.Close() })
	return l
}

// withFallback composes l as a service does: the fail modes are decided by a
// ratelimit.Fallback with an in-process local limiter.
func withFallback(tb testing.TB, l *redislimit.Limiter) *ratelimit.Fallback {
	tb.Helper()
	local := memorylimit.New(memorylimit.Options{})
	tb.Cleanup(func() { local.Close() })
	f, err := ratelimit.NewFallback(l, local, ratelimit.FallbackOptions{Instances: l.LiveInstances})
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// assertAllKeysHaveTTL scans prefix and fails for any key without a TTL.
func assertAllKeysHaveTTL(tb testing.TB, c rueidis.Client, prefix string) int {
	tb.Helper()
	ctx := context.Background()
	var cursor uint64
	n := 0
	for {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			tb.Fatalf("SCAN: %v", err)
		}
		for _, k := range e.Elements {
			n++
			ttl, err := c.Do(ctx, c.B().Pttl().Key(k).Build()).AsInt64()
			if err != nil {
				tb.Fatalf("PTTL %s: %v", k, err)
			}
			if ttl == -1 {
				tb.Errorf("key %s has no TTL", k)
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			return n
		}
	}
}
