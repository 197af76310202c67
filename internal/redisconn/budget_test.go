package redisconn

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestRedisBudgetAccounting(t *testing.T) {
	t.Parallel()
	var ctx context.Context
	h := WithBudget(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { ctx = r.Context() }), 30*time.Millisecond)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))

	if Spent(ctx) {
		t.Fatal("fresh budget reported spent")
	}
	cctx, ch, ok := call(ctx)
	if !ok {
		t.Fatal("redisCall refused a fresh budget")
	}
	dl, has := cctx.Deadline()
	if !has || time.Until(dl) > 30*time.Millisecond {
		t.Errorf("call deadline %v from now, want at most the 30ms budget", time.Until(dl))
	}
	<-cctx.Done() // a call that waits out the whole budget
	ch.done()
	if !Spent(ctx) {
		t.Error("budget not spent after a call used all of it")
	}
	if _, _, ok := call(ctx); ok {
		t.Error("redisCall allowed a call with the budget spent")
	}
	// Outside a request there is no budget: calls are bounded by their own
	// timeouts only.
	if _, ch, ok := call(context.Background()); !ok || Spent(context.Background()) {
		t.Error("no budget outside a request should allow calls")
	} else {
		ch.done()
	}
}
