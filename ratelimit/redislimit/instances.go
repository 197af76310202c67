package redislimit

import (
	"context"
	_ "embed"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/journalsvc/journal/internal/tick"
)

//go:embed heartbeat.lua
var heartbeatSrc string

// instances keeps this instance's heartbeat in a Redis sorted set (which has
// a TTL of its own) and the count of live members: N_live, by which the
// fallback divides a policy while Redis is unavailable. The count survives an
// outage: it is what the instances were before it.
type instances struct {
	l     *Limiter
	beat  *rueidis.Lua
	key   string
	count atomic.Int64
}

func (in *instances) init(l *Limiter) {
	in.l = l
	in.beat = rueidis.NewLuaScript(heartbeatSrc)
	in.key = l.prefix + "rl:instances"
	in.count.Store(1)
}

// refresh sends one heartbeat and records the live count.
func (in *instances) refresh(ctx context.Context) error {
	l := in.l
	window := 3 * l.opts.HeartbeatInterval
	n, err := in.beat.Exec(ctx, l.client, []string{in.key},
		[]string{l.opts.InstanceID, strconv.FormatInt(window.Milliseconds(), 10)}).AsInt64()
	if err == nil {
		in.count.Store(max(n, 1))
	}
	return err
}

// heartbeats refreshes the heartbeat every HeartbeatInterval while the
// breaker is closed, until the limiter closes.
func (in *instances) heartbeats() {
	l := in.l
	defer l.wg.Done()
	beat := func() bool {
		if !l.brk.isOpen() {
			ctx, cancel := context.WithTimeout(l.ctx, max(l.opts.Timeout, 250*time.Millisecond))
			_ = in.refresh(ctx)
			cancel()
		}
		return true
	}
	beat()
	tick.Every(l.ctx.Done(), l.opts.HeartbeatInterval, beat)
}

// leave removes this instance from the live set (best effort).
func (in *instances) leave() {
	l := in.l
	ctx, cancel := context.WithTimeout(context.Background(), l.opts.Timeout)
	l.client.Do(ctx, l.client.B().Zrem().Key(in.key).Member(l.opts.InstanceID).Build())
	cancel()
}
