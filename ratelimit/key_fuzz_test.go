package ratelimit_test

import (
	"strings"
	"testing"

	"github.com/journalsvc/journal/ratelimit"
)

// FuzzKey: whatever the subject (user-controlled: an address, a username's
// hash, a user id), Key yields one well-formed Redis Cluster hash tag that
// holds no brace, CR or LF, and two different subjects never share a tag.
func FuzzKey(f *testing.F) {
	for _, s := range []string{
		"ip:203.0.113.7", "ip:2001:db8::/64", "user:0190b1c2-aaaa", "", "a}b", "a{b", "{x}", "}{",
		"a b", "~7", "~" + strings.Repeat("0", 32), "é", "a\nb", "a\r\nb", "\x00", strings.Repeat("x", 128), strings.Repeat("x", 129),
	} {
		f.Add(s, "ip:203.0.113.7")
		f.Add(s, s+"x")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ka := ratelimit.Key("journal:", a, "ip")
		tag, ok := hashTag(ka)
		if !ok || ka != "journal:rl:{"+tag+"}:ip" {
			t.Fatalf("Key(%q) = %q: not prefix + rl:{tag}:policy", a, ka)
		}
		if tag == "" || strings.ContainsAny(tag, "{}\r\n") {
			t.Fatalf("Key(%q) = %q: tag %q is empty or holds a brace, CR or LF", a, ka, tag)
		}
		if strings.HasPrefix(tag, "~") != (tag != a) {
			t.Fatalf("Key(%q): tag %q: a hashed tag must start with ~ and a verbatim one must not", a, tag)
		}
		if a == b {
			return
		}
		if tb, _ := hashTag(ratelimit.Key("journal:", b, "ip")); tb == tag {
			t.Fatalf("subjects %q and %q share the tag %q", a, b, tag)
		}
	})
}

// hashTag returns what Redis Cluster hashes in key: the text between the
// first '{' and the first '}' after it, when that is not empty.
func hashTag(key string) (string, bool) {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return "", false
	}
	end := strings.IndexByte(key[open+1:], '}')
	if end <= 0 {
		return "", false
	}
	return key[open+1 : open+1+end], true
}
