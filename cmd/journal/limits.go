package main

import (
	"fmt"

	"github.com/journalsvc/journal/httpapi"
	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/policyfile"
)

// loadPolicies builds the rate-limit policies of cfg: the built-in ip,
// signup, login, login-account and user policies from
// JOURNAL_RATE_LIMIT_*, plus the policy file's. A rate of zero ("off")
// leaves its built-in policy out. ip and user take quota ahead (leases, with
// Redis): they see most requests; login, login-account and signup are rare
// and decided exactly. login and login-account fail closed.
func loadPolicies(cfg Config) (httpapi.Policies, error) {
	var ps httpapi.Policies
	builtin := func(name string, rate ratelimit.Rate, fail ratelimit.FailMode, lease bool) []ratelimit.Item {
		if rate.N == 0 {
			return nil
		}
		return []ratelimit.Item{{Policy: ratelimit.Policy{Name: name, Rate: rate, Algorithm: cfg.RateLimitAlgorithm, Fail: fail, Lease: lease}, Cost: 1}}
	}
	ps.IP = builtin(policyfile.KeyIP, cfg.RateLimitIP, ratelimit.FailLocal, true)
	ps.Signup = builtin(policyfile.KeySignup, cfg.RateLimitSignup, ratelimit.FailLocal, false)
	ps.Login = builtin(policyfile.KeyLogin, cfg.RateLimitLogin, ratelimit.FailClosed, false)
	ps.LoginAccount = builtin(policyfile.KeyLoginAccount, cfg.RateLimitLoginAccount, ratelimit.FailClosed, false)
	ps.User = builtin(policyfile.KeyUser, cfg.RateLimitUser, ratelimit.FailLocal, true)
	if cfg.RateLimitPolicies == "" {
		return ps, nil
	}
	extra, err := policyfile.ReadFile(cfg.RateLimitPolicies, cfg.RateLimitAlgorithm,
		policyfile.KeyIP, policyfile.KeySignup, policyfile.KeyLogin, policyfile.KeyLoginAccount, policyfile.KeyUser)
	if err != nil {
		return ps, &ConfigError{Setting: "JOURNAL_RATE_LIMIT_POLICIES", Value: cfg.RateLimitPolicies, Want: "a valid policy file: " + err.Error()}
	}
	for _, p := range extra {
		it := ratelimit.Item{Policy: p.Policy, Cost: 1}
		switch p.Key {
		case policyfile.KeyIP:
			ps.IP = append(ps.IP, it)
		case policyfile.KeySignup:
			ps.Signup = append(ps.Signup, it)
		case policyfile.KeyLogin:
			ps.Login = append(ps.Login, it)
		case policyfile.KeyLoginAccount:
			ps.LoginAccount = append(ps.LoginAccount, it)
		case policyfile.KeyUser:
			ps.User = append(ps.User, it)
		}
	}
	return ps, nil
}

// describePolicies is the start-up log line's view of the policies.
func describePolicies(ps httpapi.Policies) []string {
	var out []string
	for _, group := range [][]ratelimit.Item{ps.IP, ps.Signup, ps.Login, ps.LoginAccount, ps.User} {
		for _, it := range group {
			p := it.Policy
			s := fmt.Sprintf("%s=%s/%s", p.Name, p.Rate, p.Algorithm)
			if p.Shadow {
				s += "(shadow)"
			}
			out = append(out, s)
		}
	}
	return out
}
