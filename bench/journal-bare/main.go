// Command journal-bare is the baseline of the full-stack benchmark
// (bench/fullstack.sh; the goal is in docs/design.md, "Numbers"): a bare
// net/http server that answers every request with one fixed response, the
// same status, headers and body bytes as a cached GET /v1/entries/{id} of the
// journal service, and does nothing else.
//
// It reads the response to replay from a file in the format `curl -si`
// prints (status line, headers, blank line, body):
//
//	journal-bare -addr 127.0.0.1:18081 -response get.http
//
// net/http adds Date itself, so a Date header in the file is not copied; the
// header count on the wire is thus the same as the recorded response's.
// The first line on stderr is "listening ADDR" with the actual address.
//
// `journal-bare pace` is the paced client of the same benchmark (wrk cannot
// pace and Debian has no wrk2): see runPace.
//
//	journal-bare pace -url http://127.0.0.1:18080/v1/entries/ID -rate 3000 -duration 10s -c 64 -H "Authorization: Bearer TOKEN"
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	run := run
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "pace" {
		run, args = runPace, args[1:]
	}
	if err := run(ctx, args, os.Stdout, os.Stderr); err != nil {
		os.Stderr.WriteString("journal-bare: " + err.Error() + "\n")
		os.Exit(1)
	}
}
