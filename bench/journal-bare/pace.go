package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// headerFlags collects repeated -H "Name: value" flags.
type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

// paceResult is what a paced run measured.
type paceResult struct {
	Sent, Failed  int
	Elapsed       time.Duration
	P50, P99, Max time.Duration
}

// runPace is `journal-bare pace`: an open-loop client (wrk cannot pace, and
// Debian has no wrk2). It sends GET -url at -rate requests per second for
// -duration over -c keep-alive connections and prints the latency
// percentiles. Latency runs from each request's scheduled start, not from
// when a connection was free, so a server that falls behind is charged for
// the queueing it causes (no coordinated omission, as wrk2).
func runPace(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("journal-bare pace", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "", "URL to GET (required)")
	rate := fs.Float64("rate", 1000, "requests per second")
	duration := fs.Duration("duration", 10*time.Second, "how long to send")
	conns := fs.Int("c", 64, "connections (concurrent requests at most)")
	var headers headerFlags
	fs.Var(&headers, "H", `request header "Name: value" (repeatable)`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" || *rate <= 0 || *duration <= 0 || *conns <= 0 {
		return errors.New("pace: -url, a positive -rate, -duration and -c are required")
	}
	req, err := http.NewRequestWithContext(ctx, "GET", *url, nil)
	if err != nil {
		return err
	}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return fmt.Errorf("pace: -H %q: want \"Name: value\"", h)
		}
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	r := pace(ctx, req, *rate, *duration, *conns)
	fmt.Fprintf(stdout, "paced %.0f/s for %s: sent %d (%.0f/s achieved), failed %d, p50 %.3fms p99 %.3fms max %.3fms\n",
		*rate, *duration, r.Sent, float64(r.Sent)/r.Elapsed.Seconds(), r.Failed,
		ms(r.P50), ms(r.P99), ms(r.Max))
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// pace sends req at rate per second for d over conns connections.
func pace(ctx context.Context, req *http.Request, rate float64, d time.Duration, conns int) paceResult {
	hc := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns},
	}
	defer hc.CloseIdleConnections()
	n := int(rate * d.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	// Every scheduled start time is queued at once: a worker takes the next
	// and sleeps until it is due, so starts keep the schedule while workers
	// are free, and a late start counts from its scheduled time.
	due := make(chan time.Time, n)
	start := time.Now()
	for i := range n {
		due <- start.Add(time.Duration(i) * interval)
	}
	close(due)
	var (
		mu     sync.Mutex
		lat    = make([]time.Duration, 0, n)
		failed int
		wg     sync.WaitGroup
	)
	for range conns {
		wg.Go(func() {
			mine := make([]time.Duration, 0, n/conns+1)
			bad := 0
			for at := range due {
				if wait := time.Until(at); wait > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(wait):
					}
				}
				resp, err := hc.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					bad++
				}
				mine = append(mine, time.Since(at))
			}
			mu.Lock()
			lat = append(lat, mine...)
			failed += bad
			mu.Unlock()
		})
	}
	wg.Wait()
	r := paceResult{Sent: len(lat), Failed: failed, Elapsed: time.Since(start)}
	if len(lat) == 0 {
		return r
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	r.P50, r.P99, r.Max = q(0.50), q(0.99), lat[len(lat)-1]
	return r
}
