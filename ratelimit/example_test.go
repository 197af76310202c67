package ratelimit_test

import (
	"context"
	"fmt"
	"time"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/memorylimit"
)

func ExampleParseRate() {
	r, err := ratelimit.ParseRate("100/1m")
	fmt.Println(r.N, r.Per, err)
	_, err = ratelimit.ParseRate("100/500ms")
	fmt.Println(err)
	// Output:
	// 100 1m0s <nil>
	// ratelimit: invalid rate "100/500ms": the period must be at least 1s
}

func ExampleKey() {
	fmt.Println(ratelimit.Key("journal:", "ip:203.0.113.7", "ip"))
	fmt.Println(ratelimit.Key("journal:", "user:{evil}", "user")) // braces would break the hash tag: hashed
	// Output:
	// journal:rl:{ip:203.0.113.7}:ip
	// journal:rl:{~88d7c482eb372bc90f1e0229d180677d}:user
}

// Allow with any backend; here the in-process one with a fixed clock.
func ExampleAllow() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := memorylimit.New(memorylimit.Options{Now: func() time.Time { return now }})
	defer l.Close()
	login := ratelimit.Policy{Name: "login", Rate: ratelimit.Rate{N: 10, Per: time.Minute}, Fail: ratelimit.FailClosed}
	var last ratelimit.Result
	for i := 0; i < 11; i++ {
		last, _ = ratelimit.Allow(context.Background(), l, "login:198.51.100.7:5e88", login)
	}
	fmt.Println(last.Allowed, last.RetryAfter)
	// Output:
	// false 6s
}
