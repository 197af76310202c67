package memorycache_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/journalsvc/journal/cache"
	"github.com/journalsvc/journal/cache/memorycache"
)

func Example() {
	store, err := memorycache.New(memorycache.Options{MaxBytes: 32 << 20})
	if err != nil {
		panic(err)
	}
	c, err := cache.New(store, cache.Options{})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	load := func(ctx context.Context) ([]byte, error) {
		fmt.Println("loading")
		return []byte("hello"), nil
	}
	for range 2 {
		v, err := c.GetOrLoad(ctx, "greeting", time.Minute, load)
		fmt.Println(string(v), err)
	}

	missing := func(ctx context.Context) ([]byte, error) { return nil, cache.ErrNotFound }
	_, err = c.GetOrLoad(ctx, "nobody", time.Minute, missing)
	fmt.Println(errors.Is(err, cache.ErrNotFound))

	r, _ := c.Get(ctx, "nobody")
	fmt.Println(r.Status)
	// Output:
	// loading
	// hello <nil>
	// hello <nil>
	// true
	// negative
}
