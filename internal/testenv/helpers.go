package testenv

import (
	"crypto/rand"
	"encoding/hex"
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
