package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/journalsvc/journal/internal/redisconn"
	"github.com/journalsvc/journal/internal/tracing"
	"github.com/journalsvc/journal/ratelimit"
)

// Config is the whole configuration of the service (docs/design.md, "Public
// contract"). Every
// field is set from an environment variable JOURNAL_X or the flag -x of the
// same name in lower case without the prefix; a flag beats the variable, the
// variable beats the default. An environment variable set to the empty string
// counts as unset. [parseConfig] returns a Config that is fully validated:
// wiring only consumes it.
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
	// (JOURNAL_RATE_LIMIT_POLICIES, package policyfile). parseConfig checks that
	// it is a readable regular file; its content is validated by the limiter
	// wiring. Default "" (none).
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
	// Default "" here, which run replaces with hostname:port of the actual
	// listener.
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

// ConfigError reports an invalid setting. It maps to exit status 2.
type ConfigError struct {
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
func (e *ConfigError) Error() string {
	return fmt.Sprintf("invalid %s %q: %s", e.Setting, e.Value, e.Want)
}

// usageError reports bad command-line syntax (an unknown flag, a stray
// argument). It maps to exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg + " (run journal -h for the settings)" }

// setting describes one configuration setting; the settings table drives
// parsing, -h and the tests, so they cannot disagree.
type setting struct {
	name  string // suffix of the variable: JOURNAL_<name>
	def   string // default as a string ("" may mean none)
	usage string // one line for -h
	// set parses v into c. v is the empty string only when the default is
	// empty or a flag was explicitly set to "". Its error text says what is
	// wanted; parseConfig wraps it in a ConfigError.
	set func(c *Config, v string) error
	// secret values are redacted in errors.
	secret bool
}

func (s setting) env() string  { return "JOURNAL_" + s.name }
func (s setting) flag() string { return strings.ToLower(strings.ReplaceAll(s.name, "_", "-")) }

// settings lists every setting of the service, in the order -h prints them.
// It is a read-only table.
var settings = []setting{
	{name: "ADDR", def: ":8080", usage: "listen address (host:port; port 0 picks a free one)", set: func(c *Config, v string) error {
		if err := checkListenAddr(v); err != nil {
			return err
		}
		c.Addr = v
		return nil
	}},
	{name: "OPS_ADDR", def: "", usage: "when set, /metrics, /livez and /readyz are served on this address only (host:port)", set: func(c *Config, v string) error {
		if v == "" {
			c.OpsAddr = ""
			return nil
		}
		if err := checkListenAddr(v); err != nil {
			return err
		}
		c.OpsAddr = v
		return nil
	}},
	{name: "DATABASE_URL", def: "sqlite:journal.db", usage: "sqlite:PATH or postgres://user:pass@host:port/db", secret: true, set: func(c *Config, v string) error {
		d, err := parseDatabaseURL(v)
		c.Database = d
		return err
	}},
	{name: "DATABASE_MAX_CONNS", def: "16", usage: "PostgreSQL pool size", set: func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return errors.New("want an integer from 1 to 10000")
		}
		c.DatabaseMaxConns = n
		return nil
	}},
	{name: "REDIS_URL", def: "", usage: "redis://[user:pass@]host:port[/db], rediss://... (TLS), redis://h1:p1,h2:p2,... (cluster); empty: in-process limiter and cache, single instance only", secret: true, set: func(c *Config, v string) error {
		if v == "" {
			c.Redis = nil
			return nil
		}
		r, err := redisconn.ParseURL(v)
		if err != nil {
			return err
		}
		c.Redis = &r
		return nil
	}},
	{name: "REDIS_PREFIX", def: "journal:", usage: "prefix of every Redis key the service writes", set: func(c *Config, v string) error {
		if v == "" || len(v) > 64 {
			return errors.New("want 1-64 characters")
		}
		for i := 0; i < len(v); i++ {
			if b := v[i]; b <= ' ' || b >= 0x7f || b == '{' || b == '}' {
				return errors.New("want printable ASCII without spaces or braces")
			}
		}
		c.RedisPrefix = v
		return nil
	}},
	{name: "REDIS_TIMEOUT", def: "50ms", usage: "total time one request may wait on Redis, all calls together", set: positiveDuration(func(c *Config) *time.Duration { return &c.RedisTimeout })},
	{name: "RATE_LIMIT_IP", def: "100/1m", usage: "per client IP (N/DURATION or off)", set: rateSetting(func(c *Config) *ratelimit.Rate { return &c.RateLimitIP })},
	{name: "RATE_LIMIT_USER", def: "1000/1h", usage: "per authenticated user (N/DURATION or off)", set: rateSetting(func(c *Config) *ratelimit.Rate { return &c.RateLimitUser })},
	{name: "RATE_LIMIT_LOGIN", def: "10/1m", usage: "per (client IP, username) on POST /v1/tokens, fails closed (N/DURATION or off)", set: rateSetting(func(c *Config) *ratelimit.Rate { return &c.RateLimitLogin })},
	{name: "RATE_LIMIT_LOGIN_ACCOUNT", def: "100/1h", usage: "failed password checks per username from any IP, fails closed (N/DURATION or off)", set: rateSetting(func(c *Config) *ratelimit.Rate { return &c.RateLimitLoginAccount })},
	{name: "RATE_LIMIT_SIGNUP", def: "10/1h", usage: "per client IP on POST /v1/users (N/DURATION or off)", set: rateSetting(func(c *Config) *ratelimit.Rate { return &c.RateLimitSignup })},
	{name: "RATE_LIMIT_LEASE", def: "1s", usage: "longest an instance holds ip and user quota it took ahead from Redis (0: every decision is a round trip)", set: nonNegativeDuration(func(c *Config) *time.Duration { return &c.RateLimitLease })},
	{name: "RATE_LIMIT_ALGORITHM", def: "gcra", usage: "gcra, sliding or fixed", set: func(c *Config, v string) error {
		a, err := ratelimit.ParseAlgorithm(v)
		if err != nil || strings.TrimSpace(v) != v {
			return errors.New("want gcra, sliding or fixed")
		}
		c.RateLimitAlgorithm = a
		return nil
	}},
	{name: "RATE_LIMIT_POLICIES", def: "", usage: "optional YAML file of rate-limit policies", set: func(c *Config, v string) error {
		c.RateLimitPolicies = v
		if v == "" {
			return nil
		}
		fi, err := os.Stat(v)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return errors.New("no such file")
		case err != nil:
			return fmt.Errorf("cannot read it: %v", errors.Unwrap(err))
		case !fi.Mode().IsRegular():
			return errors.New("not a regular file")
		}
		f, err := os.Open(v)
		if err != nil {
			return fmt.Errorf("cannot read it: %v", errors.Unwrap(err))
		}
		return f.Close()
	}},
	{name: "TRUSTED_PROXIES", def: "", usage: "comma-separated CIDRs whose forwarding headers are believed (none wider than /8 or, IPv6, /32)", set: func(c *Config, v string) error {
		p, err := parsePrefixes(v)
		c.TrustedProxies = p
		return err
	}},
	{name: "CACHE_TTL", def: "5m", usage: "TTL of cached entries and pages in Redis", set: positiveDuration(func(c *Config) *time.Duration { return &c.CacheTTL })},
	{name: "CACHE_NEAR_MAX_AGE", def: "30s", usage: "longest a near-cache copy is served without Redis confirming it", set: positiveDuration(func(c *Config) *time.Duration { return &c.CacheNearMaxAge })},
	{name: "TOKEN_TTL", def: "720h", usage: "lifetime of a bearer token", set: positiveDuration(func(c *Config) *time.Duration { return &c.TokenTTL })},
	{name: "IDEMPOTENCY_TTL", def: "24h", usage: "how long an Idempotency-Key of POST /v1/entries is remembered", set: positiveDuration(func(c *Config) *time.Duration { return &c.IdempotencyTTL })},
	{name: "SHUTDOWN_DRAIN", def: "5s", usage: "time between readiness going 503 and the listener closing", set: nonNegativeDuration(func(c *Config) *time.Duration { return &c.ShutdownDrain })},
	{name: "SHUTDOWN_TIMEOUT", def: "30s", usage: "upper bound for in-flight requests to finish", set: positiveDuration(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
	{name: "INSTANCE_ID", def: "", usage: "X-Instance response header and logs (default hostname:port of the listener)", set: func(c *Config, v string) error {
		if len(v) > 128 {
			return errors.New("want at most 128 characters")
		}
		for i := 0; i < len(v); i++ {
			if b := v[i]; b <= ' ' || b >= 0x7f {
				return errors.New("want printable ASCII without spaces")
			}
		}
		c.InstanceID = v
		return nil
	}},
	{name: "LOG_LEVEL", def: "info", usage: "debug, info, warn or error", set: func(c *Config, v string) error {
		switch v {
		case "debug":
			c.LogLevel = slog.LevelDebug
		case "info":
			c.LogLevel = slog.LevelInfo
		case "warn":
			c.LogLevel = slog.LevelWarn
		case "error":
			c.LogLevel = slog.LevelError
		default:
			return errors.New("want debug, info, warn or error")
		}
		return nil
	}},
}

// checkListenAddr accepts host:port with a port of 0-65535.
func checkListenAddr(v string) error {
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return errors.New("want host:port such as :8080 or 127.0.0.1:8080")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return errors.New("port must be 0-65535")
	}
	return nil
}

func positiveDuration(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return errors.New("want a positive duration such as 50ms, 30s or 720h")
		}
		*field(c) = d
		return nil
	}
}

func nonNegativeDuration(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return errors.New("want a duration of 0 or more, such as 1s")
		}
		*field(c) = d
		return nil
	}
}

func rateSetting(field func(*Config) *ratelimit.Rate) func(*Config, string) error {
	return func(c *Config, v string) error {
		if v == "off" {
			*field(c) = ratelimit.Rate{}
			return nil
		}
		r, err := ratelimit.ParseRate(v)
		if err != nil || strings.TrimSpace(v) != v {
			return errors.New("want N/DURATION like 100/1m (N >= 1, DURATION >= 1s) or off")
		}
		*field(c) = r
		return nil
	}
}

// parseDatabaseURL accepts sqlite:PATH (PATH not empty) and
// postgres://... or postgresql://... URLs with a host.
func parseDatabaseURL(v string) (DatabaseURL, error) {
	if path, ok := strings.CutPrefix(v, "sqlite:"); ok {
		if path == "" {
			return DatabaseURL{}, errors.New("want sqlite:PATH with a file path, such as sqlite:journal.db")
		}
		return DatabaseURL{SQLitePath: path}, nil
	}
	if strings.HasPrefix(v, "postgres://") || strings.HasPrefix(v, "postgresql://") {
		u, err := url.Parse(v)
		if err != nil || u.Host == "" {
			return DatabaseURL{}, errors.New("want a PostgreSQL URL such as postgres://user:pass@host:5432/db")
		}
		return DatabaseURL{PostgresURL: v}, nil
	}
	return DatabaseURL{}, errors.New("want sqlite:PATH or postgres://user:pass@host:port/db")
}

// parsePrefixes parses comma-separated CIDR prefixes and bare addresses
// (a bare address is its own /32 or /128). Empty is none. Host bits are
// masked and IPv4-mapped IPv6 prefixes are turned into IPv4. Over-broad
// prefixes are refused (see checkProxyWidth).
func parsePrefixes(v string) ([]netip.Prefix, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	var out []netip.Prefix
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		var p netip.Prefix
		var err error
		if strings.Contains(f, "/") {
			p, err = netip.ParsePrefix(f)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(f)
			if err == nil && a.Zone() != "" {
				err = errors.New("zone")
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR prefix such as 10.0.0.0/8 or an IP address", f)
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		p = p.Masked()
		if err := checkProxyWidth(f, p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// Widest trusted-proxy prefixes. A proxy tier is a few addresses; a prefix
// wider than these trusts clients, who would then choose their own
// rate-limit key with a forged X-Forwarded-For.
const (
	widestProxyBits4 = 8
	widestProxyBits6 = 32
)

// ipv4Mapped is ::ffff:0.0.0.0, the first address of the IPv4-mapped range
// ::ffff:0:0/96, which the client-IP logic reads as IPv4.
var ipv4Mapped = netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff})

// checkProxyWidth refuses p (masked, IPv4-mapped prefixes already turned into
// IPv4), given as f, when it is wider than /8 (IPv4) or /32 (IPv6), or when it
// covers the whole IPv4-mapped range and so would trust every IPv4 client.
func checkProxyWidth(f string, p netip.Prefix) error {
	const want = "want trusted proxies no wider than /%d (IPv4) or /%d (IPv6)"
	switch {
	case p.Addr().Is4() && p.Bits() < widestProxyBits4,
		p.Addr().Is6() && p.Bits() < widestProxyBits6:
		return fmt.Errorf("%q trusts too many addresses: "+want, f, widestProxyBits4, widestProxyBits6)
	case p.Addr().Is6() && p.Bits() <= 96 && p.Contains(ipv4Mapped):
		return fmt.Errorf("%q covers the IPv4-mapped range ::ffff:0:0/96 and so trusts every IPv4 client: "+want, f, widestProxyBits4, widestProxyBits6)
	}
	return nil
}

// parseConfig builds the Config from the command-line args (without the
// program name) and the environment, as read by getenv. It returns
// [flag.ErrHelp] for -h or -help (the caller prints [usage]), a *ConfigError
// naming the first invalid setting, or a *usageError for an unknown flag or a
// stray argument.
func parseConfig(args []string, getenv func(string) string) (Config, error) {
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
		return Config{}, &usageError{msg: err.Error()}
	}
	if fs.NArg() > 0 {
		return Config{}, &usageError{msg: fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
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
			return Config{}, &ConfigError{Setting: from, Value: shown, Want: err.Error()}
		}
	}
	tc, err := tracing.FromEnv(getenv)
	if te := (*tracing.ConfigError)(nil); errors.As(err, &te) {
		return Config{}, &ConfigError{Setting: te.Variable, Value: te.Value, Want: te.Want}
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

// usage writes the -h text: every setting with its flag, variable and
// default.
func usage(w io.Writer) {
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
