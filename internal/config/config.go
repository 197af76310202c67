// Package config reads the configuration of the journal service
// (docs/design.md, "Configuration"): the JOURNAL_* settings, each an
// environment variable JOURNAL_X and a flag -x, and the OpenTelemetry
// settings of the standard OTEL_* variables (package tracing).
//
// One table defines the JOURNAL_* settings: [Parse] reads it, [Usage] prints
// it, and the tests hold the README's table equal to it. Parse returns a
// [Config] that is fully validated, so the command only consumes it, or an
// error that names the first invalid setting ([*Error]) or the bad command
// line ([*UsageError]). [Config.Policies] turns the rate-limit settings and
// the optional policy file into the policies the HTTP API applies.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/journalsvc/journal/internal/redisconn"
	"github.com/journalsvc/journal/internal/tracing"
	"github.com/journalsvc/journal/ratelimit"
)

// Config is the whole configuration of the service. Every field but Tracing
// is set from an environment variable JOURNAL_X or the flag -x of the same
// name in lower case without the prefix; a flag beats the variable, the
// variable beats the default. An environment variable set to the empty string
// counts as unset. [Parse] returns a Config that is fully validated.
type Config struct {
	// Addr is the TCP listen address (JOURNAL_ADDR). Default ":8080".
	Addr string
	// OpsAddr, when not empty, is the TCP listen address of the operations
	// listener (JOURNAL_OPS_ADDR): /metrics, /livez and /readyz are served
	// there only, and Addr answers them 404. Default "" (all on Addr).
	OpsAddr string

	// Database is the parsed JOURNAL_DATABASE_URL: "sqlite:PATH" or
	// "postgres://..." / "postgresql://...". Default "sqlite:journal.db".
	Database DatabaseURL
	// DatabaseMaxConns is the PostgreSQL pool size
	// (JOURNAL_DATABASE_MAX_CONNS), at least 1. Default 16.
	DatabaseMaxConns int

	// Redis is the parsed JOURNAL_REDIS_URL, or nil when it is empty (the
	// default): the rate limiter and the cache then live in process, which is
	// correct for a single instance only.
	Redis *redisconn.URL
	// RedisPrefix prefixes every key the service writes
	// (JOURNAL_REDIS_PREFIX): 1-64 printable characters without spaces or
	// braces (braces would break the hash tags). Default "journal:".
	RedisPrefix string
	// RedisTimeout is the total time one request may wait on Redis, all calls
	// together (JOURNAL_REDIS_TIMEOUT), more than 0. Default 50ms.
	RedisTimeout time.Duration

	// RateLimitIP is the per-client-IP rate (JOURNAL_RATE_LIMIT_IP). The zero
	// Rate means "off". Default 100/1m.
	RateLimitIP ratelimit.Rate
	// RateLimitUser is the per-authenticated-user rate
	// (JOURNAL_RATE_LIMIT_USER); zero means "off". Default 1000/1h.
	RateLimitUser ratelimit.Rate
	// RateLimitLogin is the per (client IP, username) rate of POST /v1/tokens
	// (JOURNAL_RATE_LIMIT_LOGIN); it fails closed; zero means "off".
	// Default 10/1m.
	RateLimitLogin ratelimit.Rate
	// RateLimitLoginAccount is the rate of failed password checks per
	// username from any address (JOURNAL_RATE_LIMIT_LOGIN_ACCOUNT); it fails
	// closed; zero means "off". Default 100/1h.
	RateLimitLoginAccount ratelimit.Rate
	// RateLimitSignup is the per-client-IP rate of POST /v1/users
	// (JOURNAL_RATE_LIMIT_SIGNUP); zero means "off". Default 10/1h.
	RateLimitSignup ratelimit.Rate
	// RateLimitLease is the longest an instance holds quota it took ahead for
	// the ip and user policies (JOURNAL_RATE_LIMIT_LEASE), 0 or more; 0
	// decides every request in Redis. Used only with Redis. Default 1s.
	RateLimitLease time.Duration
	// RateLimitAlgorithm is the algorithm of the policies above and the
	// default of the policy file's (JOURNAL_RATE_LIMIT_ALGORITHM): gcra,
	// sliding or fixed. Default gcra.
	RateLimitAlgorithm ratelimit.Algorithm
	// RateLimitPolicies is the path of an optional YAML policy file
	// (JOURNAL_RATE_LIMIT_POLICIES, package policyfile). [Parse] checks that
	// it is a readable regular file; [Config.Policies] reads and validates
	// its content. Default "" (none).
	RateLimitPolicies string
	// TrustedProxies are the prefixes whose forwarding headers are believed
	// (JOURNAL_TRUSTED_PROXIES: comma-separated CIDRs or bare addresses), none
	// wider than /8 (IPv4) or /32 (IPv6) nor covering the IPv4-mapped range.
	// Default none.
	TrustedProxies []netip.Prefix

	// CacheTTL is the TTL of cached entries and pages in Redis
	// (JOURNAL_CACHE_TTL), more than 0. Default 5m.
	CacheTTL time.Duration
	// CacheNearMaxAge is the longest a near-cache copy is served without
	// Redis confirming it (JOURNAL_CACHE_NEAR_MAX_AGE), more than 0.
	// Default 30s.
	CacheNearMaxAge time.Duration

	// TokenTTL is the lifetime of a bearer token (JOURNAL_TOKEN_TTL), more
	// than 0. Default 720h.
	TokenTTL time.Duration
	// IdempotencyTTL is how long the response to a POST /v1/entries with an
	// Idempotency-Key is remembered and replayed (JOURNAL_IDEMPOTENCY_TTL),
	// more than 0. Default 24h.
	IdempotencyTTL time.Duration

	// ShutdownDrain is the time between readiness turning 503 and the
	// listener closing (JOURNAL_SHUTDOWN_DRAIN), 0 or more. Default 5s.
	ShutdownDrain time.Duration
	// ShutdownTimeout bounds the wait for in-flight requests after the
	// listener closed (JOURNAL_SHUTDOWN_TIMEOUT), more than 0. Default 30s.
	ShutdownTimeout time.Duration

	// InstanceID names this instance in the X-Instance header and the logs
	// (JOURNAL_INSTANCE_ID): 1-128 printable ASCII characters without spaces.
	// Default "": the service then uses hostname:port of its actual
	// listener, which only exists once it listens.
	InstanceID string
	// LogLevel is the minimum level logged (JOURNAL_LOG_LEVEL): debug, info,
	// warn or error. Default info.
	LogLevel slog.Level

	// Tracing is read from the standard OTEL_* variables, not from a
	// JOURNAL_ setting (package tracing). Default off.
	Tracing tracing.Config
}

// DatabaseURL is a parsed JOURNAL_DATABASE_URL. Exactly one of SQLitePath
// and PostgresURL is set.
type DatabaseURL struct {
	// SQLitePath is the file of "sqlite:PATH".
	SQLitePath string
	// PostgresURL is the whole "postgres://..." or "postgresql://..." URL.
	PostgresURL string
}

// String returns the URL with any password redacted, safe to log.
func (d DatabaseURL) String() string {
	if d.SQLitePath != "" {
		return "sqlite:" + d.SQLitePath
	}
	u, err := url.Parse(d.PostgresURL)
	if err != nil {
		return "postgres://(unparsable)"
	}
	return u.Redacted()
}

// Error reports an invalid setting; the command exits with status 2 for it.
type Error struct {
	// Setting is the variable (JOURNAL_X) or the flag (-x) that carried the
	// value, whichever won.
	Setting string
	// Value is the rejected value, with any password redacted.
	Value string
	// Want says what is accepted.
	Want string
}

// Error returns one line naming the setting, e.g.
// invalid JOURNAL_RATE_LIMIT_IP "abc": want N/DURATION like 100/1m or off.
func (e *Error) Error() string {
	return fmt.Sprintf("invalid %s %q: %s", e.Setting, e.Value, e.Want)
}

// UsageError reports bad command-line syntax (an unknown flag, a stray
// argument); the command exits with status 2 for it.
type UsageError struct{ msg string }

// Error returns the problem and where to find the settings.
func (e *UsageError) Error() string { return e.msg + " (run journal -h for the settings)" }

// Parse builds the Config from the command-line args (without the program
// name) and the environment, as read by getenv. It returns [flag.ErrHelp] for
// -h or -help (the caller prints [Usage]), an [*Error] naming the first
// invalid setting, with any password of its value redacted, or a
// [*UsageError] for an unknown flag or a stray argument. The only thing
// Parse opens is the policy file, to check that it can be read.
func Parse(args []string, getenv func(string) string) (Config, error) {
	fs := flag.NewFlagSet("journal", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, usage printed by the caller
	vals := make([]*string, len(settings))
	for i, s := range settings {
		vals[i] = fs.String(s.flag(), s.def, s.usage)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Config{}, flag.ErrHelp
		}
		return Config{}, &UsageError{msg: err.Error()}
	}
	if fs.NArg() > 0 {
		return Config{}, &UsageError{msg: fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	fromFlag := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { fromFlag[f.Name] = true })

	var c Config
	for i, s := range settings {
		v, from := s.def, s.env()
		switch {
		case fromFlag[s.flag()]:
			v, from = *vals[i], "-"+s.flag()
		case getenv(s.env()) != "":
			v = getenv(s.env())
		}
		if err := s.set(&c, v); err != nil {
			shown := v
			if s.secret {
				shown = redact(v)
			}
			return Config{}, &Error{Setting: from, Value: shown, Want: err.Error()}
		}
	}
	tc, err := tracing.FromEnv(getenv)
	if te := (*tracing.ConfigError)(nil); errors.As(err, &te) {
		return Config{}, &Error{Setting: te.Variable, Value: te.Value, Want: te.Want}
	}
	c.Tracing = tc
	return c, err
}

// redact replaces the password of a URL-like value (scheme://user:pass@...)
// with "xxxxx". It works on values url.Parse rejects, such as cluster lists.
func redact(v string) string {
	scheme, rest, ok := strings.Cut(v, "://")
	if !ok {
		return v
	}
	auth, path, hasPath := strings.Cut(rest, "/")
	at := strings.LastIndexByte(auth, '@')
	if at < 0 {
		return v
	}
	user, _, hasPass := strings.Cut(auth[:at], ":")
	if !hasPass {
		return v
	}
	out := scheme + "://" + user + ":xxxxx" + auth[at:]
	if hasPath {
		out += "/" + path
	}
	return out
}

// Usage writes the -h text: every setting with its flag, variable and
// default.
func Usage(w io.Writer) {
	fmt.Fprint(w, `Usage: journal [flags]

journal serves the journal REST API (docs/design.md). Every setting is a flag
or an environment variable; a flag beats the variable, the variable beats the
default. Rates are N/DURATION (N >= 1, DURATION >= 1s, burst N) or off.

OpenTelemetry traces are off unless the standard OTEL_EXPORTER_OTLP_ENDPOINT
(or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_TRACES_EXPORTER=otlp) is set;
they go out as OTLP over HTTP, and the other standard OTEL_* variables apply.

`)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FLAG\tVARIABLE\tDEFAULT\tMEANING")
	for _, s := range settings {
		def := s.def
		switch {
		case s.name == "INSTANCE_ID":
			def = "hostname:port"
		case def == "":
			def = `""`
		}
		fmt.Fprintf(tw, "-%s\t%s\t%s\t%s\n", s.flag(), s.env(), def, s.usage)
	}
	_ = tw.Flush()
}
