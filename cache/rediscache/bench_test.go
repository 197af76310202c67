package rediscache_test

import (
	"context"
	"testing"
	"time"

	"github.com/journalsvc/journal/cache"
	"github.com/journalsvc/journal/cache/cachetest"
	"github.com/journalsvc/journal/cache/memorycache"
	"github.com/journalsvc/journal/cache/rediscache"
	"github.com/journalsvc/journal/cache/rediscache/rediscachetest"
	"github.com/journalsvc/journal/internal/testenv"
)

// BenchmarkGetHit reads one 256-byte value that is cached: from the near
// cache, from Redis (client-side caching disabled), and from memorycache.
//
//	go test -run '^$' -bench GetHit -benchtime 2s ./cache/rediscache/
func BenchmarkGetHit(b *testing.B) {
	value := make([]byte, 256)
	run := func(b *testing.B, s cache.Store, wantTier string) {
		c, err := cache.New(s, cache.Options{})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		k := cachetest.Key(b, "bench")
		if err := c.Set(ctx, k, value, time.Hour); err != nil {
			b.Fatal(err)
		}
		if e := cachetest.Get(b, s, k); e.Status != cache.Hit {
			b.Fatalf("warm-up Get = %v", e.Status)
		}
		if e := cachetest.Get(b, s, k); e.Tier != wantTier {
			b.Fatalf("Get served by %q, want %q", e.Tier, wantTier)
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r, err := c.Get(ctx, k)
				if err != nil || r.Status != cache.Hit {
					b.Errorf("Get = %v, %v", r.Status, err)
					return
				}
			}
		})
	}
	addr := testenv.RedisAddr(b)
	b.Run("near", func(b *testing.B) {
		run(b, newInstance(b, addr, rediscache.Options{}, rediscache.ClientConfig{}).store, "near")
	})
	b.Run("redis", func(b *testing.B) {
		opt := rediscache.ClientOptions([]string{addr}, rediscache.ClientConfig{})
		opt.DisableCache = true
		client, _, err := rediscache.NewClient(opt)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(client.Close)
		run(b, rediscachetest.Store(b, client, rediscache.Options{}), "redis")
	})
	b.Run("memory", func(b *testing.B) {
		s, err := memorycache.New(memorycache.Options{})
		if err != nil {
			b.Fatal(err)
		}
		run(b, s, "memory")
	})
}
