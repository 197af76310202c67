package rediscache_test

import (
	"context"
	"fmt"
	"time"

	"github.com/journalsvc/journal/cache"
	"github.com/journalsvc/journal/cache/rediscache"
)

// Example builds a Store with a near cache kept coherent by Redis. It needs a
// Redis server, so it is compiled but not run by go test.
func Example() {
	client, nearCache, err := rediscache.NewClient(rediscache.ClientOptions([]string{"127.0.0.1:6379"}, rediscache.ClientConfig{}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	if !nearCache {
		fmt.Println("server refuses CLIENT TRACKING: no near cache")
	}
	store, err := rediscache.New(client, rediscache.Options{NearMaxAge: 30 * time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
	c, _ := cache.New(store, cache.Options{})
	v, err := c.GetOrLoad(context.Background(), "app:{user:42}:profile", time.Minute, func(context.Context) ([]byte, error) {
		return []byte("loaded once, then served from this instance's memory"), nil
	})
	fmt.Println(string(v), err)
}
