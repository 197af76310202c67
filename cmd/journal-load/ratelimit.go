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

// policyMember is one member of a RateLimit-Policy header (draft-10):
// "ip";q=100;w=60.
type policyMember struct {
	Name string
	Q, W int
}

// parsePolicies parses every RateLimit-Policy header line; malformed members
// are skipped.
func parsePolicies(lines []string) []policyMember {
	var out []policyMember
	for _, line := range lines {
		for _, m := range strings.Split(line, ",") {
			parts := strings.Split(strings.TrimSpace(m), ";")
			name := strings.TrimSpace(parts[0])
			if len(name) < 2 || name[0] != '"' || name[len(name)-1] != '"' {
				continue
			}
			pm := policyMember{Name: name[1 : len(name)-1]}
			for _, p := range parts[1:] {
				k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
				if !ok {
					continue
				}
				n, err := strconv.Atoi(v)
				if err != nil {
					continue
				}
				switch k {
				case "q":
					pm.Q = n
				case "w":
					pm.W = n
				}
			}
			out = append(out, pm)
		}
	}
	return out
}

// validRetryAfter reports whether h is delta-seconds of at least 1 (the
// service's promise, DESIGN.md 3.3).
func validRetryAfter(h string) bool {
	n, err := strconv.Atoi(strings.TrimSpace(h))
	return err == nil && n >= 1
}

// runRatelimit floods GET /v1/entries as one client with -concurrency
// workers until -requests or -duration, and checks that the limiter admits
// exactly the announced limit minus what the setup used.
func runRatelimit(ctx context.Context, cfg config, a *api, rec *recorder, prog *progress) (*rlSummary, error) {
	clients := newClientPool(cfg.FakeClients)
	setupClient, floodClient := clients.New(), clients.New()
	out := &rlSummary{Policy: cfg.Policy, AdmittedByInstance: map[string]int{}, DeniedByInstance: map[string]int{}}

	// A token, so the flood is answered 200 by the handler, not 401. With
	// simulated clients the setup comes from another address and leaves the
	// flood's quota whole; without, its two requests count.
	u, err := newUser(ctx, a, cfg.Target, setupClient)
	if err != nil {
		return out, err
	}
	if floodClient == "" {
		out.Preconsumed = 2
	}

	rec.Begin(time.Now())
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	floodStart := time.Now()
	defer func() {
		// GCRA and sliding windows give back q per w: a flood longer than
		// one emission interval may rightly see a few more admitted.
		if out.Limit > 0 && out.WindowS > 0 {
			out.RefillAllowance = int(time.Since(floodStart).Seconds() * float64(out.Limit) / float64(out.WindowS))
		}
	}()
	var (
		mu       sync.Mutex
		issued   atomic.Int64
		wg       sync.WaitGroup
		admitted atomic.Int64
	)
	for w := 0; w < cfg.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if cfg.Requests > 0 && issued.Add(1) > int64(cfg.Requests) {
					return
				}
				r := a.Do(ctx, call{Base: cfg.Target, Method: http.MethodGet, Path: "/v1/entries?limit=1",
					Token: u.Token, Client: floodClient})
				if r.Err != nil && ctx.Err() != nil {
					return // cut off by the end of the run: not an answer
				}
				denied := r.Status == http.StatusTooManyRequests
				ok := r.Err == nil && !denied && r.Status < 500
				rec.Record(r.result(r.Err != nil || r.Status >= 500), ok)
				mu.Lock()
				if out.Limit == 0 && r.Err == nil {
					for _, pm := range parsePolicies(r.Header.Values("RateLimit-Policy")) {
						if pm.Name == cfg.Policy {
							out.Limit, out.WindowS = pm.Q, pm.W
							out.PolicyHeader = strings.Join(r.Header.Values("RateLimit-Policy"), ", ")
						}
					}
				}
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
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	out.Expected = out.Limit - out.Preconsumed
	out.Exact = out.Limit > 0 && out.Admitted == out.Expected
	if out.Limit > 0 && out.Admitted+out.Denied < out.Expected {
		return out, fmt.Errorf("the flood sent %d requests, fewer than the %d the limit admits: raise -requests or -duration",
			out.Admitted+out.Denied, out.Expected)
	}
	return out, nil
}
