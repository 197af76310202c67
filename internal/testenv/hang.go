package testenv

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// HangingDialer makes a rueidis client meet a hung server on its next
// reconnection, deterministically. Use its Dial as
// rueidis.ClientOption.DialCtxFn: it connects to the address asked for until
// Hang is called. Hang closes every connection made so far, so the client
// must reconnect, and makes every later dial connect to a listener that
// accepts and never answers: what a client sees redialling a paused
// (SIGSTOPped) Redis. rueidis makes every caller wait for a reconnection's
// dial, whose deadline is the first caller's: the fault tests use this to
// check that callers still return at their own deadline.
type HangingDialer struct {
	hole net.Listener

	mu    sync.Mutex
	hung  bool
	conns []net.Conn
}

// NewHangingDialer returns a HangingDialer whose listener stops with the test.
func NewHangingDialer(tb testing.TB) *HangingDialer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testenv: listen: %v", err)
	}
	h := &HangingDialer{hole: ln}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var held []net.Conn // never read, never answered
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		<-done
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, c := range h.conns {
			c.Close()
		}
	})
	return h
}

// Dial is a rueidis.ClientOption.DialCtxFn.
func (h *HangingDialer) Dial(ctx context.Context, dst string, d *net.Dialer, _ *tls.Config) (net.Conn, error) {
	h.mu.Lock()
	hung := h.hung
	h.mu.Unlock()
	if hung {
		dst = h.hole.Addr().String()
	}
	c, err := d.DialContext(ctx, "tcp", dst)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.conns = append(h.conns, c)
	return c, nil
}

// HangDuringRedial hangs h, then leaves c redialling the silent listener for
// a caller whose deadline is dial: the closed connection fails c's next
// caller, and the one after (in the background) redials. When it returns,
// every other caller of c waits for that dial, for up to dial, unless
// something bounds its wait by its own deadline.
func (h *HangingDialer) HangDuringRedial(c rueidis.Client, dial time.Duration) {
	h.Hang()
	_ = c.Do(context.Background(), c.B().Ping().Build()).Error()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), dial)
		defer cancel()
		_ = c.Do(ctx, c.B().Ping().Build()).Error()
	}()
	time.Sleep(50 * time.Millisecond) // the redial has started
}

// Hang closes the connections dialled so far and sends every later dial to
// the silent listener.
func (h *HangingDialer) Hang() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hung = true
	for _, c := range h.conns {
		c.Close()
	}
	h.conns = nil
}
