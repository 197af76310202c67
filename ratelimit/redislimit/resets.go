package redislimit

import (
	"time"

	"github.com/redis/rueidis"
)

// subscribeResets listens to the two channels on which instances tell each
// other that a subject's state moved back: Reset publishes the subject on the
// reset channel (every instance forgets its cached denials and leases of the
// subject), and a lease's give-back on the give-back channel (every instance
// forgets its cached denials of the subject, which the units given back may
// no longer deny).
func (l *Limiter) subscribeResets() {
	defer l.wg.Done()
	for l.ctx.Err() == nil {
		err := l.client.Receive(l.ctx, l.client.B().Subscribe().Channel(l.resetCh, l.givebackCh).Build(), func(m rueidis.PubSubMessage) {
			if l.deny != nil {
				l.deny.clear(m.Message)
			}
			if l.leases != nil && m.Channel == l.resetCh {
				l.leases.drop(m.Message)
			}
		})
		if l.ctx.Err() != nil {
			return
		}
		l.log.Debug("redislimit: reset subscription ended; resubscribing", "err", err)
		select {
		case <-l.ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}
