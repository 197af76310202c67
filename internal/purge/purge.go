// Package purge runs the background job that deletes what has expired:
// revoked and expired tokens and expired idempotency records, so no table
// grows without bound. Every instance runs it; the database lets one purge
// run at a time across all of them (journal.Purger), so the others skip
// their turn.
package purge

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/journalsvc/journal"
)

// Options configure Run. The zero value gives the documented defaults.
type Options struct {
	// Interval is the time between purge rounds. Default 1m.
	Interval time.Duration
	// Batch bounds the rows of each kind one transaction deletes. Default
	// 1000.
	Batch int
	// Pause is the time between two batches of one round, so a large
	// backlog does not hold the database busy. Default 50ms.
	Pause time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives failures and the size of rounds that deleted rows.
	// Default: discard.
	Logger *slog.Logger
	// OnPurge, if set, is called with the number of rows each batch deleted.
	OnPurge func(n int)
}

// Run purges p every opts.Interval (the first round at once) until ctx
// ends: batches of opts.Batch until one deletes fewer, or another instance
// holds the purge. A failed batch ends the round; the next round tries
// again. Run returns when ctx is done.
func Run(ctx context.Context, p journal.Purger, opts Options) {
	if opts.Interval <= 0 {
		opts.Interval = time.Minute
	}
	if opts.Batch <= 0 {
		opts.Batch = 1000
	}
	if opts.Pause <= 0 {
		opts.Pause = 50 * time.Millisecond
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(opts.Interval)
	defer t.Stop()
	for {
		round(ctx, p, opts)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// batchTimeout bounds one batch.
const batchTimeout = 30 * time.Second

// round purges batches until one deletes fewer rows than a full batch.
func round(ctx context.Context, p journal.Purger, opts Options) {
	total := 0
	for {
		bctx, cancel := context.WithTimeout(ctx, batchTimeout)
		n, err := p.Purge(bctx, opts.Now(), opts.Batch)
		cancel()
		if n > 0 && opts.OnPurge != nil {
			opts.OnPurge(n)
		}
		total += n
		switch {
		case errors.Is(err, journal.ErrPurgeRunning) || ctx.Err() != nil:
			return
		case err != nil:
			opts.Logger.Warn("purge of expired tokens and idempotency records failed; next round in an interval", "err", err)
			return
		case n < opts.Batch:
			if total > 0 {
				opts.Logger.Info("purged expired and revoked tokens and expired idempotency records", "rows", total)
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(opts.Pause):
		}
	}
}
