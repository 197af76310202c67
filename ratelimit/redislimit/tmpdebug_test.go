package redislimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/journalsvc/journal/internal/testenv"
	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/ratelimittest"
	"github.com/journalsvc/journal/ratelimit/redislimit"
)

func TestTmpDebugSliding(t *testing.T) {
	addr := testenv.RedisAddr(t)
	l := newLimiter(t, newClient(t, addr), redislimit.Options{Prefix: testenv.RandomPrefix(), Lease: time.Second})
	p := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 100, Per: time.Minute}, Algorithm: ratelimit.Sliding, Lease: true}
	for i := range 130 {
		d, err := ratelimittest.Call(l.Decide, context.Background(), "ip:x", ratelimit.Item{Policy: p})
		st := l.Stats()
		t.Logf("%d: allowed=%v rem=%d reset=%v err=%v calls=%d leasehits=%d deny=%d", i, d.Allowed, d.Results[0].Remaining, d.Results[0].ResetAfter, err, st.RedisCalls, st.LeaseHits, st.DenyCacheHits)
	}
}
