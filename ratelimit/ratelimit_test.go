package ratelimit_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/journalsvc/journal/ratelimit"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in   string
		want ratelimit.Rate
		ok   bool
	}{
		{"100/1m", ratelimit.Rate{N: 100, Per: time.Minute}, true},
		{"5/1s", ratelimit.Rate{N: 5, Per: time.Second}, true},
		{" 2000/1h ", ratelimit.Rate{N: 2000, Per: time.Hour}, true},
		{"50000/24h", ratelimit.Rate{N: 50000, Per: 24 * time.Hour}, true},
		{"1/1500ms", ratelimit.Rate{N: 1, Per: 1500 * time.Millisecond}, true},
		{"off", ratelimit.Rate{}, false},
		{"0/1m", ratelimit.Rate{}, false},
		{"-1/1m", ratelimit.Rate{}, false},
		{"10/999ms", ratelimit.Rate{}, false},
		{"10/1m500us", ratelimit.Rate{}, false},
		{"10", ratelimit.Rate{}, false},
		{"x/1m", ratelimit.Rate{}, false},
		{"10/soon", ratelimit.Rate{}, false},
		{"100000000/24h", ratelimit.Rate{}, false}, // N*period(ms) > 2^52: not exact in Lua
	}
	for _, tc := range tests {
		got, err := ratelimit.ParseRate(tc.in)
		if tc.ok {
			if err != nil || got != tc.want {
				t.Errorf("ParseRate(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			if again, err := ratelimit.ParseRate(got.String()); err != nil || again != got {
				t.Errorf("ParseRate(%q.String()) = %v, %v; want a round trip", tc.in, again, err)
			}
			continue
		}
		if !errors.Is(err, ratelimit.ErrInvalid) {
			t.Errorf("ParseRate(%q) = %v, %v; want ErrInvalid", tc.in, got, err)
		}
	}
}

func TestParseAlgorithm(t *testing.T) {
	testEnum(t, ratelimit.ParseAlgorithm, []ratelimit.Algorithm{ratelimit.GCRA, ratelimit.Sliding, ratelimit.Fixed}, "leaky", ratelimit.GCRA)
	if got, want := ratelimit.Algorithm(7).String(), "algorithm(7)"; got != want {
		t.Errorf("Algorithm(7).String() = %q, want %q", got, want)
	}
}

func TestParseFailMode(t *testing.T) {
	testEnum(t, ratelimit.ParseFailMode, []ratelimit.FailMode{ratelimit.FailLocal, ratelimit.FailOpen, ratelimit.FailClosed}, "maybe", ratelimit.FailLocal)
	if got, want := ratelimit.FailMode(7).String(), "failmode(7)"; got != want {
		t.Errorf("FailMode(7).String() = %q, want %q", got, want)
	}
}

// testEnum checks an enumeration's parser: every value's name parses back to
// it whatever its case and surrounding space, bad is refused with
// ErrInvalid, and the zero value is def.
func testEnum[E interface {
	comparable
	fmt.Stringer
}](t *testing.T, parse func(string) (E, error), all []E, bad string, def E) {
	t.Helper()
	for _, v := range all {
		for _, s := range []string{v.String(), " " + strings.ToUpper(v.String()) + " "} {
			if got, err := parse(s); err != nil || got != v {
				t.Errorf("parse %T %q = %v, %v; want %v", v, s, got, err, v)
			}
		}
	}
	if got, err := parse(bad); !errors.Is(err, ratelimit.ErrInvalid) {
		t.Errorf("parse %T %q = %v, %v; want ErrInvalid", got, bad, got, err)
	}
	var zero E
	if zero != def {
		t.Errorf("the zero %T is %v, want %v", zero, zero, def)
	}
}

func TestPolicyValidate(t *testing.T) {
	ok := ratelimit.Policy{Name: "ip-hour", Rate: ratelimit.Rate{N: 100, Per: time.Minute}}
	tests := []struct {
		name string
		edit func(*ratelimit.Policy)
		ok   bool
	}{
		{"valid", func(*ratelimit.Policy) {}, true},
		{"burst", func(p *ratelimit.Policy) { p.Burst = 10 }, true},
		{"32 chars", func(p *ratelimit.Policy) { p.Name = strings.Repeat("a", 32) }, true},
		{"empty name", func(p *ratelimit.Policy) { p.Name = "" }, false},
		{"33 chars", func(p *ratelimit.Policy) { p.Name = strings.Repeat("a", 33) }, false},
		{"upper case", func(p *ratelimit.Policy) { p.Name = "IP" }, false},
		{"brace", func(p *ratelimit.Policy) { p.Name = "a}b" }, false},
		{"zero rate", func(p *ratelimit.Policy) { p.Rate = ratelimit.Rate{} }, false},
		{"negative burst", func(p *ratelimit.Policy) { p.Burst = -1 }, false},
		{"unknown algorithm", func(p *ratelimit.Policy) { p.Algorithm = 9 }, false},
		{"unknown fail mode", func(p *ratelimit.Policy) { p.Fail = 9 }, false},
		{"huge burst", func(p *ratelimit.Policy) { p.Burst = 1 << 40 }, false},
	}
	for _, tc := range tests {
		p := ok
		tc.edit(&p)
		err := p.Validate()
		if tc.ok && err != nil {
			t.Errorf("%s: Validate() = %v, want nil", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, ratelimit.ErrInvalid) {
			t.Errorf("%s: Validate() = %v, want ErrInvalid", tc.name, err)
		}
	}
}

func TestPolicyLimit(t *testing.T) {
	r := ratelimit.Rate{N: 100, Per: time.Minute}
	tests := []struct {
		p    ratelimit.Policy
		want int64
	}{
		{ratelimit.Policy{Rate: r}, 100},
		{ratelimit.Policy{Rate: r, Burst: 10}, 10},
		{ratelimit.Policy{Rate: r, Burst: 10, Algorithm: ratelimit.Sliding}, 100},
		{ratelimit.Policy{Rate: r, Algorithm: ratelimit.Fixed}, 100},
	}
	for _, tc := range tests {
		if got := tc.p.Limit(); got != tc.want {
			t.Errorf("%+v.Limit() = %d, want %d", tc.p, got, tc.want)
		}
	}
	if got, want := (ratelimit.Policy{Rate: ratelimit.Rate{N: 3, Per: time.Second}}).EmissionInterval(), 333334*time.Microsecond; got != want {
		t.Errorf("EmissionInterval of 3/1s = %v, want %v (rounded up)", got, want)
	}
}

func TestKey(t *testing.T) {
	tests := []struct {
		subject, want string
	}{
		{"ip:203.0.113.7", "journal:rl:{ip:203.0.113.7}:ip"},
		{"ip:2001:db8::/64", "journal:rl:{ip:2001:db8::/64}:ip"},
		{"user:0190b1c2-aaaa", "journal:rl:{user:0190b1c2-aaaa}:ip"},
	}
	for _, tc := range tests {
		if got := ratelimit.Key("journal:", tc.subject, "ip"); got != tc.want {
			t.Errorf("Key(%q) = %q, want %q", tc.subject, got, tc.want)
		}
	}
	// Subjects that could break the hash tag, or are long or odd, are hashed.
	for _, s := range []string{"", "a}b", "a{b", "{x}", "a b", "~7", "é", strings.Repeat("x", 129), "a\nb"} {
		k := ratelimit.Key("journal:", s, "ip")
		tag := tagOf(k)
		if k != "journal:rl:{"+tag+"}:ip" || len(tag) != 33 || tag[0] != '~' || strings.ContainsAny(tag, "{} ") {
			t.Errorf("Key(%q) = %q: want a hashed tag ~<32 hex>", s, k)
		}
		if strings.Count(k, "{") != 1 || strings.Count(k, "}") != 1 {
			t.Errorf("Key(%q) = %q: the hash tag is broken", s, k)
		}
	}
	if tagOf(ratelimit.Key("", "a}b", "p")) == tagOf(ratelimit.Key("", "a{b", "p")) {
		t.Error("different subjects hash to the same tag")
	}
	if got := tagOf(ratelimit.Key("", strings.Repeat("x", 128), "p")); got != strings.Repeat("x", 128) {
		t.Errorf("a 128-byte subject was hashed")
	}
}

// tagOf returns the hash tag of a key: what stands between its braces.
func tagOf(key string) string {
	_, rest, _ := strings.Cut(key, "{")
	tag, _, _ := strings.Cut(rest, "}")
	return tag
}

func TestDecisionViolated(t *testing.T) {
	p := func(name string, shadow bool) ratelimit.Item {
		return ratelimit.Item{Policy: ratelimit.Policy{Name: name, Shadow: shadow}}
	}
	items := []ratelimit.Item{p("a", false), p("b", false), p("c", true), p("d", false)}
	d := ratelimit.Decision{Results: []ratelimit.Result{
		{Allowed: true},
		{RetryAfter: 3 * time.Second},
		{RetryAfter: time.Hour},
		{RetryAfter: 7 * time.Second, Degraded: true},
	}}
	v := d.Violated(items)
	if len(v) != 2 || v[0].Name != "b" || v[1].Name != "d" {
		t.Errorf("Violated() = %+v, want b and d (not the shadow c)", v)
	}
	if !d.Degraded() {
		t.Error("Degraded() = false with a degraded result")
	}
}

func TestRateStringRoundTrips(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"100/1m", "5/1s", "2000/1h", "50000/24h", "7/1h30m", "3/1m30s", "9/2h0m5s"} {
		r, err := ratelimit.ParseRate(s)
		if err != nil {
			t.Fatalf("ParseRate(%q): %v", s, err)
		}
		back, err := ratelimit.ParseRate(r.String())
		if err != nil || back != r {
			t.Errorf("ParseRate(%q).String() = %q, which parses to %v, %v", s, r.String(), back, err)
		}
	}
	if got, want := (ratelimit.Rate{N: 2000, Per: time.Hour}).String(), "2000/1h"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if got, want := (ratelimit.Rate{N: 100, Per: time.Minute}).String(), "100/1m"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}
