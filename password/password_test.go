package password

import (
	"context"
	"errors"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// cheap are fast parameters for tests that do not measure the real cost.
var cheap = Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

func TestHashVerifyDefaultParams(t *testing.T) {
	t.Parallel()
	h := New(Options{})
	ctx := context.Background()
	enc, err := h.Hash(ctx, "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	// 16-byte salt: 22 base64 chars; 32-byte key: 43 chars.
	re := regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	if !re.MatchString(enc) {
		t.Fatalf("Hash = %q, want match of %s", enc, re)
	}
	if ok, err := h.Verify(ctx, enc, "correct horse battery staple"); !ok || err != nil {
		t.Errorf("Verify(right password) = %v, %v; want true, nil", ok, err)
	}
	if ok, err := h.Verify(ctx, enc, "correct horse battery stapler"); ok || err != nil {
		t.Errorf("Verify(wrong password) = %v, %v; want false, nil", ok, err)
	}
}

func TestHashSaltsDiffer(t *testing.T) {
	h := New(Options{Params: cheap})
	a, _ := h.Hash(context.Background(), "password1")
	b, _ := h.Hash(context.Background(), "password1")
	if a == b {
		t.Errorf("two hashes of one password are equal: %q", a)
	}
}

// TestKnownHash pins the encoding: a stored hash must keep verifying. The
// vector was produced by this package with cheap parameters.
func TestKnownHash(t *testing.T) {
	const enc = "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$55PWTvddWPUD1GMbKxSff4ASfF85k9ibHJt4HlHQtBM"
	h := New(Options{Params: cheap})
	if ok, err := h.Verify(context.Background(), enc, "password"); !ok || err != nil {
		t.Errorf("Verify(known vector) = %v, %v; want true, nil", ok, err)
	}
	if ok, err := h.Verify(context.Background(), enc, "Password"); ok || err != nil {
		t.Errorf("Verify(known vector, wrong) = %v, %v; want false, nil", ok, err)
	}
}

func TestVerifyMalformed(t *testing.T) {
	h := New(Options{Params: cheap})
	good, _ := h.Hash(context.Background(), "password")
	for _, enc := range []string{
		"",
		"password",
		strings.Replace(good, "argon2id", "argon2i", 1),
		strings.Replace(good, "v=19", "v=16", 1),
		strings.Replace(good, "m=64,", "m=x,", 1),
		strings.Replace(good, "m=64,", "m=4,", 1),                // below 8*p
		strings.Replace(good, "m=64,", "m=99999999,", 1),         // absurd memory
		strings.Replace(good, "t=1,", "t=0,", 1),                 // no iterations
		strings.Replace(good, "p=1", "p=300", 1),                 // parallelism overflow
		strings.Replace(good, "m=64,t=1,p=1", "t=1,m=64,p=1", 1), // order
		strings.Replace(good, "m=64,t=1,p=1", "m=64,t=1", 1),     // missing p
		good[:strings.LastIndex(good, "$")] + "$!!!",             // bad base64
		good[:strings.LastIndex(good, "$")] + "$c2hvcnQ",         // key too short
		good + "$extra",
	} {
		if ok, err := h.Verify(context.Background(), enc, "password"); ok || !errors.Is(err, ErrMalformedHash) {
			t.Errorf("Verify(%q) = %v, %v; want false, ErrMalformedHash", enc, ok, err)
		}
	}
}

func TestDummyVerify(t *testing.T) {
	h := New(Options{Params: cheap})
	if err := h.DummyVerify(context.Background(), "whatever1"); err != nil {
		t.Errorf("DummyVerify = %v, want nil", err)
	}
}

// TestDummyVerifyCostsLikeVerify compares the median time of a failed Verify
// with DummyVerify; the bound (3x either way) is generous so that a loaded
// machine does not make it flaky, yet skipping the hash would fail it by
// orders of magnitude. The two are timed in turns, so a burst of load from
// elsewhere slows both, and the test does not run in parallel with the
// package's other tests, which keep every core busy.
func TestDummyVerifyCostsLikeVerify(t *testing.T) {
	p := Params{Memory: 1024, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32}
	h := New(Options{Params: p})
	ctx := context.Background()
	enc, _ := h.Hash(ctx, "the real password")
	timed := func(f func()) time.Duration {
		start := time.Now()
		f()
		return time.Since(start)
	}
	const n = 9
	var wrongs, dummies []time.Duration
	for range n {
		wrongs = append(wrongs, timed(func() { _, _ = h.Verify(ctx, enc, "a wrong password") }))
		dummies = append(dummies, timed(func() { _ = h.DummyVerify(ctx, "a wrong password") }))
	}
	median := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	wrong, dummy := median(wrongs), median(dummies)
	if dummy*3 < wrong || wrong*3 < dummy {
		t.Errorf("median Verify(wrong) = %v, DummyVerify = %v; want within 3x", wrong, dummy)
	}
}

func TestConcurrencyBound(t *testing.T) {
	const n = 3
	h := New(Options{Params: cheap, MaxConcurrent: n, MaxWaiters: -1})
	ctx := context.Background()
	var releases []func()
	for i := range n {
		rel, err := h.Reserve(ctx)
		if err != nil {
			t.Fatalf("Reserve #%d = %v, want a slot", i, err)
		}
		releases = append(releases, rel)
	}
	if _, err := h.Hash(ctx, "password"); !errors.Is(err, ErrBusy) {
		t.Errorf("Hash with all slots taken and no waiters allowed = %v, want ErrBusy", err)
	}
	if _, err := h.Verify(ctx, "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$55PWTvddWPUD1GMbKxSff4ASfF85k9ibHJt4HlHQtBM", "x"); !errors.Is(err, ErrBusy) {
		t.Errorf("Verify with all slots taken = %v, want ErrBusy", err)
	}
	if err := h.DummyVerify(ctx, "password"); !errors.Is(err, ErrBusy) {
		t.Errorf("DummyVerify with all slots taken = %v, want ErrBusy", err)
	}
	releases[0]()
	releases[0]() // a second call is a no-op, not a second release
	if _, err := h.Hash(ctx, "password"); err != nil {
		t.Errorf("Hash after a release = %v, want nil", err)
	}
	if _, err := h.Reserve(ctx); err != nil {
		t.Errorf("Reserve after a release = %v", err)
	}
	if _, err := h.Reserve(ctx); !errors.Is(err, ErrBusy) {
		t.Errorf("Reserve beyond the bound (double release must not free two slots) = %v, want ErrBusy", err)
	}
}

func TestDefaultConcurrency(t *testing.T) {
	h := New(Options{Params: cheap, MaxWaiters: -1})
	if got, want := cap(h.sem), 2*runtime.GOMAXPROCS(0); got != want {
		t.Errorf("default MaxConcurrent = %d, want %d", got, want)
	}
}

func TestWaitThenBusy(t *testing.T) {
	const wait = 50 * time.Millisecond
	h := New(Options{Params: cheap, MaxConcurrent: 1, MaxWait: wait})
	ctx := context.Background()
	rel, _ := h.Reserve(ctx)
	start := time.Now()
	_, err := h.Hash(ctx, "password")
	if took := time.Since(start); !errors.Is(err, ErrBusy) || took < wait {
		t.Errorf("Hash while busy = %v after %v, want ErrBusy after at least %v", err, took, wait)
	}
	// A waiter gets the slot when it is released.
	done := make(chan error, 1)
	go func() {
		_, err := h.Hash(ctx, "password")
		done <- err
	}()
	rel()
	if err := <-done; err != nil {
		t.Errorf("waiting Hash = %v, want nil", err)
	}
}

func TestWaitersBounded(t *testing.T) {
	h := New(Options{Params: cheap, MaxConcurrent: 1, MaxWaiters: 1, MaxWait: 10 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rel, _ := h.Reserve(ctx)
	defer rel()
	var wg sync.WaitGroup
	wg.Add(1)
	waiterErr := make(chan error, 1)
	go func() {
		defer wg.Done()
		_, err := h.Reserve(ctx)
		waiterErr <- err
	}()
	// Wait until the first waiter is queued.
	for deadline := time.Now().Add(5 * time.Second); h.waiting.Load() != 1; {
		if time.Now().After(deadline) {
			t.Fatal("waiter never queued")
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	if _, err := h.Reserve(ctx); !errors.Is(err, ErrBusy) {
		t.Errorf("Reserve with the queue full = %v, want ErrBusy", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Reserve with the queue full took %v, want an immediate answer", took)
	}
	cancel()
	wg.Wait()
	if err := <-waiterErr; !errors.Is(err, context.Canceled) {
		t.Errorf("waiter after cancel = %v, want context.Canceled", err)
	}
}

func TestNewPanicsOnInvalidParams(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("New with invalid params did not panic")
		}
	}()
	New(Options{Params: Params{Memory: 1, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}})
}

// benchPassword is the password the benchmarks hash and verify.
const benchPassword = "correct horse battery staple"

func BenchmarkHash(b *testing.B) {
	h := New(Options{})
	runParallel(b, func(ctx context.Context) error {
		_, err := h.Hash(ctx, benchPassword)
		return err
	})
}

func BenchmarkVerify(b *testing.B) {
	h := New(Options{})
	enc, _ := h.Hash(context.Background(), benchPassword)
	runParallel(b, func(ctx context.Context) error {
		ok, err := h.Verify(ctx, enc, benchPassword)
		if err == nil && !ok {
			err = errors.New("Verify of the right password = false")
		}
		return err
	})
}

func BenchmarkDummyVerify(b *testing.B) {
	h := New(Options{})
	runParallel(b, func(ctx context.Context) error { return h.DummyVerify(ctx, benchPassword) })
}

// runParallel times op on every P in parallel (what a loaded server does),
// reporting allocations and failing the benchmark on an error.
func runParallel(b *testing.B, op func(context.Context) error) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := op(ctx); err != nil {
				b.Error(err)
			}
		}
	})
}
