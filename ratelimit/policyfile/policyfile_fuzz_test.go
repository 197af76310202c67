package policyfile_test

import (
	"regexp"
	"testing"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/policyfile"
)

// FuzzParse: a policy file is operator input read at start-up. Parse never
// panics, and every policy it accepts is usable: a valid policy under a
// fresh, well-formed name (a header token), keyed by a known subject.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"policies:\n  - name: ip-hour\n    key: ip\n    rate: 2000/1h\n    burst: 200\n    algorithm: gcra\n    fail: local\n    shadow: true\n",
		"policies:\n  - {name: a, key: user, rate: 1/1s}\n  - {name: b, key: login, rate: 5/1m, fail: closed}\n",
		"policies: []\n", "", "---\n---\n", "policies:\n  - name: ip\n    key: ip\n    rate: 1/1s\n",
		"policies:\n  - {name: a, key: ip, rate: 0/1s}\n", "policies:\n  - {name: A B, key: ip, rate: 1/1s}\n",
		"policies:\n  - {name: a, key: ip, rate: 1/1s, burst: -1}\n", "policies:\n  - &x {name: a, key: ip, rate: 1/1s}\n  - *x\n",
		"policies:\n  - {name: a, key: ip, rate: 99999999999999999999/1s}\n", "policies: {a: 1}\n", "\t", "policies:\n  - {extra: 1}\n",
	} {
		f.Add([]byte(s))
	}
	name := regexp.MustCompile(`^[a-z0-9-]+$`)
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := policyfile.Parse(data, ratelimit.GCRA, "ip", "user", "login", "signup")
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, p := range ps {
			if err := p.Policy.Validate(); err != nil {
				t.Fatalf("Parse(%q) accepted an invalid policy %+v: %v", data, p, err)
			}
			if !name.MatchString(p.Policy.Name) || seen[p.Policy.Name] {
				t.Fatalf("Parse(%q) accepted the name %q (malformed, reserved or a duplicate)", data, p.Policy.Name)
			}
			seen[p.Policy.Name] = true
			switch p.Key {
			case policyfile.KeyIP, policyfile.KeyUser, policyfile.KeyLogin, policyfile.KeyLoginAccount, policyfile.KeySignup:
			default:
				t.Fatalf("Parse(%q) accepted the key %q", data, p.Key)
			}
		}
		for _, r := range []string{"ip", "user", "login", "signup"} {
			if seen[r] {
				t.Fatalf("Parse(%q) accepted the reserved name %q", data, r)
			}
		}
	})
}
