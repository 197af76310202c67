package redislimit_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/redis/rueidis"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/memorylimit"
	"github.com/journalsvc/journal/ratelimit/redislimit"
)

// A limiter shared by every instance of a service: the client options the
// limiter expects (no retries: it has a deadline and a breaker; a short write
// timeout and keep-alive to notice a dead server), and the fallback that
// decides each policy's fail mode while Redis is unavailable.
func Example() {
	client, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:      []string{"127.0.0.1:6379"},
		DisableRetry:     true,
		DisableCache:     true,
		ConnWriteTimeout: 500 * time.Millisecond,
		Dialer:           net.Dialer{KeepAlive: 200 * time.Millisecond},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	l, err := redislimit.New(client, redislimit.Options{
		Prefix:     "journal:",
		Timeout:    50 * time.Millisecond,
		InstanceID: "api-1",
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	// Ready once the connections are dialed and the script is loaded.
	if err := l.Warm(context.Background()); err != nil {
		fmt.Println(err)
	}
	local := memorylimit.New(memorylimit.Options{})
	defer local.Close()
	limiter, err := ratelimit.NewFallback(l, local, ratelimit.FallbackOptions{Instances: l.LiveInstances})
	if err != nil {
		fmt.Println(err)
		return
	}

	ip := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 100, Per: time.Minute}}
	login := ratelimit.Policy{Name: "login", Rate: ratelimit.Rate{N: 10, Per: time.Minute}, Fail: ratelimit.FailClosed}
	var d ratelimit.Decision // reuse it for the next decisions
	err = limiter.Decide(context.Background(), &d, "ip:203.0.113.7", ratelimit.Item{Policy: ip}, ratelimit.Item{Policy: login})
	switch {
	case errors.Is(err, ratelimit.ErrUnavailable):
		fmt.Println("503: the login policy fails closed")
	case err != nil:
		fmt.Println(err)
	case !d.Allowed:
		fmt.Println("429, retry after", d.RetryAfter)
	default:
		fmt.Println("admitted; degraded:", d.Degraded())
	}
}
