package redislimit

import (
	"time"

	"github.com/redis/rueidis"
)

// subscribeResets clears the deny cache for subjects reset by any instance
// (Reset publishes the subject on the reset channel).
func (l *Limiter) subscribeResets() {
	defer l.wg.Done()
	for l.ctx.Err() == nil {
		err := l.client.Receive(l.ctx, l.client.B().Subscribe().Channel(l.resetCh).Build(), func(m rueidis.PubSubMessage) {
			if l.deny != nil {
				l.deny.clear(m.Message)
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
