package rediscache

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// LagProbe measures the invalidation lag: the time from a write on one
// instance until another instance's near cache learns of it. Every instance
// runs a probe on the same key. Each probe keeps the key in its near cache
// (so Redis tracks it for this instance) and writes its own clock into it
// every interval; when Redis invalidates the key, the probe reads the new
// value and reports now minus the writer's clock. On one host that is the
// lag; across hosts it also contains their clock offset, so keep clocks in
// sync (NTP) and read it as an upper bound.
//
// Wire it with ClientConfig.OnInvalidatedKey calling Invalidated. Start it
// with NewLagProbe and stop it with Close.
type LagProbe struct {
	client   rueidis.Client
	key      string
	interval time.Duration
	timeout  time.Duration
	observe  func(time.Duration)
	notify   chan struct{}
	stop     chan struct{}
	done     sync.WaitGroup
	once     sync.Once
}

// NewLagProbe starts a probe on key, writing every interval (default 2s) and
// calling observe with each lag it measures (from its own goroutine).
func NewLagProbe(client rueidis.Client, key string, interval time.Duration, observe func(time.Duration)) *LagProbe {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	p := &LagProbe{
		client: client, key: key, interval: interval, timeout: 500 * time.Millisecond, observe: observe,
		notify: make(chan struct{}, 1), stop: make(chan struct{}),
	}
	p.done.Add(1)
	go p.run()
	return p
}

// Invalidated tells the probe that Redis invalidated key; other keys are
// ignored. It never blocks.
func (p *LagProbe) Invalidated(key string) {
	if key != p.key {
		return
	}
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// Close stops the probe and waits for it.
func (p *LagProbe) Close() {
	p.once.Do(func() { close(p.stop) })
	p.done.Wait()
}

func (p *LagProbe) run() {
	defer p.done.Done()
	t := time.NewTicker(p.interval)
	defer t.Stop()
	p.track()
	for {
		select {
		case <-p.stop:
			return
		case <-p.notify:
			if sent, ok := p.track(); ok {
				if lag := time.Since(time.UnixMicro(sent)); lag >= 0 && lag < 10*p.interval {
					p.observe(lag)
				}
			}
		case <-t.C:
			p.write()
		}
	}
}

// track reads the key through the near cache, which (re)registers it for
// invalidation, and returns the writer's clock it holds.
func (p *LagProbe) track() (sentMicros int64, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	s, err := p.client.DoCache(ctx, p.client.B().Get().Key(p.key).Cache(), 10*p.interval).ToString()
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil
}

// write stores this instance's clock in the key.
func (p *LagProbe) write() {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	now := strconv.FormatInt(time.Now().UnixMicro(), 10)
	_ = p.client.Do(ctx, p.client.B().Set().Key(p.key).Value(now).Px(10*p.interval).Build()).Error()
	p.track() // re-arm tracking even if no invalidation comes back
}
