package testenv

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"testing"
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
	accepted := make(chan net.Conn)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range accepted {
			held = append(held, c) // never read, never answered
		}
		for _, c := range held {
			c.Close()
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
