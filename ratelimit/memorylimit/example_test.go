package memorylimit_test

import (
	"context"
	"fmt"
	"time"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/memorylimit"
)

// A per-IP policy of 3 requests per minute, decided by the in-process
// backend with a fixed clock so the output is stable.
func Example() {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	l := memorylimit.New(memorylimit.Options{Now: func() time.Time { return now }})
	defer l.Close()

	ip, err := ratelimit.ParseRate("3/1m")
	if err != nil {
		panic(err)
	}
	policy := ratelimit.Policy{Name: "ip", Rate: ip} // GCRA, burst 3
	for i := 0; i < 4; i++ {
		r, err := ratelimit.Allow(context.Background(), l, "ip:203.0.113.7", policy)
		if err != nil {
			panic(err)
		}
		fmt.Printf("allowed=%v remaining=%d retry=%v\n", r.Allowed, r.Remaining, r.RetryAfter)
	}
	// Output:
	// allowed=true remaining=2 retry=0s
	// allowed=true remaining=1 retry=0s
	// allowed=true remaining=0 retry=0s
	// allowed=false remaining=0 retry=20s
}

// Several policies of one subject are decided together: all or nothing, and
// a denial names every violated policy and the latest retry.
func ExampleLimiter_Decide() {
	now := time.Date(2026, 1, 1, 12, 0, 30, 0, time.UTC)
	l := memorylimit.New(memorylimit.Options{Now: func() time.Time { return now }})
	defer l.Close()

	minute := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 2, Per: time.Minute}}
	hour := ratelimit.Policy{Name: "ip-hour", Rate: ratelimit.Rate{N: 100, Per: time.Hour}, Algorithm: ratelimit.Sliding}
	items := []ratelimit.Item{{Policy: minute}, {Policy: hour}}
	var d ratelimit.Decision // reused: deciding allocates nothing
	for i := 0; i < 3; i++ {
		if err := l.Decide(context.Background(), &d, "ip:198.51.100.4", items...); err != nil {
			panic(err)
		}
		fmt.Printf("allowed=%v retry=%v hour-remaining=%d violated=%d\n",
			d.Allowed, d.RetryAfter, d.Results[1].Remaining, len(d.Violated(items)))
	}
	// Output:
	// allowed=true retry=0s hour-remaining=99 violated=0
	// allowed=true retry=0s hour-remaining=98 violated=0
	// allowed=false retry=30s hour-remaining=98 violated=1
}
