// Command journal-load drives a running journal service (one instance, or a
// cluster behind nginx, see deploy/cluster.sh) and shows what it promises
// under load: exact rate limits across instances, coherent caches, no failed
// request across a rolling restart or a Redis outage. It prints live
// progress and a summary table, and writes an HTML report (-report) and the
// summary as JSON (-json).
//
// Before a scenario it probes how the target counts its requests: a target
// that ignores the made-up client addresses this tool sends in
// X-Forwarded-For (-fake-clients) counts every request against the tool's
// one address, and the tool then keeps its run within the target's ip
// limit, or stops with one line that says what to change on the target.
// journal-load -h lists the scenarios and what each needs the target to
// allow.
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
	UsersSet    bool          // -users was given
	Requests    int           // -requests, ratelimit: stop after this many (0: at -duration)
	Pairs       int           // -pairs, coherence: write/read pairs, default 60
	Timeout     time.Duration // -timeout per request, default 10s
	FakeClients bool          // -fake-clients, default true
	Policy      string        // -policy, ratelimit: the policy whose limit is checked, default ip
	Check       bool          // -check: exit 1 when the scenario's checks fail
	Seed        int64         // -seed, chaos: the workload's and the faults' randomness
	Faults      string        // -faults, chaos: the fault controller's URL, "" for none
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	var instances string
	fs := flag.NewFlagSet("journal-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Target, "target", "http://127.0.0.1:8080", "base URL of the service or the load balancer")
	fs.StringVar(&c.Scenario, "scenario", "mixed", "ratelimit, coherence, mixed, outage or chaos")
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
	fs.BoolVar(&c.FakeClients, "fake-clients", true, "send X-Forwarded-For with made-up client addresses (198.18.0.0/15) so each run and user is its own rate-limit subject behind a trusted proxy; off for the run when the target ignores them")
	fs.StringVar(&c.Policy, "policy", "ip", "ratelimit: the RateLimit-Policy member whose limit the admitted count is checked against")
	fs.Int64Var(&c.Seed, "seed", 1, "chaos: seed of the workload and the fault schedule")
	fs.StringVar(&c.Faults, "faults", "", "chaos: URL of the fault controller that owns Redis, PostgreSQL and the instances (see deploy/chaos_test.go); none: no faults")
	fs.BoolVar(&c.Check, "check", false, "exit 1 when the scenario's checks fail (failed requests, inexact limit, stale reads)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, errUsage
	}
	fs.Visit(func(f *flag.Flag) { c.UsersSet = c.UsersSet || f.Name == "users" })
	bad := func(format string, a ...any) (config, error) {
		fmt.Fprintf(stderr, "journal-load: "+format+"\n", a...)
		return c, errUsage
	}
	if fs.NArg() > 0 {
		return bad("unexpected argument %q", fs.Arg(0))
	}
	switch c.Scenario {
	case "ratelimit", "coherence", "mixed", "outage", "chaos":
	default:
		return bad("-scenario %q: want ratelimit, coherence, mixed, outage or chaos", c.Scenario)
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
	case c.Scenario == "chaos" && len(c.Instances) == 0:
		return bad("-scenario chaos needs -instances, the instances behind -target, to check each of them at the end")
	}
	return c, nil
}

// usageHead is the start of -h: the scenarios and what each needs the
// target to allow; the flags follow.
const usageHead = `Usage: journal-load [flags]

Drives a journal service and reports rates, errors and latency.

Scenarios (-scenario) and what the target must allow:

  mixed      The default: a read/write mix at -rate requests per second for
             -duration, over -users users, each request from its own made-up
             address (-fake-clients) so that only the user limit applies.
             Needs: -users sign-ups; for each user rate x duration / users
             requests under JOURNAL_RATE_LIMIT_USER; and a target that
             believes X-Forwarded-For from this tool (its address in
             JOURNAL_TRUSTED_PROXIES). A target that ignores the header (the
             service's default), or a balancer that replaces it
             (deploy/cluster.sh's nginx), counts every request against this
             tool's address: the tool then signs up one user (unless -users
             is given) and lowers -rate to what the ip limit leaves (at
             100/1m, about 9 requests/s for 10 s); raise
             JOURNAL_RATE_LIMIT_IP for more.
  outage     mixed, charted second by second while you stop, pause or kill
             Redis; it polls /readyz and marks on the charts when the
             service stopped and started answering "ready". Needs what mixed
             needs.
  ratelimit  One client floods GET /v1/entries until -requests or -duration;
             the admitted requests must be what the -policy limit had left
             when the flood began, plus what it gave back during the flood.
             Needs: one sign-up and more -requests than the limit. The flood
             starts with a whole quota when the target believes -fake-clients,
             else with what this tool's address has left.
  coherence  Writes on one of -instances and reads at once on the next:
             stale reads, invalidation and revocation lag. Needs: two or
             more instances reached directly, one sign-up, six logins a
             minute, and about 5 requests per pair and 22 more, each from
             its own made-up address when the instances believe
             -fake-clients; when they do not, the tool runs as many -pairs
             as the ip limit leaves this tool's address.
  chaos      A read/write mix through -target (the balancer) at -rate, one
             user per -concurrency worker, each worker connecting from its
             own 127/8 address, while the fault controller at -faults
             pauses Redis, restarts it empty, restarts PostgreSQL and kills
             an instance (a seeded schedule, -seed), and one simulated
             client per policy floods -instances. A ledger of every
             acknowledged write is checked by a read after each write and
             at the end on every instance: no lost write, no resurrected
             delete, no stale read, every flood within its policy's bound,
             5xx only of the kinds docs/design.md states, every instance
             ready within 5 s of each fault. Needs: -instances that believe
             X-Forwarded-For from this tool, a balancer that passes on the
             address it saw, limits that the workers' rate stays under.

Before the run the tool sends three requests to GET /v1/users/me to learn
whether the target believes its made-up addresses. When the set-up is
refused (429), it stops with one line that names the limit and the setting
to change.

Flags:
`

// run parses args, runs the scenario, prints the summary to stdout and the
// progress to stderr, and writes the report and JSON files.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	a := newAPI(cfg.Concurrency+8, cfg.Timeout)
	probeBase := cfg.Target
	if (cfg.Scenario == "coherence" || cfg.Scenario == "chaos") && len(cfg.Instances) > 0 {
		probeBase = cfg.Instances[0]
	}
	adr, err := probe(ctx, a, probeBase, newClientPool(cfg.FakeClients))
	if err != nil {
		return err
	}
	notes, err := plan(&cfg, adr)
	if err != nil {
		return err
	}
	start := time.Now()
	// Floods and coherence runs last a few seconds: chart them in tenths.
	width := time.Second
	if cfg.Scenario == "ratelimit" || cfg.Scenario == "coherence" {
		width = 100 * time.Millisecond
	}
	rec := newRecorder(start, width)
	prog := newProgress(stderr, rec, cfg, notes)
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
	case "chaos":
		s.Chaos, runErr = runChaos(ctx, cfg, a, rec, prog)
	}
	prog.Stop()
	s.fill(rec, time.Since(rec.Start()))
	s.Notes = append(s.Notes, notes...)
	runErr = advise(runErr, adr)
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
	case "chaos":
		ps = append(ps, param{"instances", strings.Join(c.Instances, ", ")}, param{"seed", fmt.Sprint(c.Seed)},
			param{"faults", c.Faults}, param{"duration", c.Duration.String()}, param{"rate", fmt.Sprintf("%g/s", c.Rate)},
			param{"workers", fmt.Sprint(c.Concurrency)})
	default:
		ps = append(ps, param{"duration", c.Duration.String()}, param{"rate", fmt.Sprintf("%g/s", c.Rate)},
			param{"concurrency", fmt.Sprint(c.Concurrency)}, param{"users", fmt.Sprint(c.Users)})
	}
	ps = append(ps, param{"fake clients", fmt.Sprint(c.FakeClients)}, param{"timeout", c.Timeout.String()})
	return ps
}
