package config

import (
	"github.com/journalsvc/journal/httpapi"
	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/policyfile"
)

// Policies returns the rate-limit policies of c (docs/design.md, "Policies
// the service applies"): the built-in ip, signup, login, login-account and
// user policies of the JOURNAL_RATE_LIMIT_* rates, each with
// RateLimitAlgorithm, followed by the policies of the RateLimitPolicies file
// under the key each names. A zero rate ("off") leaves its built-in policy
// out.
//
// The built-in policies get their fail modes and leases here. ip, user and
// signup fall back to the instance's local share when Redis cannot decide;
// login and login-account guard passwords, so they fail closed. ip and user
// see most requests, so they take quota ahead (leases, with Redis); the rare
// login, login-account and signup are decided exactly.
//
// It reads the policy file, if any; an invalid one is an [*Error] for
// JOURNAL_RATE_LIMIT_POLICIES.
func (c Config) Policies() (httpapi.Policies, error) {
	builtin := func(name string, rate ratelimit.Rate, fail ratelimit.FailMode, lease bool) []ratelimit.Item {
		if rate.N == 0 {
			return nil
		}
		return []ratelimit.Item{{Policy: ratelimit.Policy{Name: name, Rate: rate, Algorithm: c.RateLimitAlgorithm, Fail: fail, Lease: lease}, Cost: 1}}
	}
	ps := httpapi.Policies{
		IP:           builtin(policyfile.KeyIP, c.RateLimitIP, ratelimit.FailLocal, true),
		Signup:       builtin(policyfile.KeySignup, c.RateLimitSignup, ratelimit.FailLocal, false),
		Login:        builtin(policyfile.KeyLogin, c.RateLimitLogin, ratelimit.FailClosed, false),
		LoginAccount: builtin(policyfile.KeyLoginAccount, c.RateLimitLoginAccount, ratelimit.FailClosed, false),
		User:         builtin(policyfile.KeyUser, c.RateLimitUser, ratelimit.FailLocal, true),
	}
	if c.RateLimitPolicies == "" {
		return ps, nil
	}
	extra, err := policyfile.ReadFile(c.RateLimitPolicies, c.RateLimitAlgorithm,
		policyfile.KeyIP, policyfile.KeySignup, policyfile.KeyLogin, policyfile.KeyLoginAccount, policyfile.KeyUser)
	if err != nil {
		return ps, &Error{Setting: "JOURNAL_RATE_LIMIT_POLICIES", Value: c.RateLimitPolicies, Want: "a valid policy file: " + err.Error()}
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
