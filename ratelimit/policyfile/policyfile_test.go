package policyfile_test

import (
	"strings"
	"testing"
	"time"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/policyfile"
)

func TestParse(t *testing.T) {
	t.Parallel()
	got, err := policyfile.Parse([]byte(`
policies:
  - name: ip-hour
    key: ip
    rate: 2000/1h
    burst: 200
    algorithm: sliding
    fail: open
    shadow: true
  - name: user-day
    key: user
    rate: 50000/24h
`), ratelimit.Fixed, "ip", "user")
	if err != nil {
		t.Fatal(err)
	}
	want := []policyfile.Policy{
		{Key: "ip", Policy: ratelimit.Policy{Name: "ip-hour", Rate: ratelimit.Rate{N: 2000, Per: time.Hour}, Burst: 200,
			Algorithm: ratelimit.Sliding, Fail: ratelimit.FailOpen, Shadow: true}},
		{Key: "user", Policy: ratelimit.Policy{Name: "user-day", Rate: ratelimit.Rate{N: 50000, Per: 24 * time.Hour},
			Algorithm: ratelimit.Fixed, Fail: ratelimit.FailLocal}},
	}
	if len(got) != len(want) {
		t.Fatalf("Parse = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("policy %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestParseEmpty(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "policies: []\n"} {
		got, err := policyfile.Parse([]byte(in), ratelimit.GCRA)
		if err != nil || len(got) != 0 {
			t.Errorf("Parse(%q) = %v, %v; want no policies", in, got, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{"unknown field", "policies:\n  - name: a\n    key: ip\n    rate: 1/1s\n    colour: red\n", "colour"},
		{"unknown top-level field", "rules: []\n", "rules"},
		{"bad rate", "policies:\n  - name: a\n    key: ip\n    rate: 10/1ms\n", `policy "a": rate`},
		{"missing rate", "policies:\n  - name: a\n    key: ip\n", `policy "a": rate is required`},
		{"bad key", "policies:\n  - name: a\n    key: cookie\n    rate: 1/1s\n", `key "cookie"`},
		{"missing key", "policies:\n  - name: a\n    rate: 1/1s\n", "key is required"},
		{"bad name", "policies:\n  - name: Ip_Hour\n    key: ip\n    rate: 1/1s\n", `policy "Ip_Hour"`},
		{"missing name", "policies:\n  - key: ip\n    rate: 1/1s\n", "policies[0]"},
		{"duplicate", "policies:\n  - {name: a, key: ip, rate: 1/1s}\n  - {name: a, key: user, rate: 1/1s}\n", "duplicate"},
		{"reserved", "policies:\n  - {name: ip, key: ip, rate: 1/1s}\n", "duplicate"},
		{"bad algorithm", "policies:\n  - {name: a, key: ip, rate: 1/1s, algorithm: leaky}\n", "algorithm"},
		{"bad fail", "policies:\n  - {name: a, key: ip, rate: 1/1s, fail: maybe}\n", "fail"},
		{"bad burst", "policies:\n  - {name: a, key: ip, rate: 1/1s, burst: 0}\n", "burst"},
		{"wrong type", "policies:\n  - {name: a, key: ip, rate: 1/1s, shadow: sometimes}\n", "line 2"},
		{"two documents", "policies: []\n---\npolicies: []\n", "more than one"},
		{"not yaml", "policies: [\n", "policy file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policyfile.Parse([]byte(tc.in), ratelimit.GCRA, "ip", "user", "login", "signup")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
