package redisconn_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/journalsvc/journal/internal/redisconn"
	"github.com/journalsvc/journal/internal/testenv"
	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/memorylimit"
	"github.com/journalsvc/journal/ratelimit/ratelimittest"
	"github.com/journalsvc/journal/ratelimit/redislimit"
)

// TestBudgetSpentIsSlow: a decision of a request whose Redis budget earlier
// calls spent fails as slow, not as Redis down: Redis is granting the
// subject's quota to other requests and instances meanwhile, so the
// service's fallback grants no share of it (a fresh subject gets at most a
// unit, a known one nothing new).
func TestBudgetSpentIsSlow(t *testing.T) {
	u, err := redisconn.ParseURL("redis://" + testenv.RedisAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	c := redisconn.Start(redisconn.Options{URL: u, Limiter: redislimit.Options{Prefix: testenv.RandomPrefix(), HeartbeatInterval: -1}})
	defer c.Close()
	local := memorylimit.New(memorylimit.Options{})
	defer local.Close()
	f, err := ratelimit.NewFallback(c.Limiter(), local, ratelimit.FallbackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := ratelimit.Policy{Name: "user", Rate: ratelimit.Rate{N: 60, Per: time.Hour}, Fail: ratelimit.FailLocal}
	// request runs fn with the context of a request whose budget is
	// budget.
	request := func(budget time.Duration, fn func(ctx context.Context)) {
		redisconn.WithBudget(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { fn(r.Context()) }), budget).
			ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}
	request(time.Second, func(ctx context.Context) {
		if d, err := ratelimittest.Call(f.Decide, ctx, "user:known", ratelimit.Item{Policy: p}); err != nil || !d.Allowed || d.Degraded() {
			t.Fatalf("decision within the budget: %+v, %v", d, err)
		}
	})
	for _, subject := range []string{"user:known", "user:fresh"} {
		admitted := 0
		for range 20 {
			request(time.Nanosecond, func(ctx context.Context) {
				// An earlier call of the request spends the budget.
				ratelimittest.Call(c.Limiter().Peek, ctx, "ip:192.0.2.1", ratelimit.Item{Policy: p})
				if !redisconn.Spent(ctx) {
					t.Fatal("the budget is not spent")
				}
				if _, err := ratelimittest.Call(c.Limiter().Decide, ctx, subject, ratelimit.Item{Policy: p}); !errors.Is(err, ratelimit.ErrSlow) {
					t.Errorf("Decide with the budget spent = %v, want an error wrapping ErrSlow", err)
				}
				d, err := ratelimittest.Call(f.Decide, ctx, subject, ratelimit.Item{Policy: p})
				if err != nil {
					t.Fatalf("fallback Decide: %v", err)
				}
				if d.Allowed {
					admitted++
				}
			})
		}
		if admitted > 1 {
			t.Errorf("%s: %d of 20 admitted with the budget spent, want at most 1 (Redis may be granting its quota elsewhere)", subject, admitted)
		}
	}
}
