package purge_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/internal/purge"
	"github.com/journalsvc/journal/internal/storetest"
	"github.com/journalsvc/journal/internal/testdb"
)

// TestRunPurgesInBatches: a backlog larger than a batch is purged in one
// round of several batches, and Run returns when its context ends.
func TestRunPurgesInBatches(t *testing.T) {
	t.Parallel()
	db := testdb.SQLite(t)
	ctx := context.Background()
	now := journal.StoredTime(time.Now())
	u := storetest.NewUser(t, db, "alice")
	live := journal.Token{Hash: journal.HashToken("live"), ID: journal.NewID(now), UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := db.CreateToken(ctx, live); err != nil {
		t.Fatal(err)
	}
	const dead = 25
	for i := range dead {
		tok := journal.Token{Hash: journal.HashToken(string(rune('a' + i))), ID: journal.NewID(now), UserID: u.ID,
			CreatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(-time.Minute)}
		if err := db.CreateToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	var batches []int
	var mu sync.Mutex
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		purge.Run(runCtx, db, purge.Options{Interval: time.Hour, Batch: 10, Pause: time.Millisecond, OnPurge: func(n int) {
			mu.Lock()
			batches = append(batches, n)
			mu.Unlock()
		}})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		sum := 0
		for _, n := range batches {
			sum += n
		}
		mu.Unlock()
		if sum == dead {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("purged %d of %d dead tokens within 10s (batches %v)", sum, dead, batches)
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(batches) != 3 || batches[0] != 10 || batches[1] != 10 || batches[2] != 5 {
		t.Errorf("batches = %v, want [10 10 5]", batches)
	}
	if _, err := db.TokenByHash(ctx, live.Hash); err != nil {
		t.Errorf("the live token was purged: %v", err)
	}
}

// busy is a Purger that another instance always holds.
type busy struct{ calls atomic.Int64 }

func (b *busy) Purge(context.Context, time.Time, int) (int, error) {
	b.calls.Add(1)
	return 0, journal.ErrPurgeRunning
}

// TestRunSkipsWhileAnotherPurges: a round that finds the purge held
// elsewhere makes one call and waits for the next interval.
func TestRunSkipsWhileAnotherPurges(t *testing.T) {
	t.Parallel()
	var b busy
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); purge.Run(ctx, &b, purge.Options{Interval: 50 * time.Millisecond}) }()
	time.Sleep(275 * time.Millisecond)
	stop()
	<-done
	// About 6 rounds of one call each; a loop that retried at once would
	// make thousands.
	if n := b.calls.Load(); n < 2 || n > 20 {
		t.Errorf("Purge was called %d times in about 6 intervals, want one call a round", n)
	}
}
