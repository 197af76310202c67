// Command bench compares the journal rate limiters with their peers. It is a
// separate module so that the peers never become dependencies of the journal
// module.
//
// With -suite redis (the default) it compares the Redis limiter
// (ratelimit/redislimit) with go-redis/redis_rate v10 and ulule/limiter v3 on
// the same Redis, in three workloads:
//
//   - admit: G goroutines (default 64) over K keys (default 10,000), limits
//     high enough that every decision admits;
//   - flood: G goroutines on one key far over its limit;
//   - half: the admit workload paced at half of the peak just measured, for
//     the p99 latency at half load.
//
// It prints decisions/s and p50/p99 latency per limiter and workload.
//
// With -suite memory it compares the in-process limiter
// (ratelimit/memorylimit) with the in-process limiters of Go side by side
// (see memory.go): time and allocations per decision in parallel, and the
// heap one million keys take.
//
//	cd bench && go run . -redis 127.0.0.1:6379 -duration 5s
//	cd bench && go run . -suite memory
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	"github.com/ulule/limiter/v3"
	ulredis "github.com/ulule/limiter/v3/drivers/store/redis"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/redislimit"
)

// decideFunc makes one decision for key; high selects the never-denying
// limit, otherwise the flood limit (10 per hour).
type decideFunc func(ctx context.Context, key string, high bool) (allowed bool, err error)

var flushDelay time.Duration

func main() {
	testing.Init() // testing.Benchmark reads the test flags
	suite := flag.String("suite", "redis", "redis: the Redis limiters; memory: the in-process limiters (see memory.go)")
	addr := flag.String("redis", "127.0.0.1:6379", "Redis address (keys use a random prefix and expire)")
	goroutines := flag.Int("goroutines", 64, "redis suite: concurrent callers")
	keys := flag.Int("keys", 10000, "distinct keys of the admit workload")
	duration := flag.Duration("duration", 5*time.Second, "redis suite: length of each run")
	only := flag.String("only", "", "run only the limiters whose name contains this")
	flag.DurationVar(&flushDelay, "flush-delay", 0, "rueidis MaxFlushDelay of the journal limiter's client (0: none)")
	mem := memoryConfig{}
	flag.IntVar(&mem.parallelism, "parallelism", 32, "memory suite: goroutines per GOMAXPROCS")
	flag.IntVar(&mem.heapKeys, "heap-keys", 1_000_000, "memory suite: distinct keys of the heap measurement")
	flag.DurationVar(&mem.benchtime, "benchtime", time.Second, "memory suite: length of each throughput measurement")
	flag.IntVar(&mem.rounds, "rounds", 3, "memory suite: throughput measurements per limiter (the median is reported)")
	orders := flag.String("orders", orderRandom+","+orderSequential, "memory suite: the key orders measured: random (a key at random for each decision), sequential (each goroutine walks the keys in order)")
	flag.Parse()
	var err error
	switch *suite {
	case "redis":
		err = run(*addr, *goroutines, *keys, *duration, *only)
	case "memory":
		mem.keys, mem.only, mem.orders = *keys, *only, strings.Split(*orders, ",")
		if err = flag.Set("test.benchtime", mem.benchtime.String()); err == nil {
			err = runMemory(os.Stdout, mem)
		}
	default:
		err = fmt.Errorf("unknown suite %q (want redis or memory)", *suite)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(addr string, goroutines, nkeys int, duration time.Duration, only string) error {
	var b [4]byte
	rand.Read(b[:])
	prefix := "bench:" + hex.EncodeToString(b[:]) + ":"
	ctx := context.Background()

	rc, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: []string{addr}, DisableRetry: true, DisableCache: true,
		ConnWriteTimeout: 500 * time.Millisecond, Dialer: net.Dialer{KeepAlive: 200 * time.Millisecond},
		MaxFlushDelay: flushDelay,
	})
	if err != nil {
		return err
	}
	defer rc.Close()
	jl, err := redislimit.New(rc, redislimit.Options{Prefix: prefix + "j:", Timeout: time.Second, HeartbeatInterval: -1})
	if err != nil {
		return err
	}
	defer jl.Close()
	high := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 1 << 30, Per: time.Hour}}
	low := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 10, Per: time.Hour}}
	journal := func(ctx context.Context, key string, hi bool) (bool, error) {
		p := low
		if hi {
			p = high
		}
		var d ratelimit.Decision
		err := jl.Decide(ctx, &d, key, ratelimit.Item{Policy: p})
		return d.Allowed, err
	}

	gr := goredis.NewClient(&goredis.Options{Addr: addr, PoolSize: goroutines})
	defer gr.Close()
	rr := redis_rate.NewLimiter(gr)
	redisRate := func(ctx context.Context, key string, hi bool) (bool, error) {
		l := redis_rate.PerHour(10)
		if hi {
			l = redis_rate.PerHour(1 << 30)
		}
		res, err := rr.Allow(ctx, prefix+"rr:"+key, l)
		if err != nil {
			return false, err
		}
		return res.Allowed > 0, nil
	}

	store, err := ulredis.NewStoreWithOptions(gr, limiter.StoreOptions{Prefix: prefix + "ul"})
	if err != nil {
		return err
	}
	ulHigh := limiter.New(store, limiter.Rate{Period: time.Hour, Limit: 1 << 30})
	ulLow := limiter.New(store, limiter.Rate{Period: time.Hour, Limit: 10})
	ulule := func(ctx context.Context, key string, hi bool) (bool, error) {
		l := ulLow
		if hi {
			l = ulHigh
		}
		c, err := l.Get(ctx, key)
		return !c.Reached, err
	}

	keys := ipKeys(nkeys)
	fmt.Printf("# %d goroutines, %d keys, %v per run, Redis %s\n", goroutines, nkeys, duration, addr)
	fmt.Printf("%-11s %-6s %14s %10s %10s %8s\n", "limiter", "load", "decisions/s", "p50", "p99", "errors")
	for _, l := range []struct {
		name string
		fn   decideFunc
	}{{"journal", journal}, {"redis_rate", redisRate}, {"ulule", ulule}} {
		if only != "" && only != l.name {
			continue
		}
		peak := measure(ctx, l.fn, keys, goroutines, duration, 0, true)
		peak.print(l.name, "admit")
		measure(ctx, l.fn, keys, goroutines, duration, peak.rate/2, true).print(l.name, "half")
		measure(ctx, l.fn, []string{"ip:flood"}, goroutines, duration, 0, false).print(l.name, "flood")
	}
	return nil
}

// appendIPKey appends the rate-limit key of the i-th client, an IP address
// in 10.0.0.0/8, to buf: without allocating, for the heap measurement.
func appendIPKey(buf []byte, i int) []byte {
	buf = append(buf, "ip:10."...)
	buf = strconv.AppendInt(buf, int64(i>>16), 10)
	buf = append(buf, '.')
	buf = strconv.AppendInt(buf, int64(i>>8&255), 10)
	buf = append(buf, '.')
	return strconv.AppendInt(buf, int64(i&255), 10)
}

// ipKeys returns the keys of n distinct clients (see appendIPKey).
func ipKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = string(appendIPKey(nil, i))
	}
	return keys
}

type stats struct {
	rate     float64
	p50, p99 time.Duration
	errors   int64
}

func (s stats) print(name, load string) {
	fmt.Printf("%-11s %-6s %14.0f %10v %10v %8d\n", name, load, s.rate, s.p50.Round(time.Microsecond), s.p99.Round(time.Microsecond), s.errors)
}

// measure runs fn from g goroutines for d, paced to target decisions/s in
// total when target > 0.
func measure(ctx context.Context, fn decideFunc, keys []string, g int, d time.Duration, target float64, high bool) stats {
	var wg sync.WaitGroup
	var total, errs atomic.Int64
	lat := make([][]time.Duration, g)
	start := time.Now()
	stop := start.Add(d)
	for w := 0; w < g; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var interval time.Duration
			if target > 0 {
				interval = time.Duration(float64(time.Second) * float64(g) / target)
			}
			// Each goroutine starts at its own phase of the interval, so the
			// paced calls arrive evenly spread. Started together, the g
			// goroutines would fire in lockstep: a burst of g concurrent calls
			// every interval, whose queueing (g times one call's service time)
			// is what the percentiles would then measure.
			next := start.Add(interval * time.Duration(w) / time.Duration(g))
			for i := w * 7919; ; i++ {
				now := time.Now()
				if now.After(stop) {
					return
				}
				if interval > 0 {
					next = next.Add(interval)
					if wait := next.Sub(now); wait > 0 {
						time.Sleep(wait)
					}
				}
				t0 := time.Now()
				if _, err := fn(ctx, keys[i%len(keys)], high); err != nil {
					errs.Add(1)
				}
				lat[w] = append(lat[w], time.Since(t0))
				total.Add(1)
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	s := stats{rate: float64(total.Load()) / elapsed.Seconds(), errors: errs.Load()}
	if len(all) > 0 {
		s.p50 = all[len(all)/2]
		s.p99 = all[len(all)*99/100]
	}
	return s
}
