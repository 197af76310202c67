package tick_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/journalsvc/journal/internal/tick"
)

func TestEveryStopsWhenFnSaysSo(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		tick.Every(make(chan struct{}), time.Millisecond, func() bool { return calls.Add(1) < 3 })
	}()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("Every did not return after fn returned false")
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("fn ran %d times, want 3 (it returned false on the third)", n)
	}
}

func TestEveryStopsWhenDoneCloses(t *testing.T) {
	t.Parallel()
	done := make(chan struct{})
	var calls atomic.Int32
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		tick.Every(done, time.Millisecond, func() bool { calls.Add(1); return true })
	}()
	for calls.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	close(done)
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("Every did not return after done closed")
	}
}

func TestEveryWaitsOneIntervalFirst(t *testing.T) {
	t.Parallel()
	done := make(chan struct{})
	defer close(done)
	var calls atomic.Int32
	go tick.Every(done, time.Hour, func() bool { calls.Add(1); return true })
	time.Sleep(20 * time.Millisecond)
	if n := calls.Load(); n != 0 {
		t.Fatalf("fn ran %d times before the first interval ended", n)
	}
}
