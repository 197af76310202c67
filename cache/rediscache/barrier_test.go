package rediscache_test

import (
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/journalsvc/journal/cache/cachetest"
	"github.com/journalsvc/journal/cache/rediscache"
	"github.com/journalsvc/journal/cache/rediscache/rediscachetest"
	"github.com/journalsvc/journal/internal/testenv"
)

// slowConn delays every read by delay while on: what a slow network, or a
// busy process, does to the invalidations Redis sends.
type slowConn struct {
	net.Conn
	on    *atomic.Bool
	delay time.Duration
}

func (c slowConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.on.Load() {
		time.Sleep(c.delay)
	}
	return n, err
}

// TestBarrierOrdersReadsAfterInvalidations: while the invalidations of
// instance B arrive late, B's near cache serves a copy older than a write A
// made; after Barrier, started after the write returned, B's read is fresh.
func TestBarrierOrdersReadsAfterInvalidations(t *testing.T) {
	t.Parallel()
	addr := testenv.RedisAddr(t)
	a := newInstance(t, addr, rediscache.Options{}, rediscache.ClientConfig{}).store
	var slow atomic.Bool
	opt := rediscache.ClientOptions([]string{addr}, rediscache.ClientConfig{ConnWriteTimeout: 5 * time.Second})
	opt.DialCtxFn = func(ctx context.Context, dst string, d *net.Dialer, _ *tls.Config) (net.Conn, error) {
		c, err := d.DialContext(ctx, "tcp", dst)
		if err != nil {
			return nil, err
		}
		return slowConn{Conn: c, on: &slow, delay: 200 * time.Millisecond}, nil
	}
	client, near, err := rediscache.NewClient(opt)
	if err != nil || !near {
		t.Fatalf("NewClient: %v, near cache %v", err, near)
	}
	t.Cleanup(client.Close)
	b := rediscachetest.Store(t, client, rediscache.Options{Timeout: 5 * time.Second})

	key := testenv.RandomPrefix() + "k"
	set(t, a, key, "v1")
	if got := string(cachetest.Get(t, b, key).Value); got != "v1" {
		t.Fatalf("b reads %q, want v1", got)
	}
	cachetest.Get(t, b, key) // now from b's near cache
	slow.Store(true)
	set(t, a, key, "v2")
	if got := string(cachetest.Get(t, b, key).Value); got != "v1" {
		t.Fatalf("without a barrier, b read %q while its invalidation was late; want the stale v1 (the test cannot show the barrier matters)", got)
	}
	if err := b.Barrier(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := string(cachetest.Get(t, b, key).Value); got != "v2" {
		t.Errorf("after Barrier, b reads %q, want v2", got)
	}
}

// TestBarrierSharesRoundTrips: 200 concurrent callers share a few rounds:
// Redis sees a few PINGs, not 200.
func TestBarrierSharesRoundTrips(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t)
	s := newInstance(t, srv.Addr(), rediscache.Options{BarrierInterval: 5 * time.Millisecond, LivenessInterval: time.Hour}, rediscache.ClientConfig{})
	pings := func() int64 {
		info, err := s.client.Do(context.Background(), s.client.B().Info().Section("commandstats").Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "cmdstat_ping:calls="); ok {
				n, _ := strconv.ParseInt(v[:strings.IndexByte(v, ',')], 10, 64)
				return n
			}
		}
		return 0
	}
	before := pings()
	done := make(chan error)
	const callers = 200
	for range callers {
		go func() { done <- s.store.Barrier(context.Background()) }()
	}
	for range callers {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n := pings() - before; n > 10 {
		t.Errorf("200 concurrent barriers sent %d PINGs, want a few shared rounds", n)
	} else {
		t.Logf("200 concurrent barriers sent %d PINGs", n)
	}
}
