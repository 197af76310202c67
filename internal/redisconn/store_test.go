package redisconn

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/journalsvc/journal/cache"
	"github.com/journalsvc/journal/cache/rediscache"
	"github.com/journalsvc/journal/internal/testenv"
	"github.com/journalsvc/journal/ratelimit/redislimit"
)

// TestDeleteWithBudgetSpent: the invalidation after a committed write runs
// even when the request spent its Redis budget before it (slow limiter
// decisions on a saturated machine). Refused, the write would return while
// every other instance still serves the old value from Redis until a
// replayer applies it: a stale read after the write returned.
func TestDeleteWithBudgetSpent(t *testing.T) {
	t.Parallel()
	u, err := ParseURL("redis://" + testenv.RedisAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	prefix := testenv.RandomPrefix()
	c := Start(Options{URL: u, Limiter: redislimit.Options{Prefix: prefix}, Cache: rediscache.Options{Timeout: time.Second}})
	defer c.Close()
	st := c.CacheStore()
	key := prefix + "e:{u:1}:i:1"
	bg := context.Background()
	if err := st.Set(bg, key, cache.Entry{Status: cache.Hit, Value: []byte("old")}, time.Minute); err != nil {
		t.Fatal(err)
	}

	var ctx context.Context
	WithBudget(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { ctx = r.Context() }), time.Millisecond).
		ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("PATCH", "/", nil))
	cctx, ch, _ := call(ctx)
	<-cctx.Done() // the request's earlier calls took the whole budget
	ch.done()
	if !Spent(ctx) {
		t.Fatal("budget not spent")
	}

	if err := st.Delete(ctx, key); err != nil {
		t.Fatalf("Delete with the request's budget spent: %v", err)
	}
	if e, err := st.Get(bg, key); err != nil || e.Status != cache.Miss {
		t.Errorf("after the Delete the key holds %+v (%v), want a miss", e, err)
	}
}
