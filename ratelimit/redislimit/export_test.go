package redislimit

import (
	"time"

	"github.com/redis/rueidis"
)

// NewWithScriptNow is New with a limiter that sends now() to its script
// instead of letting the script read Redis TIME, and uses it as its local
// clock (deny cache, leases). Tests only: this is the hook through which the
// conformance suite's fake clock reaches Redis.
func NewWithScriptNow(client rueidis.Client, opts Options, now func() time.Time) (*Limiter, error) {
	return newLimiter(client, opts, now)
}

// GiveBackLapsed gives back, synchronously, what l's lapsed leases hold: what
// the background sweeper does every quarter of a lease duration.
func GiveBackLapsed(l *Limiter) {
	if l.leases != nil {
		l.leases.sending.Wait()
		l.leases.sendWait(l.leases.lapsed(l.localNow().UnixMicro()))
	}
}
