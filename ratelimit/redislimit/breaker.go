package redislimit

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/journalsvc/journal/internal/tick"
)

// breaker is the limiter's circuit breaker. Script calls report their
// outcome (success, failure); after Options.BreakerFailures consecutive
// failures it opens, and a background probe (PING every ProbeInterval)
// closes it on the first answer. While it is open no decision touches Redis.
type breaker struct {
	l        *Limiter
	failures atomic.Int64
	open     atomic.Bool
	probing  atomic.Bool
	opens    atomic.Uint64
}

func (b *breaker) init(l *Limiter) { b.l = l }

func (b *breaker) isOpen() bool { return b.open.Load() }

// success records a script call that Redis answered.
func (b *breaker) success() {
	if b.failures.Load() != 0 {
		b.failures.Store(0)
	}
}

// failure records a script call that failed, opening the breaker after
// enough consecutive ones.
func (b *breaker) failure(err error) {
	l := b.l
	if b.failures.Add(1) < int64(l.opts.BreakerFailures) {
		return
	}
	if b.open.CompareAndSwap(false, true) {
		b.opens.Add(1)
		l.log.Warn("redislimit: circuit breaker open; decisions fail as unavailable until Redis answers", "err", err)
		if b.probing.CompareAndSwap(false, true) {
			l.wg.Add(1)
			go b.probe()
		}
	}
}

// probe pings Redis every ProbeInterval while the breaker is open and closes
// it on the first answer.
func (b *breaker) probe() {
	l := b.l
	defer l.wg.Done()
	defer b.probing.Store(false)
	tick.Every(l.ctx.Done(), l.opts.ProbeInterval, func() bool {
		ctx, cancel := context.WithTimeout(l.ctx, max(l.opts.Timeout, 100*time.Millisecond))
		err := l.client.Do(ctx, l.client.B().Ping().Build()).Error()
		cancel()
		if err != nil {
			return true
		}
		b.failures.Store(0)
		b.open.Store(false)
		l.log.Info("redislimit: circuit breaker closed; Redis answers again")
		return false
	})
}
