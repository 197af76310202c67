// Command journal-load drives a running journal service (one instance or a
// cluster behind nginx, see deploy/cluster.sh) and proves what DESIGN.md
// sections 7 and 8 promise, with live progress, a summary table and an HTML
// report.
//
// Scenarios:
//
//	ratelimit  flood through the balancer as one client; count admitted vs
//	           429 per instance; admitted total vs the limit announced in
//	           RateLimit-Policy; Retry-After on every 429.
//	coherence  write on one instance (-instances), read at once on another:
//	           stale reads, invalidation lag, and token revocation lag.
//	mixed      a realistic read/write mix over a pool of users at -rate
//	           requests per second (open loop).
//	outage     mixed, charted second by second, while you kill or pause Redis.
//
// Usage:
//
//	journal-load -target http://127.0.0.1:8080 -scenario mixed -rate 200 -duration 30s -report mixed.html
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if errors.Is(err, errUsage) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "journal-load:", err)
		os.Exit(1)
	}
}

// errUsage reports invalid flags (exit status 2).
var errUsage = errors.New("journal-load: usage")

// errFailed reports a run that completed but whose checks failed (exit 1):
// failed requests in mixed/outage, a wrong admitted total in ratelimit,
// stale reads in coherence.
var errFailed = errors.New("journal-load: checks failed")

// config holds the flags.
type config struct {
	Target      string        // -target, default http://127.0.0.1:8080
	Scenario    string        // -scenario: ratelimit, coherence, mixed, outage
	Duration    time.Duration // -duration, default 10s
	Rate        float64       // -rate, requests per second for mixed/outage, default 100
	Concurrency int           // -concurrency, default 32
	Report      string        // -report FILE.html, "" for none
	JSON        string        // -json FILE, "" for none
	Instances   []string      // -instances, for coherence
	Users       int           // -users, mixed/outage pool size, default 20
	Requests    int           // -requests, ratelimit: stop after this many (0: at -duration)
	Pairs       int           // -pairs, coherence: write/read pairs, default 60
	Timeout     time.Duration // -timeout per request, default 10s
	FakeClients bool          // -fake-clients, default true
	Policy      string        // -policy, ratelimit: the policy whose limit is checked, default ip
	Check       bool          // -check: exit 1 when the scenario's checks fail
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	var instances string
	fs := flag.NewFlagSet("journal-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Target, "target", "http://127.0.0.1:8080", "base URL of the service or the load balancer")
	fs.StringVar(&c.Scenario, "scenario", "mixed", "ratelimit, coherence, mixed or outage")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "how long to run (coherence: upper bound)")
	fs.Float64Var(&c.Rate, "rate", 100, "target requests per second (mixed, outage)")
	fs.IntVar(&c.Concurrency, "concurrency", 32, "concurrent requests at most")
	fs.StringVar(&c.Report, "report", "", "write a self-contained HTML report to this file")
	fs.StringVar(&c.JSON, "json", "", "write the summary as JSON to this file")
	fs.StringVar(&instances, "instances", "", "comma-separated direct URLs of the instances (coherence: write on one, read on another)")
	fs.IntVar(&c.Users, "users", 20, "users in the pool (mixed, outage)")
	fs.IntVar(&c.Requests, "requests", 0, "ratelimit: stop after this many requests (0: run for -duration)")
	fs.IntVar(&c.Pairs, "pairs", 60, "coherence: write-then-read pairs")
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Second, "timeout of one request")
	fs.BoolVar(&c.FakeClients, "fake-clients", true, "send X-Forwarded-For with made-up client addresses (198.18.0.0/15) so each run and user is its own rate-limit subject behind a trusted proxy")
	fs.StringVar(&c.Policy, "policy", "ip", "ratelimit: the RateLimit-Policy member whose limit the admitted count is checked against")
	fs.BoolVar(&c.Check, "check", false, "exit 1 when the scenario's checks fail (failed requests, inexact limit, stale reads)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: journal-load [flags]\n\nDrives a journal service and reports rates, errors and latency.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, errUsage
	}
	bad := func(format string, a ...any) (config, error) {
		fmt.Fprintf(stderr, "journal-load: "+format+"\n", a...)
		return c, errUsage
	}
	if fs.NArg() > 0 {
		return bad("unexpected argument %q", fs.Arg(0))
	}
	switch c.Scenario {
	case "ratelimit", "coherence", "mixed", "outage":
	default:
		return bad("-scenario %q: want ratelimit, coherence, mixed or outage", c.Scenario)
	}
	if !strings.HasPrefix(c.Target, "http://") && !strings.HasPrefix(c.Target, "https://") {
		return bad("-target %q: want an http:// URL", c.Target)
	}
	c.Target = strings.TrimRight(c.Target, "/")
	for _, u := range strings.Split(instances, ",") {
		if u = strings.TrimSpace(u); u != "" {
			c.Instances = append(c.Instances, strings.TrimRight(u, "/"))
		}
	}
	switch {
	case c.Duration <= 0:
		return bad("-duration must be positive")
	case c.Rate <= 0:
		return bad("-rate must be positive")
	case c.Concurrency < 1:
		return bad("-concurrency must be at least 1")
	case c.Users < 1:
		return bad("-users must be at least 1")
	case c.Pairs < 1:
		return bad("-pairs must be at least 1")
	case c.Requests < 0:
		return bad("-requests must not be negative")
	}
	return c, nil
}

// run parses args, runs the scenario, prints the summary to stdout and the
// progress to stderr, and writes the report and JSON files.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	a := newAPI(cfg.Concurrency+8, cfg.Timeout)
	start := time.Now()
	// Floods and coherence runs last a few seconds: chart them in tenths.
	width := time.Second
	if cfg.Scenario == "ratelimit" || cfg.Scenario == "coherence" {
		width = 100 * time.Millisecond
	}
	rec := newRecorder(start, width)
	prog := newProgress(stderr, rec, cfg)
	s := &summary{Scenario: cfg.Scenario, Target: cfg.Target, Started: start.UTC()}
	s.Params = params(cfg)

	var runErr error
	switch cfg.Scenario {
	case "ratelimit":
		s.Ratelimit, runErr = runRatelimit(ctx, cfg, a, rec, prog)
	case "coherence":
		s.Coherence, runErr = runCoherence(ctx, cfg, a, rec, prog)
	case "mixed", "outage":
		s.Paced, runErr = runMixed(ctx, cfg, a, rec, prog)
	}
	prog.Stop()
	s.fill(rec, time.Since(rec.Start()))
	if runErr != nil && s.Requests == 0 {
		return runErr
	}
	if runErr != nil {
		s.Notes = append(s.Notes, "stopped early: "+runErr.Error())
	}
	s.check()
	s.WriteTable(stdout)
	if cfg.JSON != "" {
		b, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(cfg.JSON, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if cfg.Report != "" {
		if err := writeReport(cfg.Report, s, rec.timeline()); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "journal-load: report written to %s\n", cfg.Report)
	}
	if runErr != nil {
		return runErr
	}
	if cfg.Check && !s.OK {
		return fmt.Errorf("%w: %s", errFailed, strings.Join(s.Problems, "; "))
	}
	return nil
}

// params lists the run's parameters for the report, in display order.
func params(c config) []param {
	ps := []param{{"scenario", c.Scenario}, {"target", c.Target}}
	switch c.Scenario {
	case "ratelimit":
		ps = append(ps, param{"duration", c.Duration.String()}, param{"concurrency", fmt.Sprint(c.Concurrency)},
			param{"requests", fmt.Sprint(c.Requests)}, param{"policy", c.Policy})
	case "coherence":
		ps = append(ps, param{"instances", strings.Join(c.Instances, ", ")}, param{"pairs", fmt.Sprint(c.Pairs)},
			param{"duration (bound)", c.Duration.String()})
	default:
		ps = append(ps, param{"duration", c.Duration.String()}, param{"rate", fmt.Sprintf("%g/s", c.Rate)},
			param{"concurrency", fmt.Sprint(c.Concurrency)}, param{"users", fmt.Sprint(c.Users)})
	}
	ps = append(ps, param{"fake clients", fmt.Sprint(c.FakeClients)}, param{"timeout", c.Timeout.String()})
	return ps
}
