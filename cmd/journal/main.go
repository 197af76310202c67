// Command journal serves the journal REST API: users, bearer tokens and
// journal entries over JSON, with health, readiness and Prometheus metrics.
//
// Configuration comes from JOURNAL_* environment variables and the flags of
// the same names (journal -h lists them all with their defaults). With no
// configuration it serves on :8080 with a SQLite file journal.db.
//
// Exit status: 0 after a clean shutdown (SIGINT or SIGTERM) or -h; 2 for an
// invalid configuration (one line on stderr naming the setting); 1 for any
// other error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/journalsvc/journal/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default behaviour so that a
		// second one ends a shutdown that hangs.
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(report(err, os.Stderr))
}

// report writes err (if any) as one line "journal: ..." to w and returns the
// exit status for it: 0 for nil, 2 for a configuration or command-line error,
// 1 otherwise.
func report(err error, w io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(w, "journal: %v\n", err)
	return exitCode(err)
}

// exitCode maps the error run returned to the process exit status.
func exitCode(err error) int {
	var ce *config.Error
	var ue *config.UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ce), errors.As(err, &ue):
		return 2
	default:
		return 1
	}
}
