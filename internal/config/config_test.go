package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/journalsvc/journal/internal/redisconn"
	"github.com/journalsvc/journal/ratelimit"
)

// env returns a getenv reading from m.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// policyFile writes content to a new file in a temporary directory of the
// test and returns its path, for JOURNAL_RATE_LIMIT_POLICIES.
func policyFile(tb testing.TB, content string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "policies.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

func TestParseDefaults(t *testing.T) {
	got, err := Parse(nil, env(nil))
	if err != nil {
		t.Fatalf("Parse(defaults) error: %v", err)
	}
	want := Config{
		Addr:                  ":8080",
		Database:              DatabaseURL{SQLitePath: "journal.db"},
		DatabaseMaxConns:      16,
		Redis:                 nil,
		RedisPrefix:           "journal:",
		RedisTimeout:          50 * time.Millisecond,
		RateLimitIP:           ratelimit.Rate{N: 100, Per: time.Minute},
		RateLimitUser:         ratelimit.Rate{N: 1000, Per: time.Hour},
		RateLimitLogin:        ratelimit.Rate{N: 10, Per: time.Minute},
		RateLimitLoginAccount: ratelimit.Rate{N: 100, Per: time.Hour},
		RateLimitSignup:       ratelimit.Rate{N: 10, Per: time.Hour},
		RateLimitLease:        time.Second,
		RateLimitAlgorithm:    ratelimit.GCRA,
		RateLimitPolicies:     "",
		TrustedProxies:        nil,
		CacheTTL:              5 * time.Minute,
		CacheNearMaxAge:       30 * time.Second,
		TokenTTL:              720 * time.Hour,
		IdempotencyTTL:        24 * time.Hour,
		ShutdownDrain:         5 * time.Second,
		ShutdownTimeout:       30 * time.Second,
		InstanceID:            "",
		LogLevel:              slog.LevelInfo,
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("Parse(defaults) mismatch (-want +got):\n%s", diff)
	}
}

// TestSettingsMatchREADME keeps the settings table equal to the README's
// configuration table: every setting, in order, with its flag and default.
func TestSettingsMatchREADME(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ env, flag, def string }
	var want []row
	for _, line := range strings.Split(string(readme), "\n") {
		if !strings.HasPrefix(line, "| `JOURNAL_") {
			continue
		}
		cells := strings.Split(line, "|")
		def := strings.Trim(strings.TrimSpace(cells[3]), "`")
		if def == "empty" || def == "hostname:port" {
			def = ""
		}
		want = append(want, row{strings.Trim(strings.TrimSpace(cells[1]), "`"), strings.Trim(strings.TrimSpace(cells[2]), "`-"), def})
	}
	var got []row
	for _, s := range settings {
		got = append(got, row{s.env(), s.flag(), s.def})
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(row{})); diff != "" {
		t.Errorf("settings (-README.md +code):\n%s", diff)
	}
}

func TestParseValid(t *testing.T) {
	policies := policyFile(t, "policies: []\n")
	pfx := func(s string) []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix(s)} }
	tests := []struct {
		name  string
		value string
		check func(c Config) any // returns the parsed field
		want  any
	}{
		{"ADDR", "127.0.0.1:0", func(c Config) any { return c.Addr }, "127.0.0.1:0"},
		{"ADDR", "[::1]:9000", func(c Config) any { return c.Addr }, "[::1]:9000"},
		{"OPS_ADDR", "127.0.0.1:9090", func(c Config) any { return c.OpsAddr }, "127.0.0.1:9090"},
		{"DATABASE_URL", "sqlite:/tmp/x.db", func(c Config) any { return c.Database }, DatabaseURL{SQLitePath: "/tmp/x.db"}},
		{"DATABASE_URL", "postgres://u:p@db:5432/j?sslmode=disable", func(c Config) any { return c.Database }, DatabaseURL{PostgresURL: "postgres://u:p@db:5432/j?sslmode=disable"}},
		{"DATABASE_URL", "postgresql://db/j", func(c Config) any { return c.Database }, DatabaseURL{PostgresURL: "postgresql://db/j"}},
		{"DATABASE_MAX_CONNS", "1", func(c Config) any { return c.DatabaseMaxConns }, 1},
		{"DATABASE_MAX_CONNS", "64", func(c Config) any { return c.DatabaseMaxConns }, 64},
		{"REDIS_URL", "redis://127.0.0.1:6379/2", func(c Config) any { return *c.Redis }, redisconn.URL{Addrs: []string{"127.0.0.1:6379"}, DB: 2}},
		{"REDIS_URL", "redis://a:1,b:2", func(c Config) any { return c.Redis.Cluster() }, true},
		{"REDIS_PREFIX", "app1:", func(c Config) any { return c.RedisPrefix }, "app1:"},
		{"REDIS_TIMEOUT", "250ms", func(c Config) any { return c.RedisTimeout }, 250 * time.Millisecond},
		{"RATE_LIMIT_IP", "5/1s", func(c Config) any { return c.RateLimitIP }, ratelimit.Rate{N: 5, Per: time.Second}},
		{"RATE_LIMIT_IP", "off", func(c Config) any { return c.RateLimitIP }, ratelimit.Rate{}},
		{"RATE_LIMIT_USER", "50000/24h", func(c Config) any { return c.RateLimitUser }, ratelimit.Rate{N: 50000, Per: 24 * time.Hour}},
		{"RATE_LIMIT_USER", "off", func(c Config) any { return c.RateLimitUser }, ratelimit.Rate{}},
		{"RATE_LIMIT_LOGIN", "3/1m", func(c Config) any { return c.RateLimitLogin }, ratelimit.Rate{N: 3, Per: time.Minute}},
		{"RATE_LIMIT_LOGIN", "off", func(c Config) any { return c.RateLimitLogin }, ratelimit.Rate{}},
		{"RATE_LIMIT_LOGIN_ACCOUNT", "5/1m", func(c Config) any { return c.RateLimitLoginAccount }, ratelimit.Rate{N: 5, Per: time.Minute}},
		{"RATE_LIMIT_LOGIN_ACCOUNT", "off", func(c Config) any { return c.RateLimitLoginAccount }, ratelimit.Rate{}},
		{"RATE_LIMIT_SIGNUP", "2000/1h", func(c Config) any { return c.RateLimitSignup }, ratelimit.Rate{N: 2000, Per: time.Hour}},
		{"RATE_LIMIT_SIGNUP", "off", func(c Config) any { return c.RateLimitSignup }, ratelimit.Rate{}},
		{"RATE_LIMIT_ALGORITHM", "sliding", func(c Config) any { return c.RateLimitAlgorithm }, ratelimit.Sliding},
		{"RATE_LIMIT_ALGORITHM", "fixed", func(c Config) any { return c.RateLimitAlgorithm }, ratelimit.Fixed},
		{"RATE_LIMIT_ALGORITHM", "gcra", func(c Config) any { return c.RateLimitAlgorithm }, ratelimit.GCRA},
		{"RATE_LIMIT_POLICIES", policies, func(c Config) any { return c.RateLimitPolicies }, policies},
		{"TRUSTED_PROXIES", "10.0.0.0/8", func(c Config) any { return c.TrustedProxies }, pfx("10.0.0.0/8")},
		{"TRUSTED_PROXIES", "10.1.2.3/8", func(c Config) any { return c.TrustedProxies }, pfx("10.0.0.0/8")},
		{"TRUSTED_PROXIES", "127.0.0.1", func(c Config) any { return c.TrustedProxies }, pfx("127.0.0.1/32")},
		{"TRUSTED_PROXIES", "::ffff:10.0.0.0/104", func(c Config) any { return c.TrustedProxies }, pfx("10.0.0.0/8")},
		{"TRUSTED_PROXIES", " 127.0.0.1/32 , fd00::/32", func(c Config) any { return c.TrustedProxies },
			[]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("fd00::/32")}},
		// The widest prefixes accepted, and a mapped one inside the limit.
		{"TRUSTED_PROXIES", "10.0.0.0/8,2001:db8::/32,::ffff:192.168.0.0/104", func(c Config) any { return c.TrustedProxies },
			[]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("192.0.0.0/8")}},
		{"TRUSTED_PROXIES", "::/96", func(c Config) any { return c.TrustedProxies }, pfx("::/96")},
		{"CACHE_TTL", "1h", func(c Config) any { return c.CacheTTL }, time.Hour},
		{"CACHE_NEAR_MAX_AGE", "5s", func(c Config) any { return c.CacheNearMaxAge }, 5 * time.Second},
		{"TOKEN_TTL", "1h30m", func(c Config) any { return c.TokenTTL }, 90 * time.Minute},
		{"IDEMPOTENCY_TTL", "2h", func(c Config) any { return c.IdempotencyTTL }, 2 * time.Hour},
		{"SHUTDOWN_DRAIN", "0s", func(c Config) any { return c.ShutdownDrain }, time.Duration(0)},
		{"SHUTDOWN_DRAIN", "100ms", func(c Config) any { return c.ShutdownDrain }, 100 * time.Millisecond},
		{"SHUTDOWN_TIMEOUT", "2m", func(c Config) any { return c.ShutdownTimeout }, 2 * time.Minute},
		{"INSTANCE_ID", "web-7", func(c Config) any { return c.InstanceID }, "web-7"},
		{"LOG_LEVEL", "debug", func(c Config) any { return c.LogLevel }, slog.LevelDebug},
		{"LOG_LEVEL", "warn", func(c Config) any { return c.LogLevel }, slog.LevelWarn},
		{"LOG_LEVEL", "error", func(c Config) any { return c.LogLevel }, slog.LevelError},
	}
	opts := cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })
	for _, tt := range tests {
		s := lookupSetting(t, tt.name)
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			// From the environment.
			c, err := Parse(nil, env(map[string]string{s.env(): tt.value}))
			if err != nil {
				t.Fatalf("%s=%q: %v", s.env(), tt.value, err)
			}
			if diff := cmp.Diff(tt.want, tt.check(c), opts); diff != "" {
				t.Errorf("%s=%q (-want +got):\n%s", s.env(), tt.value, diff)
			}
			// From the flag, both spellings.
			for _, args := range [][]string{{"-" + s.flag(), tt.value}, {"--" + s.flag() + "=" + tt.value}} {
				c, err := Parse(args, env(nil))
				if err != nil {
					t.Fatalf("Parse(%q): %v", args, err)
				}
				if diff := cmp.Diff(tt.want, tt.check(c), opts); diff != "" {
					t.Errorf("Parse(%q) (-want +got):\n%s", args, diff)
				}
			}
		})
	}
}

// TestParsePrecedence checks flag > env > default for every setting,
// using two valid values per setting.
func TestParsePrecedence(t *testing.T) {
	p1, p2 := policyFile(t, ""), policyFile(t, "")
	values := map[string][2]string{ // env value, flag value
		"ADDR":                     {"127.0.0.1:1", "127.0.0.1:2"},
		"OPS_ADDR":                 {"127.0.0.1:3", "127.0.0.1:4"},
		"DATABASE_URL":             {"sqlite:a.db", "postgres://h/db"},
		"DATABASE_MAX_CONNS":       {"3", "4"},
		"REDIS_URL":                {"redis://a:1", "rediss://b:2"},
		"REDIS_PREFIX":             {"x:", "y:"},
		"REDIS_TIMEOUT":            {"1s", "2s"},
		"RATE_LIMIT_IP":            {"1/1s", "off"},
		"RATE_LIMIT_USER":          {"off", "2/1s"},
		"RATE_LIMIT_LOGIN":         {"3/1s", "4/1s"},
		"RATE_LIMIT_LOGIN_ACCOUNT": {"7/1s", "8/1s"},
		"RATE_LIMIT_SIGNUP":        {"5/1s", "6/1s"},
		"RATE_LIMIT_LEASE":         {"0s", "2s"},
		"RATE_LIMIT_ALGORITHM":     {"sliding", "fixed"},
		"RATE_LIMIT_POLICIES":      {p1, p2},
		"TRUSTED_PROXIES":          {"10.0.0.0/8", "192.168.0.0/16"},
		"CACHE_TTL":                {"1m", "2m"},
		"CACHE_NEAR_MAX_AGE":       {"1s", "2s"},
		"TOKEN_TTL":                {"1h", "2h"},
		"IDEMPOTENCY_TTL":          {"3h", "4h"},
		"SHUTDOWN_DRAIN":           {"1s", "0s"},
		"SHUTDOWN_TIMEOUT":         {"3s", "4s"},
		"INSTANCE_ID":              {"a", "b"},
		"LOG_LEVEL":                {"debug", "error"},
	}
	if len(values) != len(settings) {
		t.Fatalf("test covers %d settings, the table has %d", len(values), len(settings))
	}
	for _, s := range settings {
		v, ok := values[s.name]
		if !ok {
			t.Fatalf("no test values for %s", s.env())
		}
		t.Run(s.name, func(t *testing.T) {
			want := func(val string) Config {
				var c Config
				if err := s.set(&c, val); err != nil {
					t.Fatalf("set(%q): %v", val, err)
				}
				return c
			}
			def, err := Parse(nil, env(nil))
			if err != nil {
				t.Fatal(err)
			}
			fromEnv, err := Parse(nil, env(map[string]string{s.env(): v[0]}))
			if err != nil {
				t.Fatal(err)
			}
			both, err := Parse([]string{"-" + s.flag(), v[1]}, env(map[string]string{s.env(): v[0]}))
			if err != nil {
				t.Fatal(err)
			}
			emptyEnv, err := Parse(nil, env(map[string]string{s.env(): ""}))
			if err != nil {
				t.Fatal(err)
			}
			field := func(c Config) string { return fieldOf(c, s.name) }
			if got, want := field(fromEnv), fieldOf(want(v[0]), s.name); got != want {
				t.Errorf("env %s=%q: got %s, want %s", s.env(), v[0], got, want)
			}
			if got, want := field(both), fieldOf(want(v[1]), s.name); got != want {
				t.Errorf("flag -%s=%q with env %q: got %s, want the flag's %s", s.flag(), v[1], v[0], got, want)
			}
			if got, want := field(emptyEnv), field(def); got != want {
				t.Errorf("empty %s: got %s, want the default %s", s.env(), got, want)
			}
			if field(fromEnv) == field(def) || field(both) == field(fromEnv) {
				t.Errorf("test values for %s do not differ from the default or each other", s.env())
			}
		})
	}
}

// fieldOf renders the Config field a setting sets, for comparisons.
func fieldOf(c Config, name string) string {
	var v any
	switch name {
	case "ADDR":
		v = c.Addr
	case "DATABASE_URL":
		v = c.Database
	case "DATABASE_MAX_CONNS":
		v = c.DatabaseMaxConns
	case "REDIS_URL":
		if c.Redis != nil {
			v = *c.Redis
		}
	case "OPS_ADDR":
		v = c.OpsAddr
	case "REDIS_PREFIX":
		v = c.RedisPrefix
	case "REDIS_TIMEOUT":
		v = c.RedisTimeout
	case "RATE_LIMIT_IP":
		v = c.RateLimitIP
	case "RATE_LIMIT_USER":
		v = c.RateLimitUser
	case "RATE_LIMIT_LOGIN":
		v = c.RateLimitLogin
	case "RATE_LIMIT_LOGIN_ACCOUNT":
		v = c.RateLimitLoginAccount
	case "RATE_LIMIT_SIGNUP":
		v = c.RateLimitSignup
	case "RATE_LIMIT_LEASE":
		v = c.RateLimitLease
	case "RATE_LIMIT_ALGORITHM":
		v = c.RateLimitAlgorithm
	case "RATE_LIMIT_POLICIES":
		v = c.RateLimitPolicies
	case "TRUSTED_PROXIES":
		v = c.TrustedProxies
	case "CACHE_TTL":
		v = c.CacheTTL
	case "CACHE_NEAR_MAX_AGE":
		v = c.CacheNearMaxAge
	case "TOKEN_TTL":
		v = c.TokenTTL
	case "IDEMPOTENCY_TTL":
		v = c.IdempotencyTTL
	case "SHUTDOWN_DRAIN":
		v = c.ShutdownDrain
	case "SHUTDOWN_TIMEOUT":
		v = c.ShutdownTimeout
	case "INSTANCE_ID":
		v = c.InstanceID
	case "LOG_LEVEL":
		v = c.LogLevel
	default:
		panic("fieldOf: unknown setting " + name)
	}
	return fmt.Sprintf("%+v", v)
}

func lookupSetting(tb testing.TB, name string) setting {
	tb.Helper()
	for _, s := range settings {
		if s.name == name {
			return s
		}
	}
	tb.Fatalf("no setting %s", name)
	return setting{}
}

func TestParseInvalid(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, value string
		wantIn      string // substring of the reason
	}{
		{"ADDR", "8080", "want host:port"},
		{"ADDR", "localhost:http", "port must be 0-65535"},
		{"ADDR", ":70000", "port must be 0-65535"},
		{"OPS_ADDR", "9090", "want host:port"},
		{"OPS_ADDR", ":99999", "port must be 0-65535"},
		{"DATABASE_URL", "journal.db", "want sqlite:PATH or postgres://"},
		{"DATABASE_URL", "sqlite:", "want sqlite:PATH with a file path"},
		{"DATABASE_URL", "mysql://h/db", "want sqlite:PATH or postgres://"},
		{"DATABASE_URL", "postgres://", "want a PostgreSQL URL"},
		{"DATABASE_URL", "postgres://h:port/db", "want a PostgreSQL URL"},
		{"DATABASE_MAX_CONNS", "0", "want an integer from 1 to 10000"},
		{"DATABASE_MAX_CONNS", "-3", "want an integer from 1 to 10000"},
		{"DATABASE_MAX_CONNS", "many", "want an integer from 1 to 10000"},
		{"REDIS_URL", "localhost:6379", "want redis://"},
		{"REDIS_URL", "http://h:1", "want redis:// or rediss://"},
		{"REDIS_URL", "redis://a:1,b:2/1", "cannot be used with a cluster"},
		{"REDIS_PREFIX", "{journal}:", "without spaces or braces"},
		{"REDIS_PREFIX", "a b", "without spaces or braces"},
		{"REDIS_PREFIX", strings.Repeat("p", 65), "want 1-64 characters"},
		{"REDIS_TIMEOUT", "0s", "want a positive duration"},
		{"REDIS_TIMEOUT", "-1s", "want a positive duration"},
		{"REDIS_TIMEOUT", "50", "want a positive duration"},
		{"RATE_LIMIT_IP", "abc", "want N/DURATION like 100/1m"},
		{"RATE_LIMIT_IP", "0/1m", "want N/DURATION"},
		{"RATE_LIMIT_IP", "-1/1m", "want N/DURATION"},
		{"RATE_LIMIT_IP", "10/500ms", "want N/DURATION"},
		{"RATE_LIMIT_IP", "10/m", "want N/DURATION"},
		{"RATE_LIMIT_IP", "10", "want N/DURATION"},
		{"RATE_LIMIT_IP", "OFF", "want N/DURATION"},
		{"RATE_LIMIT_USER", "1.5/1h", "want N/DURATION"},
		{"RATE_LIMIT_LOGIN", "10/1m ", "want N/DURATION"},
		{"RATE_LIMIT_SIGNUP", "10 per hour", "want N/DURATION"},
		{"RATE_LIMIT_ALGORITHM", "leaky", "want gcra, sliding or fixed"},
		{"RATE_LIMIT_POLICIES", filepath.Join(dir, "missing.yaml"), "no such file"},
		{"RATE_LIMIT_POLICIES", dir, "not a regular file"},
		{"TRUSTED_PROXIES", "10.0.0.0/33", "not a CIDR prefix"},
		{"TRUSTED_PROXIES", "10.0.0.0/8,,", "not a CIDR prefix"},
		{"TRUSTED_PROXIES", "proxy.local", "not a CIDR prefix"},
		{"TRUSTED_PROXIES", "fe80::1%eth0", "not a CIDR prefix"},
		// Over-broad prefixes would trust clients.
		{"TRUSTED_PROXIES", "0.0.0.0/0", "trusts too many addresses: want trusted proxies no wider than /8 (IPv4) or /32 (IPv6)"},
		{"TRUSTED_PROXIES", "10.0.0.0/7", "trusts too many addresses"},
		{"TRUSTED_PROXIES", "127.0.0.1/32,128.0.0.0/1", "trusts too many addresses"},
		{"TRUSTED_PROXIES", "::/0", "trusts too many addresses"},
		{"TRUSTED_PROXIES", "2001:db8::/31", "trusts too many addresses"},
		{"TRUSTED_PROXIES", "::ffff:0:0/96", "trusts too many addresses"},
		{"TRUSTED_PROXIES", "::ffff:0.0.0.0/100", "trusts too many addresses"},
		{"TRUSTED_PROXIES", "::ffff:0:0/95", "covers the IPv4-mapped range"},
		{"TRUSTED_PROXIES", "::/64", "covers the IPv4-mapped range"},
		{"TRUSTED_PROXIES", "0:0:0:0:0:ffff::/80", "covers the IPv4-mapped range"},
		{"CACHE_TTL", "0", "want a positive duration"},
		{"CACHE_NEAR_MAX_AGE", "soon", "want a positive duration"},
		{"TOKEN_TTL", "30d", "want a positive duration"},
		{"IDEMPOTENCY_TTL", "0s", "want a positive duration"},
		{"SHUTDOWN_DRAIN", "-1s", "want a duration of 0 or more"},
		{"SHUTDOWN_DRAIN", "5", "want a duration of 0 or more"},
		{"SHUTDOWN_TIMEOUT", "0s", "want a positive duration"},
		{"INSTANCE_ID", "web 1", "printable ASCII without spaces"},
		{"INSTANCE_ID", "web\n1", "printable ASCII without spaces"},
		{"INSTANCE_ID", strings.Repeat("i", 129), "at most 128 characters"},
		{"LOG_LEVEL", "verbose", "want debug, info, warn or error"},
		{"LOG_LEVEL", "INFO", "want debug, info, warn or error"},
	}
	for _, tt := range tests {
		s := lookupSetting(t, tt.name)
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			for _, src := range []struct {
				args    []string
				env     map[string]string
				setting string
			}{
				{nil, map[string]string{s.env(): tt.value}, s.env()},
				{[]string{"-" + s.flag(), tt.value}, nil, "-" + s.flag()},
			} {
				_, err := Parse(src.args, env(src.env))
				var ce *Error
				if !errors.As(err, &ce) {
					t.Fatalf("Parse(%q, %v) error = %v, want a *Error", src.args, src.env, err)
				}
				if ce.Setting != src.setting || ce.Value != tt.value || !strings.Contains(ce.Want, tt.wantIn) {
					t.Errorf("error = %+v, want Setting %s, Value %q, Want containing %q", ce, src.setting, tt.value, tt.wantIn)
				}
				if msg := err.Error(); strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "invalid "+src.setting+" ") {
					t.Errorf("error %q is not one line starting with %q", msg, "invalid "+src.setting)
				}
			}
		})
	}
}

func TestParseMessage(t *testing.T) {
	_, err := Parse(nil, env(map[string]string{"JOURNAL_RATE_LIMIT_IP": "abc"}))
	want := `invalid JOURNAL_RATE_LIMIT_IP "abc": want N/DURATION like 100/1m (N >= 1, DURATION >= 1s) or off`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
}

// TestParseRedactsPasswords checks that an invalid URL is reported
// without its password.
func TestParseRedactsPasswords(t *testing.T) {
	tests := []struct{ name, value, want string }{
		{"REDIS_URL", "redis://u:hunter2@a:1,b:2/3", "redis://u:xxxxx@a:1,b:2/3"},
		{"DATABASE_URL", "postgres://u:hunter2@h:port/db", "postgres://u:xxxxx@h:port/db"},
	}
	for _, tt := range tests {
		s := lookupSetting(t, tt.name)
		_, err := Parse(nil, env(map[string]string{s.env(): tt.value}))
		if err == nil {
			t.Fatalf("%s=%q: no error", s.env(), tt.value)
		}
		if strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %q, want it to show %q and not the password", s.env(), err, tt.want)
		}
	}
}

func TestParseCommandLine(t *testing.T) {
	if _, err := Parse([]string{"-h"}, env(nil)); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("Parse(-h) = %v, want flag.ErrHelp", err)
	}
	if _, err := Parse([]string{"-help"}, env(nil)); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("Parse(-help) = %v, want flag.ErrHelp", err)
	}
	for _, args := range [][]string{{"-nope"}, {"serve"}, {"-addr"}, {"-addr", ":1", "extra"}} {
		_, err := Parse(args, env(nil))
		if ue := (*UsageError)(nil); !errors.As(err, &ue) {
			t.Errorf("Parse(%q) = %v, want a *UsageError", args, err)
		}
	}
}

func TestUsageListsEverySetting(t *testing.T) {
	var b bytes.Buffer
	Usage(&b)
	out := b.String()
	for _, s := range settings {
		var line string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "-"+s.flag()+" ") {
				line = l
			}
		}
		if line == "" {
			t.Errorf("usage has no line for -%s", s.flag())
			continue
		}
		def := s.def
		if def == "" {
			def = `""`
		}
		if s.name == "INSTANCE_ID" {
			def = "hostname:port"
		}
		if f := strings.Fields(line); len(f) < 3 || f[1] != s.env() || f[2] != def {
			t.Errorf("usage line %q: want variable %s and default %s", line, s.env(), def)
		}
	}
}
