package redislimit_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/journalsvc/journal/internal/testenv"
	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/ratelimittest"
	"github.com/journalsvc/journal/ratelimit/redislimit"
)

// TestCluster runs multi-policy decisions on a 3-master Redis Cluster: the
// keys of one decision share the subject's hash tag, so the script never
// meets CROSSSLOT, and subjects spread over every master. The limit stays
// exact across two instances.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node Redis Cluster")
	}
	cl := testenv.RedisCluster(t)
	newLim := func() *redislimit.Limiter {
		c, err := rueidis.NewClient(rueidis.ClientOption{
			InitAddress: cl.Addrs(), DisableRetry: true, DisableCache: true,
			ConnWriteTimeout: 500 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return newLimiter(t, c, redislimit.Options{Timeout: time.Second, HeartbeatInterval: -1})
	}
	a, b := newLim(), newLim()
	ip := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 20, Per: time.Hour}}
	hour := ratelimit.Policy{Name: "ip-hour", Rate: ratelimit.Rate{N: 1000, Per: time.Hour}, Algorithm: ratelimit.Sliding}
	day := ratelimit.Policy{Name: "ip-day", Rate: ratelimit.Rate{N: 1000, Per: 24 * time.Hour}, Algorithm: ratelimit.Fixed}
	masters := map[string]bool{}
	for s := 0; s < 12; s++ {
		subject := "ip:192.0.2." + strconv.Itoa(s)
		masters[cl.MasterFor(t, ratelimit.Key("journal:", subject, "ip")).Addr()] = true
		var ok atomic.Int64
		var wg sync.WaitGroup
		for i := 0; i < 60; i++ {
			wg.Add(1)
			go func(l *redislimit.Limiter) {
				defer wg.Done()
				d, err := ratelimittest.Call(l.Decide, context.Background(), subject,
					ratelimit.Item{Policy: ip}, ratelimit.Item{Policy: hour}, ratelimit.Item{Policy: day})
				if err != nil || d.Degraded() {
					t.Errorf("Decide on the cluster: %+v, %v", d, err)
					return
				}
				if d.Allowed {
					ok.Add(1)
				}
			}([]*redislimit.Limiter{a, b}[i%2])
		}
		wg.Wait()
		if got := ok.Load(); got != 20 {
			t.Errorf("subject %s: admitted %d of 60, want 20", subject, got)
		}
	}
	if len(masters) < 2 {
		t.Errorf("12 subjects landed on %d masters; the test should cover several", len(masters))
	}
}
