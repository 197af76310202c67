package main

import (
	"context"
	"time"
)

// pacer schedules sends by the clock (open loop): send k is due at
// start + k/rate, whatever happened to the previous ones, so a slow server
// does not slow the offered load down (no coordinated omission). A send that
// is due while every worker is busy is not queued but counted as missed.
type pacer struct {
	Rate  float64 // sends per second, > 0
	Start time.Time
	End   time.Time
	// Now and Sleep are the clock; time.Now and a context-aware sleep when
	// nil.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration)
}

// due returns when send k is due.
func (p *pacer) due(k int) time.Time {
	return p.Start.Add(time.Duration(float64(k) / p.Rate * float64(time.Second)))
}

// Run offers one job per due time to work until End or ctx is done: offer
// returns false when no worker took the job. It returns the number of sends
// taken and missed.
func (p *pacer) Run(ctx context.Context, offer func(k int) bool) (sent, missed int) {
	now, sleep := p.Now, p.Sleep
	if now == nil {
		now = time.Now
	}
	if sleep == nil {
		sleep = func(ctx context.Context, d time.Duration) {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-ctx.Done():
			case <-t.C:
			}
		}
	}
	for k := 0; ctx.Err() == nil; k++ {
		at := p.due(k)
		if !at.Before(p.End) {
			break
		}
		if d := at.Sub(now()); d > 0 {
			sleep(ctx, d)
			if ctx.Err() != nil {
				break
			}
		}
		if offer(k) {
			sent++
		} else {
			missed++
		}
	}
	return sent, missed
}
