package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sethvargo/go-limiter/memorystore"
	"github.com/throttled/throttled/v2"
	throttledmem "github.com/throttled/throttled/v2/store/memstore"
	"github.com/ulule/limiter/v3"
	ulmemory "github.com/ulule/limiter/v3/drivers/store/memory"
	"golang.org/x/time/rate"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/httplimit"
	"github.com/journalsvc/journal/ratelimit/memorylimit"
)

// memoryConfig is the memory suite's workload.
type memoryConfig struct {
	parallelism int           // goroutines per GOMAXPROCS (b.SetParallelism)
	keys        int           // distinct keys of the throughput workload
	heapKeys    int           // distinct keys of the heap measurement
	benchtime   time.Duration // per throughput measurement
	rounds      int           // throughput measurements per limiter; the median is reported
	only        string        // run only the limiters whose name contains it
	orders      []string      // the key orders measured: orderRandom, orderSequential
}

// inProcess is one in-process limiter of the suite. newDecider returns a
// fresh limiter (high enough limits that every decision admits) as a
// per-goroutine decision function, and a function that releases it.
type inProcess struct {
	name    string
	bounded bool // holds a bounded number of keys, or reclaims idle ones
	goal    bool // a row that the goals are checked against
	new     func() (perGoroutine func() decideOne, close func())
}

// decideOne decides one request for key and reports whether it was
// admitted, or the limiter's error.
type decideOne func(key string) (bool, error)

// The limit of every limiter: far more than the workload reaches, so every
// decision admits.
const huge = 1 << 30

func inProcessLimiters() []inProcess {
	ctx := context.Background()
	policy := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: huge, Per: time.Second}}
	return []inProcess{
		{name: "journal memorylimit: Limiter.Decide", bounded: true, goal: true, new: func() (func() decideOne, func()) {
			l := memorylimit.New(memorylimit.Options{})
			return func() decideOne {
				var d ratelimit.Decision // each goroutine reuses its own
				return func(key string) (bool, error) {
					err := l.Decide(ctx, &d, key, ratelimit.Item{Policy: policy})
					return d.Allowed, err
				}
			}, func() { l.Close() }
		}},
		{name: "journal memorylimit: the middleware's call", bounded: true, goal: true, new: func() (func() decideOne, func()) {
			// What httplimit.Middleware.Limit does to decide: the
			// ratelimit.Limiter interface, the items slice its Items
			// function returns, a Decision from a sync.Pool.
			mem := memorylimit.New(memorylimit.Options{})
			var l ratelimit.Limiter = mem
			items := []ratelimit.Item{{Policy: policy}}
			var pool sync.Pool
			return func() decideOne {
				return func(key string) (bool, error) {
					d, _ := pool.Get().(*ratelimit.Decision)
					if d == nil {
						d = new(ratelimit.Decision)
					}
					err := l.Decide(ctx, d, key, items...)
					ok := d.Allowed
					pool.Put(d)
					return ok, err
				}
			}, func() { mem.Close() }
		}},
		{name: "journal memorylimit: httplimit Middleware.Limit, with headers", bounded: true, new: func() (func() decideOne, func()) {
			mem := memorylimit.New(memorylimit.Options{})
			items := []ratelimit.Item{{Policy: policy}}
			m, err := httplimit.New(mem, httplimit.Options{Items: httplimit.StaticItems(items...)})
			if err != nil {
				panic(err)
			}
			return func() decideOne {
				r := httptest.NewRequest(http.MethodGet, "/v1/entries", nil)
				r = r.WithContext(httplimit.WithOutcome(r.Context()))
				w := &discardWriter{h: make(http.Header, 8)}
				return func(key string) (bool, error) {
					clear(w.h)
					return m.Limit(w, r, key, items...), nil
				}
			}, func() { mem.Close() }
		}},
		{name: "sethvargo/go-limiter memorystore", bounded: true, new: func() (func() decideOne, func()) {
			s, err := memorystore.New(&memorystore.Config{Tokens: huge, Interval: time.Hour})
			if err != nil {
				panic(err)
			}
			return func() decideOne {
				return func(key string) (bool, error) {
					_, _, _, ok, err := s.Take(ctx, key)
					return ok, err
				}
			}, func() { s.Close(ctx) }
		}},
		{name: "ulule/limiter memory store", bounded: true, new: func() (func() decideOne, func()) {
			l := limiter.New(ulmemory.NewStore(), limiter.Rate{Period: time.Second, Limit: huge})
			return func() decideOne {
				return func(key string) (bool, error) {
					c, err := l.Get(ctx, key)
					return !c.Reached, err
				}
			}, func() {}
		}},
		{name: "throttled/throttled memstore (GCRA, LRU)", bounded: true, new: func() (func() decideOne, func()) {
			st, err := throttledmem.NewCtx(memorylimit.DefaultMaxKeys) // the bound memorylimit has
			if err != nil {
				panic(err)
			}
			l, err := throttled.NewGCRARateLimiterCtx(st, throttled.RateQuota{MaxRate: throttled.PerHour(huge), MaxBurst: huge})
			if err != nil {
				panic(err)
			}
			return func() decideOne {
				return func(key string) (bool, error) {
					limited, _, err := l.RateLimitCtx(ctx, key, 1)
					return !limited, err
				}
			}, func() {}
		}},
		{name: "x/time/rate in a sync.Map (unbounded)", new: func() (func() decideOne, func()) {
			var m sync.Map
			return func() decideOne {
				return func(key string) (bool, error) {
					v, ok := m.Load(key)
					if !ok {
						v, _ = m.LoadOrStore(key, rate.NewLimiter(huge, huge))
					}
					return v.(*rate.Limiter).Allow(), nil
				}
			}, func() {}
		}},
	}
}

// discardWriter is a minimal ResponseWriter, so the middleware row measures
// the middleware rather than httptest.ResponseRecorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// throughput is one limiter's parallel decisions in one key order.
type throughput struct {
	nsPerOp               []float64 // one per round
	allocsPerOp, bytesPer int64
	denied, failed        int64
}

func (t *throughput) median() float64 {
	s := slices.Sorted(slices.Values(t.nsPerOp))
	n := len(s)
	return (s[(n-1)/2] + s[n/2]) / 2
}

// The orders in which a goroutine picks its keys.
const (
	orderRandom     = "random"     // a key chosen uniformly at random for each decision
	orderSequential = "sequential" // each goroutine walks the keys in order from its own start
)

// measureThroughput runs b.RunParallel with SetParallelism(parallelism)
// over keys in the given order, after one decision on every key (so the
// measurement is of keys the limiter holds), and adds the round to tp.
func measureThroughput(tp *throughput, lim inProcess, cfg memoryConfig, keys []string, order string) error {
	perGoroutine, done := lim.new()
	defer done()
	warm := perGoroutine()
	for _, k := range keys {
		warm(k)
	}
	var denied, failed atomic.Int64
	var seed atomic.Uint64
	res := testing.Benchmark(func(b *testing.B) {
		b.SetParallelism(cfg.parallelism)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			decide := perGoroutine()
			x := seed.Add(7919) // the walk's start, or the random sequence's seed
			for pb.Next() {
				var i uint64
				if order == orderSequential {
					x++
					i = x % uint64(len(keys))
				} else {
					// xorshift64*: a key uniformly at random, cheaply
					x ^= x >> 12
					x ^= x << 25
					x ^= x >> 27
					i = (x * 0x2545f4914f6cdd1d >> 32) * uint64(len(keys)) >> 32
				}
				switch ok, err := decide(keys[i]); {
				case err != nil:
					failed.Add(1)
				case !ok:
					denied.Add(1)
				}
			}
		})
	})
	if res.N == 0 {
		return errors.New("the benchmark did not run")
	}
	tp.nsPerOp = append(tp.nsPerOp, float64(res.T.Nanoseconds())/float64(res.N))
	tp.allocsPerOp, tp.bytesPer = res.AllocsPerOp(), res.AllocedBytesPerOp()
	tp.denied += denied.Load()
	tp.failed += failed.Load()
	return nil
}

// heapInUse returns the heap in use after two garbage collections.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// measureHeap returns the growth of the heap in use (after GC) once lim has
// decided one request on each of n distinct keys, the limiter still alive.
func measureHeap(lim inProcess, n int) uint64 {
	before := heapInUse()
	perGoroutine, done := lim.new()
	defer done()
	decide := perGoroutine()
	var buf []byte
	for i := range n {
		buf = appendIPKey(buf[:0], i)
		decide(string(buf))
	}
	after := heapInUse()
	runtime.KeepAlive(decide)
	return max(after, before) - before
}

// row is one limiter's measurements.
type row struct {
	lim  inProcess
	tp   map[string]*throughput // by key order
	heap uint64
}

// runMemory measures every in-process limiter (those whose name contains
// cfg.only) and writes the tables and the goals to w.
func runMemory(w io.Writer, cfg memoryConfig) error {
	keys := ipKeys(cfg.keys)
	var rows []*row
	for _, lim := range inProcessLimiters() {
		if strings.Contains(strings.ToLower(lim.name), strings.ToLower(cfg.only)) {
			rows = append(rows, &row{lim: lim, tp: map[string]*throughput{}})
		}
	}
	// Rounds take every limiter and order in turn, so that a burst of
	// other load on the machine spreads over all of them.
	for range cfg.rounds {
		for _, order := range cfg.orders {
			for _, r := range rows {
				if r.tp[order] == nil {
					r.tp[order] = &throughput{}
				}
				if err := measureThroughput(r.tp[order], r.lim, cfg, keys, order); err != nil {
					return fmt.Errorf("%s: %w", r.lim.name, err)
				}
			}
		}
	}
	for _, r := range rows {
		r.heap = measureHeap(r.lim, cfg.heapKeys)
	}

	procs := runtime.GOMAXPROCS(0)
	fmt.Fprintf(w, "%d goroutines (GOMAXPROCS %d x SetParallelism %d) over %d keys, every decision admitted; ns/decision is the median of %d rounds of %v (each round in brackets).\n",
		procs*cfg.parallelism, procs, cfg.parallelism, cfg.keys, cfg.rounds, cfg.benchtime)
	fmt.Fprintf(w, "Heap: HeapInuse after GC, grown by one decision on each of %d distinct keys, the limiter alive.\n\n", cfg.heapKeys)
	fmt.Fprint(w, "| limiter |")
	for _, order := range cfg.orders {
		fmt.Fprintf(w, " ns/decision, %s keys |", order)
	}
	fmt.Fprintln(w, " allocs/decision | B/decision | heap |")
	fmt.Fprintln(w, "|---|"+strings.Repeat("---:|", len(cfg.orders)+3))
	for _, r := range rows {
		name := r.lim.name
		if !r.lim.bounded {
			name += " †"
		}
		fmt.Fprintf(w, "| %s |", name)
		var tp *throughput
		for _, order := range cfg.orders {
			tp = r.tp[order]
			var each []string
			for _, ns := range tp.nsPerOp {
				each = append(each, strconv.FormatFloat(ns, 'f', 0, 64))
			}
			fmt.Fprintf(w, " %.0f (%s) |", tp.median(), strings.Join(each, ", "))
		}
		fmt.Fprintf(w, " %d | %d | %.1f MB |\n", tp.allocsPerOp, tp.bytesPer, float64(r.heap)/1e6)
		for _, order := range cfg.orders {
			if tp := r.tp[order]; tp.denied > 0 || tp.failed > 0 {
				fmt.Fprintf(w, "| ↳ %s keys: %d decisions denied, %d failed |%s\n", order, tp.denied, tp.failed, strings.Repeat(" |", len(cfg.orders)+3))
			}
		}
	}
	fmt.Fprintln(w, "\n† keeps every key forever (not bounded)")
	writeGoals(w, rows, cfg.orders)
	return nil
}

// writeGoals writes memorylimit's ratios to its peers: as a user calls it
// and as the middleware calls it, against the faster of go-limiter and
// ulule, and against x/time/rate in a sync.Map.
func writeGoals(w io.Writer, rows []*row, orders []string) {
	find := func(prefix string) *row {
		for _, r := range rows {
			if strings.HasPrefix(r.lim.name, prefix) {
				return r
			}
		}
		return nil
	}
	gl, ul, xt := find("sethvargo/go-limiter"), find("ulule/limiter"), find("x/time/rate")
	if gl == nil || ul == nil || xt == nil {
		return
	}
	fmt.Fprintln(w)
	for _, r := range rows {
		if !r.lim.goal {
			continue
		}
		for _, order := range orders {
			peer := gl
			if ul.tp[order].median() < gl.tp[order].median() {
				peer = ul
			}
			ns := r.tp[order].median()
			fmt.Fprintf(w, "- %s, %s keys: %.2fx the time of %s (goal <= 0.8x), %.2fx x/time/rate in a sync.Map (goal <= 2.5x), %d allocs/decision (goal 0)\n",
				r.lim.name, order, ns/peer.tp[order].median(), peer.lim.name, ns/xt.tp[order].median(), r.tp[order].allocsPerOp)
		}
		fmt.Fprintf(w, "- %s: heap %.2fx go-limiter's (goal <= 0.5x)\n", r.lim.name, float64(r.heap)/float64(gl.heap))
	}
}
