package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// validRetryAfter reports whether h is delta-seconds of at least 1, as the
// service promises on every 429.
func validRetryAfter(h string) bool {
	n, err := strconv.Atoi(strings.TrimSpace(h))
	return err == nil && n >= 1
}

// runRatelimit floods GET /v1/entries as one client with -concurrency
// workers until -requests or -duration, and checks that the limiter admits
// exactly what the policy had left for that client when the flood began
// (plus what it gave back during the flood).
func runRatelimit(ctx context.Context, cfg config, a *api, rec *recorder, prog *progress) (*rlSummary, error) {
	clients := newClientPool(cfg.FakeClients)
	setupClient, floodClient := clients.New(), clients.New()
	out := &rlSummary{Policy: cfg.Policy, AdmittedByInstance: map[string]int{}, DeniedByInstance: map[string]int{}}

	// A token, so the flood is answered 200 by the handler, not 401.
	u, err := newUser(ctx, a, cfg.Target, setupClient)
	if err != nil {
		return out, err
	}

	prog.Begin(time.Now())
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var (
		mu       sync.Mutex
		issued   atomic.Int64
		admitted atomic.Int64
	)
	// send sends one request of the flood and counts it; false when the
	// flood is over.
	send := func() (response, bool) {
		if cfg.Requests > 0 && issued.Add(1) > int64(cfg.Requests) {
			return response{}, false
		}
		r := a.Do(ctx, call{Base: cfg.Target, Method: http.MethodGet, Path: "/v1/entries?limit=1",
			Token: u.Token, Client: floodClient})
		if r.Err != nil && ctx.Err() != nil {
			return r, false // cut off by the end of the run: not an answer
		}
		denied := r.Status == http.StatusTooManyRequests
		ok := r.Err == nil && !denied && r.Status < 500
		rec.Record(r.result(r.Err != nil || r.Status >= 500), ok)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case ok:
			out.Admitted++
			out.AdmittedByInstance[r.Instance]++
			admitted.Add(1)
		case denied:
			out.Denied++
			out.DeniedByInstance[r.Instance]++
			if !validRetryAfter(r.Header.Get("Retry-After")) {
				out.RetryAfterMissing++
			}
		}
		prog.Set("admitted %d", admitted.Load())
		return r, true
	}

	// The first request goes alone: what it says is left of the policy,
	// plus itself when admitted, is what the flood should get. A simulated
	// flood client starts with the whole quota; without one, the set-up and
	// whatever else came from this address already used some.
	first, more := send()
	if q, found := findQuota(first.Header, cfg.Policy); found && q.R >= 0 && q.Q > 0 {
		out.Limit, out.WindowS = q.Q, q.W
		out.PolicyHeader = strings.Join(first.Header.Values("RateLimit-Policy"), ", ")
		out.Expected = q.R
		if first.Status != http.StatusTooManyRequests && first.Status < 500 {
			out.Expected++
		}
		out.Preconsumed = q.Q - out.Expected
	}
	var wg sync.WaitGroup
	for w := 0; w < cfg.Concurrency && more; w++ {
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, more := send(); !more {
					return
				}
			}
		})
	}
	wg.Wait()
	if out.Limit > 0 && out.WindowS > 0 {
		// GCRA and sliding windows give back q per w during the flood; an
		// address that had used some of its quota may also hold a part of
		// one request already given back.
		out.RefillAllowance = int(time.Since(first.At).Seconds() * float64(out.Limit) / float64(out.WindowS))
		if out.Preconsumed > 0 {
			out.RefillAllowance++
		}
	}
	out.Exact = out.Limit > 0 && out.Admitted >= out.Expected && out.Admitted <= out.Expected+out.RefillAllowance
	if out.Limit > 0 && out.Admitted+out.Denied < out.Expected {
		return out, fmt.Errorf("the flood sent %d requests, fewer than the %d the limit admits: raise -requests or -duration",
			out.Admitted+out.Denied, out.Expected)
	}
	return out, nil
}
