package rediscache

import (
	"context"
	"sync"
	"time"
)

// Barrier returns once every invalidation that Redis sent this instance
// before Barrier was called has been applied to the near cache, so that a
// read after it serves no copy older than a write that returned before the
// call. It is a PING on the connection of every node (the one that also
// carries the node's near-cache reads and invalidations): Redis sends the
// invalidations of a write to a connection before any reply it sends that
// connection later, and the client applies them in order.
//
// Concurrent callers share round trips: a caller joins the next round, which
// starts when the previous one ended and at least Options.BarrierInterval
// after the previous one started; so an instance sends at most one round per
// interval however many requests it serves, and a caller waits at most about
// an interval and two round trips. It returns ctx's error if ctx ends first,
// or the round's error (a node did not answer within Options.Timeout): then
// the near cache must not be trusted for the read.
func (s *Store) Barrier(ctx context.Context) error {
	return s.bar.wait(ctx, s)
}

// barrier coalesces the rounds of Barrier.
type barrier struct {
	mu      sync.Mutex
	next    *round // the round new callers join; nil when none is pending
	running bool   // a goroutine is sending rounds
}

type round struct {
	done chan struct{}
	err  error
}

func (b *barrier) wait(ctx context.Context, s *Store) error {
	b.mu.Lock()
	if b.next == nil {
		b.next = &round{done: make(chan struct{})}
	}
	r := b.next
	if !b.running {
		b.running = true
		go b.run(s)
	}
	b.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run sends the pending rounds, one at a time and at most one per
// BarrierInterval, until none is pending.
func (b *barrier) run(s *Store) {
	var last time.Time
	for {
		if d := time.Until(last.Add(s.opts.BarrierInterval)); d > 0 {
			time.Sleep(d)
		}
		b.mu.Lock()
		r := b.next
		b.next = nil
		if r == nil {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		last = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
		r.err = s.pingNodes(ctx)
		cancel()
		close(r.done)
	}
}
