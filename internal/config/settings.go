package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/journalsvc/journal/internal/redisconn"
	"github.com/journalsvc/journal/ratelimit"
)

// setting describes one configuration setting; the settings table drives
// parsing, -h and the tests, so they cannot disagree.
type setting struct {
	name  string // suffix of the variable: JOURNAL_<name>
	def   string // default as a string ("" may mean none)
	usage string // one line for -h
	// set parses v into c. v is the empty string only when the default is
	// empty or a flag was explicitly set to "". Its error text says what is
	// wanted; Parse wraps it in an Error.
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
		if !printableASCII(v, "{}") {
			return errors.New("want printable ASCII without spaces or braces")
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
		if !printableASCII(v, "") {
			return errors.New("want printable ASCII without spaces")
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

// printableASCII reports whether v holds only printable ASCII characters
// other than the space and the bytes of banned.
func printableASCII(v, banned string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b <= ' ' || b >= 0x7f || strings.IndexByte(banned, b) >= 0 {
			return false
		}
	}
	return true
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
