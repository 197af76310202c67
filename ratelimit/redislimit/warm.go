package redislimit

import (
	"context"
	"fmt"
	"sync/atomic"
)

// warmState records that Warm succeeded.
type warmState struct{ done atomic.Bool }

// Warm prepares the limiter for its first decisions: it loads the decision
// script into Redis (every node of a Cluster), dials the connections the
// decisions use, and sends a heartbeat, so that a new instance's first
// decisions wait neither for a dial nor for a script load, and
// LiveInstances already counts the other instances. It returns the first
// error (wrapped); a readiness check calls it until it succeeds, after which
// it returns nil at once. It is safe to call concurrently with decisions.
func (l *Limiter) Warm(ctx context.Context) error {
	if l.warm.done.Load() {
		return nil
	}
	if err := l.batch.warm(ctx); err != nil {
		return fmt.Errorf("redislimit: warm up: %w", err)
	}
	if l.opts.HeartbeatInterval > 0 {
		if err := l.live.refresh(ctx); err != nil {
			return fmt.Errorf("redislimit: warm up: heartbeat: %w", err)
		}
	}
	l.warm.done.Store(true)
	return nil
}

// Warmed reports whether [Limiter.Warm] has succeeded.
func (l *Limiter) Warmed() bool { return l.warm.done.Load() }

// warm loads the script and, on standalone Redis, dials the flights'
// dedicated connections (as many as may fly at once) into the idle pool.
func (b *batcher) warm(ctx context.Context) error {
	l := b.l
	if b.cluster {
		for addr, node := range l.client.Nodes() {
			if err := b.load(node.Do(ctx, node.B().ScriptLoad().Script(decideSrc).Build()).ToString); err != nil {
				return fmt.Errorf("%s: %w", addr, err)
			}
		}
		return nil
	}
	b.mu.Lock()
	need := maxFlights - len(b.idle) - b.flights
	b.mu.Unlock()
	for range need {
		c, release := l.client.Dedicate()
		if err := b.load(c.Do(ctx, c.B().ScriptLoad().Script(decideSrc).Build()).ToString); err != nil {
			release()
			return err
		}
		b.mu.Lock()
		if b.closed || len(b.idle) >= maxFlights {
			b.mu.Unlock()
			release()
			break
		}
		b.idle = append(b.idle, dedicated{c: c, release: release})
		b.mu.Unlock()
	}
	return nil
}

// load checks the reply of a SCRIPT LOAD.
func (b *batcher) load(reply func() (string, error)) error {
	sha, err := reply()
	if err != nil {
		return err
	}
	if sha != b.sha {
		return fmt.Errorf("SCRIPT LOAD returned %s, want %s", sha, b.sha)
	}
	return nil
}
