package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/journalsvc/journal/httpapi"
	"github.com/journalsvc/journal/ratelimit"
)

// TestPolicies checks the built-in policies of the rates, with their fail
// modes and leases, and the policy file's policies added under their keys.
func TestPolicies(t *testing.T) {
	file := policyFile(t, `policies:
  - {name: ip-hour, key: ip, rate: 2000/1h, shadow: true}
  - {name: user-day, key: user, rate: 10000/24h, algorithm: gcra, fail: open}
  - {name: login-day, key: login, rate: 50/24h}
`)
	c, err := Parse(nil, env(map[string]string{
		"JOURNAL_RATE_LIMIT_ALGORITHM": "sliding",
		"JOURNAL_RATE_LIMIT_SIGNUP":    "off",
		"JOURNAL_RATE_LIMIT_POLICIES":  file,
	}))
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Policies()
	if err != nil {
		t.Fatalf("Policies() error: %v", err)
	}
	item := func(p ratelimit.Policy) ratelimit.Item { return ratelimit.Item{Policy: p, Cost: 1} }
	want := httpapi.Policies{
		IP: []ratelimit.Item{
			item(ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 100, Per: time.Minute}, Algorithm: ratelimit.Sliding, Fail: ratelimit.FailLocal, Lease: true}),
			item(ratelimit.Policy{Name: "ip-hour", Rate: ratelimit.Rate{N: 2000, Per: time.Hour}, Algorithm: ratelimit.Sliding, Shadow: true}),
		},
		Login: []ratelimit.Item{
			item(ratelimit.Policy{Name: "login", Rate: ratelimit.Rate{N: 10, Per: time.Minute}, Algorithm: ratelimit.Sliding, Fail: ratelimit.FailClosed}),
			item(ratelimit.Policy{Name: "login-day", Rate: ratelimit.Rate{N: 50, Per: 24 * time.Hour}, Algorithm: ratelimit.Sliding}),
		},
		LoginAccount: []ratelimit.Item{
			item(ratelimit.Policy{Name: "login-account", Rate: ratelimit.Rate{N: 100, Per: time.Hour}, Algorithm: ratelimit.Sliding, Fail: ratelimit.FailClosed}),
		},
		User: []ratelimit.Item{
			item(ratelimit.Policy{Name: "user", Rate: ratelimit.Rate{N: 1000, Per: time.Hour}, Algorithm: ratelimit.Sliding, Fail: ratelimit.FailLocal, Lease: true}),
			item(ratelimit.Policy{Name: "user-day", Rate: ratelimit.Rate{N: 10000, Per: 24 * time.Hour}, Algorithm: ratelimit.GCRA, Fail: ratelimit.FailOpen}),
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Policies() (-want +got):\n%s", diff)
	}
	wantSummary := []string{"ip=100/1m/sliding", "ip-hour=2000/1h/sliding(shadow)", "login=10/1m/sliding", "login-day=50/24h/sliding",
		"login-account=100/1h/sliding", "user=1000/1h/sliding", "user-day=10000/24h/gcra"}
	if diff := cmp.Diff(wantSummary, got.Summary()); diff != "" {
		t.Errorf("Summary() (-want +got):\n%s", diff)
	}
}

// TestPoliciesInvalidFile checks that a policy file Parse accepted (it
// exists and can be read) but whose content is invalid is an *Error for
// JOURNAL_RATE_LIMIT_POLICIES naming the problem.
func TestPoliciesInvalidFile(t *testing.T) {
	file := policyFile(t, "policies:\n  - {name: ip, key: ip, rate: 1/1s}\n")
	c, err := Parse([]string{"-rate-limit-policies", file}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Policies()
	var ce *Error
	if !errors.As(err, &ce) || ce.Setting != "JOURNAL_RATE_LIMIT_POLICIES" || ce.Value != file || !strings.Contains(ce.Want, "duplicate name") {
		t.Errorf("Policies() error = %v, want an *Error for JOURNAL_RATE_LIMIT_POLICIES about the duplicate name", err)
	}
}
