package rediscache_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/journalsvc/journal/cache"
	"github.com/journalsvc/journal/cache/cachetest"
	"github.com/journalsvc/journal/cache/rediscache"
	"github.com/journalsvc/journal/cache/rediscache/rediscachetest"
	"github.com/journalsvc/journal/internal/testenv"
	"github.com/redis/rueidis"
)

// instance is one "service instance": its own rueidis client and Store.
type instance struct {
	client rueidis.Client
	store  *rediscache.Store
	cache  *cache.Cache
}

// newInstance connects a new instance. Unless opts says otherwise its Redis
// call timeout is 1s, not 50ms: the test machine's 2 cores are shared, and
// only the fault tests are about timeouts.
func newInstance(tb testing.TB, addr string, opts rediscache.Options, cfg rediscache.ClientConfig) *instance {
	tb.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = time.Second
	}
	return newInstanceOn(tb, rediscachetest.Client(tb, []string{addr}, cfg), opts)
}

// newInstanceOn builds an instance's Store with opts, and its Cache, over
// client.
func newInstanceOn(tb testing.TB, client rueidis.Client, opts rediscache.Options) *instance {
	tb.Helper()
	s := rediscachetest.Store(tb, client, opts)
	c, err := cache.New(s, cache.Options{LeaseWait: 3 * time.Second, LeaseTTL: 5 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	return &instance{client: client, store: s, cache: c}
}

func TestConformance(t *testing.T) {
	addr := testenv.RedisAddr(t)
	cachetest.Run(t, func(tb testing.TB) cache.Store {
		return newInstance(tb, addr, rediscache.Options{}, rediscache.ClientConfig{}).store
	})
}

func set(tb testing.TB, s cache.Store, key, value string) {
	tb.Helper()
	if err := s.Set(context.Background(), key, cache.Entry{Status: cache.Hit, Value: []byte(value)}, time.Minute); err != nil {
		tb.Fatalf("Set(%q): %v", key, err)
	}
}

func TestReadYourWrites(t *testing.T) {
	t.Parallel()
	a := newInstance(t, testenv.RedisAddr(t), rediscache.Options{}, rediscache.ClientConfig{})
	k := cachetest.Key(t, "ryw")
	set(t, a.store, k, "init")
	cachetest.Get(t, a.store, k) // now in the near cache, tracked
	stale, near := 0, 0
	for i := range 1000 {
		want := strconv.Itoa(i)
		set(t, a.store, k, want)
		e := cachetest.Get(t, a.store, k)
		if string(e.Value) != want {
			stale++
		}
		if e2 := cachetest.Get(t, a.store, k); e2.Tier == "near" {
			near++
		}
	}
	if stale != 0 {
		t.Errorf("%d of 1000 reads right after a write on the same instance were stale", stale)
	}
	if near == 0 {
		t.Errorf("no read was served by the near cache")
	}
	// Delete and fills are writes too.
	if err := a.store.Delete(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	if e := cachetest.Get(t, a.store, k); e.Status != cache.Miss {
		t.Errorf("Get after Delete = %v, want miss", e.Status)
	}
}

// lagBound is the longest a test lets an invalidation take to reach another
// instance: far above the lag on one host, because under -race on a busy
// machine the goroutine that reads the push may wait long for a core.
const lagBound = time.Second

// converge reads key on s until it returns want, failing on any other value
// than old or want, or if want is not seen within lagBound. It returns how
// long the old value was still served. An empty old stands for a miss.
func converge(tb testing.TB, s cache.Store, key, old, want string) time.Duration {
	tb.Helper()
	start := time.Now()
	for {
		e := cachetest.Get(tb, s, key)
		switch got := string(e.Value); {
		case e.Status == cache.Hit && got == want:
			return time.Since(start)
		case e.Status == cache.Hit && got == old:
		case e.Status == cache.Miss && old == "":
		default:
			tb.Fatalf("read %v %q, want %q or %q", e.Status, got, old, want)
		}
		if time.Since(start) > lagBound {
			tb.Fatalf("still reading %q %v after the write of %q", old, lagBound, want)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// testCoherence writes rounds values of key on a, each read at once on a and
// on b: a must read its own write, b may read the old value only until the
// invalidation arrives (converge), and b must serve reads from its near
// cache. where names key in the log and the errors.
func testCoherence(t *testing.T, a, b *instance, key, where string, rounds int) {
	t.Helper()
	set(t, a.store, key, "init")
	cachetest.Get(t, b.store, key)
	stale, staleOwn, near := 0, 0, 0
	var maxLag time.Duration
	old := "init"
	for i := range rounds {
		want := strconv.Itoa(i)
		set(t, a.store, key, want)
		if e := cachetest.Get(t, a.store, key); string(e.Value) != want {
			staleOwn++
		}
		if e := cachetest.Get(t, b.store, key); string(e.Value) != want {
			stale++
			maxLag = max(maxLag, converge(t, b.store, key, old, want))
		}
		if e := cachetest.Get(t, b.store, key); e.Tier == "near" {
			near++
		}
		old = want
	}
	t.Logf("%s: %d write-on-A/read-on-B pairs, %d immediate reads still old, longest lag %v, %d near hits on B",
		where, rounds, stale, maxLag, near)
	if staleOwn != 0 {
		t.Errorf("%s: %d of %d reads on A right after its own write were stale", where, staleOwn, rounds)
	}
	if near == 0 {
		t.Errorf("%s: B served no read from its near cache", where)
	}
}

func TestCoherenceAcrossInstances(t *testing.T) {
	t.Parallel()
	addr := testenv.RedisAddr(t)
	a := newInstance(t, addr, rediscache.Options{}, rediscache.ClientConfig{})
	b := newInstance(t, addr, rediscache.Options{}, rediscache.ClientConfig{})
	k := cachetest.Key(t, "coherent")
	testCoherence(t, a, b, k, addr, 1000)
	if err := a.cache.Delete(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, lagBound, "B sees the delete on A", func() bool {
		r, err := b.cache.Get(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		return r.Status == cache.Miss
	})
}

func TestStampedeAcrossInstances(t *testing.T) {
	t.Parallel()
	addr := testenv.RedisAddr(t)
	var insts []*instance
	for range 3 {
		insts = append(insts, newInstance(t, addr, rediscache.Options{}, rediscache.ClientConfig{}))
	}
	k := cachetest.Key(t, "stampede")
	var loads atomic.Int32
	load := func(ctx context.Context) ([]byte, error) {
		loads.Add(1)
		time.Sleep(100 * time.Millisecond)
		return []byte("row"), nil
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	var failures atomic.Int32
	for i := range 200 {
		inst := insts[i%len(insts)]
		wg.Go(func() {
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			v, err := inst.cache.GetOrLoad(ctx, k, time.Minute, load)
			if err != nil || string(v) != "row" {
				failures.Add(1)
				t.Errorf("GetOrLoad = %q, %v", v, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if got := loads.Load(); got != 1 {
		t.Errorf("200 misses over 3 instances ran %d loads, want 1", got)
	}
}

func TestNearMaxAge(t *testing.T) {
	t.Parallel()
	a := newInstance(t, testenv.RedisAddr(t), rediscache.Options{NearMaxAge: 300 * time.Millisecond}, rediscache.ClientConfig{})
	k := cachetest.Key(t, "maxage")
	set(t, a.store, k, "v")
	cachetest.Get(t, a.store, k)
	if e := cachetest.Get(t, a.store, k); e.Tier != "near" {
		t.Fatalf("second read tier = %q, want near", e.Tier)
	}
	time.Sleep(400 * time.Millisecond)
	if e := cachetest.Get(t, a.store, k); e.Tier != "redis" {
		t.Errorf("read after NearMaxAge tier = %q, want redis", e.Tier)
	}
}

func TestMalformedIsError(t *testing.T) {
	t.Parallel()
	a := newInstance(t, testenv.RedisAddr(t), rediscache.Options{}, rediscache.ClientConfig{})
	k := cachetest.Key(t, "foreign")
	ctx := context.Background()
	if err := a.client.Do(ctx, a.client.B().Set().Key(k).Value("raw").Ex(time.Minute).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.store.Get(ctx, k); !errors.Is(err, rediscache.ErrMalformed) {
		t.Errorf("Get of a foreign value = %v, want ErrMalformed", err)
	}
}

// faultTimeout is the Redis call timeout of the instances of the fault
// tests.
const faultTimeout = 100 * time.Millisecond

// faultInstances starts a private Redis, which the test may pause or kill,
// and connects two instances to it with a call timeout of faultTimeout.
func faultInstances(t *testing.T) (r *testenv.Redis, a, b *instance) {
	t.Helper()
	r = testenv.StartRedis(t)
	opts := rediscache.Options{Timeout: faultTimeout}
	return r, newInstance(t, r.Addr(), opts, rediscache.ClientConfig{}), newInstance(t, r.Addr(), opts, rediscache.ClientConfig{})
}

// waitReadsFail waits until reads of key on s fail after its server stopped
// answering (what: how it stopped) and returns how long that took. Until
// then a read may only return s's copy of old.
func waitReadsFail(t *testing.T, s cache.Store, key, old, what string) time.Duration {
	t.Helper()
	return testenv.WaitFor(t, 3*time.Second, what, func() bool {
		e, err := s.Get(context.Background(), key)
		if err != nil {
			return true
		}
		if e.Status != cache.Hit || string(e.Value) != old {
			t.Fatalf("%s: read = %v %q, want the old hit or an error", what, e.Status, e.Value)
		}
		return false
	})
}

func TestPausedRedis(t *testing.T) {
	t.Parallel()
	r, a, b := faultInstances(t)
	ctx := context.Background()
	k, k2 := cachetest.Key(t, "paused"), cachetest.Key(t, "paused-miss")
	set(t, a.store, k, "before")
	if e := cachetest.Get(t, b.store, k); string(e.Value) != "before" {
		t.Fatalf("B reads %q", e.Value)
	}
	cachetest.Get(t, b.store, k2)
	r.Pause(t)
	paused := time.Now()
	// Until the outage is detected B may serve its (still correct) copy; then
	// every read is an error: never a miss, never another value.
	took := waitReadsFail(t, b.store, k, "before", "reads fail after SIGSTOP")
	t.Logf("reads failed %v after the pause", took)
	if e, err := b.store.Get(ctx, k2); err == nil {
		t.Errorf("Get of a cached miss during the pause = %v, want an error", e.Status)
	}
	// Writes fail within the call timeout.
	start := time.Now()
	if err := a.store.Set(ctx, k, cache.Entry{Status: cache.Hit, Value: []byte("during")}, time.Minute); err == nil {
		t.Errorf("Set during the pause succeeded")
	}
	if el := time.Since(start); el > 3*faultTimeout {
		t.Errorf("Set during the pause took %v", el)
	}
	// GetOrLoad answers from the loader and writes nothing back.
	v, err := b.cache.GetOrLoad(ctx, k2, time.Minute, func(context.Context) ([]byte, error) { return []byte("db"), nil })
	if err != nil || string(v) != "db" {
		t.Errorf("GetOrLoad during the pause = %q, %v; want db", v, err)
	}
	r.Resume(t)
	t.Logf("paused for %v", time.Since(paused))
	testenv.WaitFor(t, 5*time.Second, "reads recover after SIGCONT", func() bool {
		_, err := b.store.Get(ctx, k)
		return err == nil
	})
	if e := cachetest.Get(t, b.store, k2); e.Status != cache.Miss {
		t.Errorf("after the outage k2 = %v %q, want miss (nothing written back)", e.Status, e.Value)
	}
	// Coherence is back: a write on A is seen on B.
	testenv.WaitFor(t, 5*time.Second, "writes work after SIGCONT", func() bool {
		return a.store.Set(ctx, k, cache.Entry{Status: cache.Hit, Value: []byte("after")}, time.Minute) == nil
	})
	converge(t, b.store, k, "before", "after")
}

func TestKilledRedis(t *testing.T) {
	t.Parallel()
	r, a, b := faultInstances(t)
	ctx := context.Background()
	k := cachetest.Key(t, "killed")
	set(t, a.store, k, "before")
	cachetest.Get(t, b.store, k)
	r.Kill(t)
	waitReadsFail(t, b.store, k, "before", "reads fail after SIGKILL")
	r.Restart(t)
	// The restarted server is empty: B must not serve its old copy.
	testenv.WaitFor(t, 5*time.Second, "reads recover after restart", func() bool {
		e, err := b.store.Get(ctx, k)
		if err == nil && e.Status != cache.Miss {
			t.Fatalf("after restart B reads %v %q, want miss (server is empty)", e.Status, e.Value)
		}
		return err == nil
	})
	testenv.WaitFor(t, 5*time.Second, "writes work after restart", func() bool {
		return a.store.Set(ctx, k, cache.Entry{Status: cache.Hit, Value: []byte("after")}, time.Minute) == nil
	})
	converge(t, b.store, k, "", "after")
	old := "after"
	for i := range 100 {
		want := fmt.Sprint("after", i)
		set(t, a.store, k, want)
		converge(t, b.store, k, old, want)
		old = want
	}
}

func TestNoCacheFallback(t *testing.T) {
	t.Parallel()
	// A server that refuses RESP3 (HELLO renamed away) cannot track keys.
	r := testenv.StartRedis(t, "--rename-command", "HELLO", "")
	client, near, err := rediscache.NewClient(rediscache.ClientOptions([]string{r.Addr()}, rediscache.ClientConfig{}))
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	defer client.Close()
	if near {
		t.Fatalf("NewClient reports a near cache on a server without RESP3")
	}
	s, err := rediscache.New(client, rediscache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k := cachetest.Key(t, "nocache")
	set(t, s, k, "v")
	for range 3 {
		if e := cachetest.Get(t, s, k); string(e.Value) != "v" || e.Tier != "redis" {
			t.Fatalf("Get = %q from %q, want v from redis", e.Value, e.Tier)
		}
	}
}

func TestInvalidationsHook(t *testing.T) {
	t.Parallel()
	addr := testenv.RedisAddr(t)
	var n atomic.Int64
	a := newInstance(t, addr, rediscache.Options{}, rediscache.ClientConfig{})
	b := newInstance(t, addr, rediscache.Options{}, rediscache.ClientConfig{OnInvalidations: func(keys int) { n.Add(int64(keys)) }})
	k := cachetest.Key(t, "inv")
	set(t, a.store, k, "1")
	cachetest.Get(t, b.store, k)
	set(t, a.store, k, "2")
	testenv.WaitFor(t, 3*time.Second, "B counts the invalidation", func() bool { return n.Load() >= 1 })
}

// TestBoundedWhileReconnecting: while rueidis redials a hung server for a
// caller with a long deadline, it holds every other caller for that dial. A
// store's liveness check still gives its verdict within about
// LivenessInterval + PingTimeout, and reads (once unhealthy) and writes still
// return at their own deadline.
func TestBoundedWhileReconnecting(t *testing.T) {
	t.Parallel()
	hd := testenv.NewHangingDialer(t)
	const dial = 2 * time.Second
	const timeout = 100 * time.Millisecond
	opt := rediscache.ClientOptions([]string{testenv.RedisAddr(t)}, rediscache.ClientConfig{ConnWriteTimeout: dial, DialTimeout: dial})
	opt.DialCtxFn = hd.Dial
	client, _, err := rediscache.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	ctx := context.Background()
	k := cachetest.Key(t, "redial")
	// rueidis redials for another caller, with a deadline far beyond ours.
	hd.HangDuringRedial(client, dial)
	// A store created now starts healthy; its first PING waits on the dial.
	start := time.Now()
	s, err := rediscache.New(client, rediscache.Options{Timeout: timeout, LivenessInterval: 50 * time.Millisecond, PingTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	for s.Healthy() {
		if time.Since(start) > dial {
			t.Fatalf("still healthy %v into the redial", time.Since(start))
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(start)
	t.Logf("unhealthy %v into the redial", took)
	if took > 5*timeout {
		t.Errorf("liveness verdict took %v during the redial, want about LivenessInterval + PingTimeout", took)
	}
	for _, op := range []struct {
		name string
		do   func() error
	}{
		{"Get", func() error { _, err := s.Get(ctx, k); return err }},
		{"Set", func() error { return s.Set(ctx, k, cache.Entry{Status: cache.Hit, Value: []byte("x")}, time.Minute) }},
		{"Delete", func() error { return s.Delete(ctx, k) }},
	} {
		start := time.Now()
		err := op.do()
		took := time.Since(start)
		t.Logf("%s during the redial took %v: %v", op.name, took, err)
		if err == nil {
			t.Errorf("%s during the redial succeeded", op.name)
		}
		if took > 5*timeout {
			t.Errorf("%s during the redial took %v, want about the %v timeout, not the %v dial", op.name, took, timeout, dial)
		}
	}
}
