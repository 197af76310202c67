// Package rediscachetest builds the Redis cache of one "service instance" for
// tests: a client with its own connections and a [rediscache.Store] over it,
// both closed when the test ends. The tests of rediscache and of the packages
// built on it (entrycache) share it, so every test instance is connected the
// way the service connects.
package rediscachetest

import (
	"testing"

	"github.com/redis/rueidis"

	"github.com/journalsvc/journal/cache/rediscache"
)

// Client returns a client connected to addrs (one server, or the seeds of a
// cluster) as the service connects: [rediscache.ClientOptions] with cfg, and
// ShuffleInit, so the instances of a test spread over a cluster's seeds. It
// fails the test unless the client caches on the client side, and closes the
// client at tb.Cleanup.
func Client(tb testing.TB, addrs []string, cfg rediscache.ClientConfig) rueidis.Client {
	tb.Helper()
	opt := rediscache.ClientOptions(addrs, cfg)
	opt.ShuffleInit = true
	client, near, err := rediscache.NewClient(opt)
	if err != nil {
		tb.Fatalf("NewClient(%v): %v", addrs, err)
	}
	if !near {
		tb.Fatalf("NewClient(%v): no client-side caching", addrs)
	}
	tb.Cleanup(client.Close)
	return client
}

// Store returns a Store over client with opts, closed at tb.Cleanup (before
// a client from [Client] of the same test is).
func Store(tb testing.TB, client rueidis.Client, opts rediscache.Options) *rediscache.Store {
	tb.Helper()
	s, err := rediscache.New(client, opts)
	if err != nil {
		tb.Fatalf("rediscache.New: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}
