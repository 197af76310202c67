package redisconn

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseURL: JOURNAL_REDIS_URL is operator input and may hold a password.
// ParseURL never panics; its errors never repeat a password of the URL; what
// it accepts is a list of distinct host:port addresses with ports 1-65535
// (a database number only without a cluster), and String, the form that is
// logged, hides the password and parses back to the same servers.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"redis://127.0.0.1:6379", "redis://localhost", "redis://h:6380/3", "REDIS://h:1", "rediss://cache.example.com:6380",
		"redis://user:pass@h:1/2", "redis://:secret@h:1", "redis://u:p%40ss%3Aw@h:1", "redis://u:p@ss@h:1", "redis://[::1]:6379",
		"redis://[::1]", "redis://h1:7000,h2:7001,h3:7002", "redis://h1:7000, h2:7001", "rediss://u:p@h1:7000,h2:7001",
		"redis://a:1,b:2/1", "redis://h:0", "redis://h:65536", "redis://h:1,h:1", "redis://h:1?x=1", "redis://:pa/ss@h:1",
		"redis://us%3Aer:pw@h:1", "redis://h:1/-1", "redis://h:1/01", "http://h:1", "redis://", "redis://@", "redis://,",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURL(s)
		if err != nil {
			// The error may contain the password's text only as part of its
			// fixed wording: with every character of the password masked
			// but those that shape a URL, it must still contain it.
			pass, masked, ok := passwordOf(s, func(r rune) rune {
				if strings.ContainsRune("/?#@:", r) {
					return r
				}
				return '~'
			})
			if ok && len(pass) >= 4 && strings.Contains(err.Error(), pass) {
				_, other := ParseURL(masked)
				if other == nil || !strings.Contains(other.Error(), pass) {
					t.Fatalf("ParseURL(%q): error %q repeats the password %q", s, err, pass)
				}
			}
			return
		}
		if len(u.Addrs) == 0 || (u.Cluster() && u.DB != 0) || u.DB < 0 {
			t.Fatalf("ParseURL(%q) = %+v: want addresses, and a database number only without a cluster", s, u)
		}
		seen := map[string]bool{}
		for _, a := range u.Addrs {
			host, port, err := net.SplitHostPort(a)
			n, perr := strconv.Atoi(port)
			if err != nil || host == "" || perr != nil || n < 1 || n > 65535 || seen[a] {
				t.Fatalf("ParseURL(%q) = %+v: address %q is not a distinct host:port with a port 1-65535", s, u, a)
			}
			seen[a] = true
		}
		shown := u.String()
		// String must not depend on the password beyond its presence.
		if other := u; other.Password != "" {
			other.Password = "another password"
			if other.String() != shown {
				t.Fatalf("ParseURL(%q).String() = %q depends on the password (another gives %q)", s, shown, other.String())
			}
		}
		back, err := ParseURL(shown)
		if err != nil {
			t.Fatalf("ParseURL(%q).String() = %q does not parse: %v", s, shown, err)
		}
		if strings.Join(back.Addrs, ",") != strings.Join(u.Addrs, ",") || back.DB != u.DB || back.TLS != u.TLS || back.Username != u.Username {
			t.Fatalf("ParseURL(%q) = %+v, but its String %q parses to %+v", s, u, shown, back)
		}
	})
}

// passwordOf returns what a user of s means as its password, between the
// user name and the last '@' (a Redis URL has no '@' after its userinfo,
// so one after a '/' means the password holds a '/'), and s with mask
// applied to it: ok is false when s has no password.
func passwordOf(s string, mask func(rune) rune) (pass, masked string, ok bool) {
	i := strings.Index(s, "://")
	if i < 0 {
		return "", "", false
	}
	start := i + len("://")
	at := strings.LastIndexByte(s[start:], '@')
	if at < 0 {
		return "", "", false
	}
	colon := strings.IndexByte(s[start:start+at], ':')
	if colon < 0 {
		return "", "", false
	}
	from, to := start+colon+1, start+at
	return s[from:to], s[:from] + strings.Map(mask, s[from:to]) + s[to:], true
}
