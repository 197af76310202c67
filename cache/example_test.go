package cache_test

import (
	"context"
	"fmt"
	"time"

	"github.com/journalsvc/journal/cache"
	"github.com/journalsvc/journal/cache/memorycache"
)

// Example shows the four states of Get and read-through with GetOrLoad.
func Example() {
	store, err := memorycache.New(memorycache.Options{})
	if err != nil {
		panic(err)
	}
	c, err := cache.New(store, cache.Options{})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	r, _ := c.Get(ctx, "entry:1")
	fmt.Println(r.Status)

	_ = c.Set(ctx, "entry:1", []byte(`{"title":"hi"}`), time.Minute)
	r, _ = c.Get(ctx, "entry:1")
	fmt.Println(r.Status, string(r.Value))

	_ = c.SetNegative(ctx, "entry:2", 10*time.Second)
	r, _ = c.Get(ctx, "entry:2")
	fmt.Println(r.Status)

	_ = c.Delete(ctx, "entry:1")
	v, err := c.GetOrLoad(ctx, "entry:1", time.Minute, func(ctx context.Context) ([]byte, error) {
		return []byte(`{"title":"from the database"}`), nil
	})
	fmt.Println(string(v), err)
	// Output:
	// miss
	// hit {"title":"hi"}
	// negative
	// {"title":"from the database"} <nil>
}
