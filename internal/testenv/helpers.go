package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"
)

// RandomName returns prefix followed by 12 random hex digits: a name (of a
// database, a schema, a hash tag) that no other test uses.
func RandomName(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
	return prefix + hex.EncodeToString(b[:])
}

// RandomPrefix returns a key prefix that no other test uses, "test:<12 hex
// digits>:", for tests that share a Redis server.
func RandomPrefix() string { return RandomName("test:") + ":" }

// Poll calls cond every interval until it returns true or limit has passed.
// It returns how long it polled and whether cond returned true; a cond true at
// the first call takes no time.
func Poll(limit, interval time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > limit {
			return time.Since(start), false
		}
		time.Sleep(interval)
	}
}

// WaitFor calls cond every 5 milliseconds until it returns true and returns
// how long that took. It fails the test, naming what it waited for, if cond
// is still false after limit. cond may call tb.Fatal.
func WaitFor(tb testing.TB, limit time.Duration, what string, cond func() bool) time.Duration {
	tb.Helper()
	took, ok := Poll(limit, 5*time.Millisecond, cond)
	if !ok {
		tb.Fatalf("%s: not within %v", what, limit)
	}
	return took
}

// StaleReads tallies the reads on one instance of what another instance has
// just written: how many were stale when first made, and the longest one
// stayed stale.
type StaleReads struct {
	Count  int
	MaxLag time.Duration
}

// Check calls fresh, which reports whether a read sees the latest write. If
// it does not, Check counts a stale read and calls fresh every interval until
// it does, failing the test with the message of format and args if it still
// does not after limit. fresh may call tb.Fatal.
func (s *StaleReads) Check(tb testing.TB, limit, interval time.Duration, fresh func() bool, format string, args ...any) {
	tb.Helper()
	if fresh() {
		return
	}
	s.Count++
	lag, ok := Poll(limit, interval, fresh)
	if !ok {
		tb.Fatalf("%s: still stale %v after the write", fmt.Sprintf(format, args...), limit)
	}
	s.MaxLag = max(s.MaxLag, lag)
}
