// Package tick runs the loop of a background goroutine that acts on a timer:
// the limiter's sweeper and probes, the cache's liveness check, the Redis
// reconnect loop and the load tool's progress line share it, so that each
// stops the same way and none leaks its ticker.
package tick

import "time"

// Every calls fn every interval, the first time one interval from now, until
// done is closed or fn returns false, and then returns. A call of fn that is
// running when done closes finishes first; no call starts after Every sees
// done closed. The caller's goroutine owns its own clean-up (closing a done
// channel of its own, WaitGroup.Done) after Every returns.
func Every(done <-chan struct{}, interval time.Duration, fn func() bool) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		select {
		case <-done:
			return
		default:
		}
		if !fn() {
			return
		}
	}
}
