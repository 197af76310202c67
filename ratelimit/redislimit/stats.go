package redislimit

import (
	"sync/atomic"
	"time"
)

// LatencyBounds are the upper bounds of the buckets of Stats.CallLatency.
var LatencyBounds = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
}

// Stats is a snapshot of a Limiter's counters and state, the one way to
// observe it: a metrics collector reads it when scraped.
type Stats struct {
	RedisCalls     uint64 // script calls sent to Redis (a batch is one)
	RedisErrors    uint64 // of which failed, or had no reply within the flight timeout
	DenyCacheHits  uint64 // decisions answered by the deny cache
	LeaseHits      uint64 // decisions answered from leases, without a round trip
	GiveBacks      uint64 // lapsed leases whose unspent units went back to Redis
	Abandoned      uint64 // decisions whose caller stopped waiting before the reply
	Late           uint64 // decisions answered after their deadline because the process was starved
	Unavailable    uint64 // decisions that returned ErrUnavailable
	BreakerOpens   uint64 // times the breaker opened
	BreakerOpen    bool   // the breaker is open now
	LiveInstances  int64  // N_live as last seen in Redis (at least 1)
	DenyCacheItems int    // entries held by the deny cache
	// CallLatency counts script calls by duration: CallLatency[i] those
	// within LatencyBounds[i] (and above the bound before), the last one
	// those above every bound. CallLatencySum is their total duration.
	CallLatency    [len(LatencyBounds) + 1]uint64
	CallLatencySum time.Duration
}

// counters are the atomic counters behind Stats.
type counters struct {
	calls, errs, denyHits, abandoned, unavailable atomic.Uint64
	leaseLocal, givenBack, late                   atomic.Uint64
	latency                                       [len(LatencyBounds) + 1]atomic.Uint64
	latencySum                                    atomic.Int64
}

// call records one script call of duration d.
func (c *counters) call(d time.Duration, err error) {
	c.calls.Add(1)
	if err != nil {
		c.errs.Add(1)
	}
	i := 0
	for i < len(LatencyBounds) && d > LatencyBounds[i] {
		i++
	}
	c.latency[i].Add(1)
	c.latencySum.Add(int64(d))
}

// Stats returns the limiter's counters and state.
func (l *Limiter) Stats() Stats {
	s := Stats{
		RedisCalls:     l.stats.calls.Load(),
		RedisErrors:    l.stats.errs.Load(),
		DenyCacheHits:  l.stats.denyHits.Load(),
		LeaseHits:      l.stats.leaseLocal.Load(),
		GiveBacks:      l.stats.givenBack.Load(),
		Abandoned:      l.stats.abandoned.Load(),
		Late:           l.stats.late.Load(),
		Unavailable:    l.stats.unavailable.Load(),
		BreakerOpens:   l.brk.opens.Load(),
		BreakerOpen:    l.brk.isOpen(),
		LiveInstances:  l.live.count.Load(),
		CallLatencySum: time.Duration(l.stats.latencySum.Load()),
	}
	for i := range s.CallLatency {
		s.CallLatency[i] = l.stats.latency[i].Load()
	}
	if l.deny != nil {
		s.DenyCacheItems = l.deny.len()
	}
	return s
}
