package main

import (
	"context"
	"errors"
	"flag"
	"io"
)

// run is the whole program: it parses the configuration and serves until ctx
// is cancelled. See the package documentation for the exit statuses.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	_, err := parseConfig(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		usage(stdout)
		return nil
	}
	return err
}
