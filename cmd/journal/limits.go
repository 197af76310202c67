package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/httpapi"
	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/httplimit"
	"github.com/journalsvc/journal/ratelimit/policyfile"
)

// policySet is every rate-limit policy of the service, grouped by what keys
// them (DESIGN.md 3.3): the built-in ip, signup, login and user policies from
// JOURNAL_RATE_LIMIT_*, plus the policy file's.
type policySet struct {
	ip, signup, login, user []ratelimit.Item
}

// loadPolicies builds the policy set of cfg, reading and validating the
// policy file if one is configured. A rate of zero ("off") leaves its
// built-in policy out.
func loadPolicies(cfg Config) (policySet, error) {
	var ps policySet
	// ip and user take quota ahead (leases, when Redis is configured): they
	// see most requests. login and signup are rare and decided exactly.
	builtin := func(name string, rate ratelimit.Rate, fail ratelimit.FailMode, lease bool) []ratelimit.Item {
		if rate.N == 0 {
			return nil
		}
		return []ratelimit.Item{{Policy: ratelimit.Policy{Name: name, Rate: rate, Algorithm: cfg.RateLimitAlgorithm, Fail: fail, Lease: lease}, Cost: 1}}
	}
	ps.ip = builtin(policyfile.KeyIP, cfg.RateLimitIP, ratelimit.FailLocal, true)
	ps.signup = builtin(policyfile.KeySignup, cfg.RateLimitSignup, ratelimit.FailLocal, false)
	ps.login = builtin(policyfile.KeyLogin, cfg.RateLimitLogin, ratelimit.FailClosed, false)
	ps.user = builtin(policyfile.KeyUser, cfg.RateLimitUser, ratelimit.FailLocal, true)
	if cfg.RateLimitPolicies == "" {
		return ps, nil
	}
	extra, err := policyfile.ReadFile(cfg.RateLimitPolicies, cfg.RateLimitAlgorithm,
		policyfile.KeyIP, policyfile.KeySignup, policyfile.KeyLogin, policyfile.KeyUser)
	if err != nil {
		return ps, &ConfigError{Setting: "JOURNAL_RATE_LIMIT_POLICIES", Value: cfg.RateLimitPolicies, Want: "a valid policy file: " + err.Error()}
	}
	for _, p := range extra {
		it := ratelimit.Item{Policy: p.Policy, Cost: 1}
		switch p.Key {
		case policyfile.KeyIP:
			ps.ip = append(ps.ip, it)
		case policyfile.KeySignup:
			ps.signup = append(ps.signup, it)
		case policyfile.KeyLogin:
			ps.login = append(ps.login, it)
		case policyfile.KeyUser:
			ps.user = append(ps.user, it)
		}
	}
	return ps, nil
}

// Routes whose requests carry extra policies.
const (
	signupRoute = "POST /v1/users"
	loginRoute  = "POST /v1/tokens"
)

// limitMiddlewares returns the IP-stage and user-stage middlewares of
// httpapi.Options (nil when their policies are all off).
//
// The IP stage makes up to two decisions before authentication: the client
// IP's policies (ip, plus signup on POST /v1/users) in one atomic decision,
// then, on POST /v1/tokens, the login policies keyed by client IP + SHA-256
// of the username. The user stage decides the user's policies after
// authentication. Floods are thus stopped before password hashing and before
// the database.
func limitMiddlewares(l ratelimit.Limiter, ps policySet, trusted *httplimit.TrustedProxies, logger *slog.Logger,
	onDecision func(*http.Request, httplimit.Outcome, []ratelimit.Item, *ratelimit.Decision, error),
) (ipStage, userStage func(http.Handler) http.Handler, err error) {
	ipItems := append(append([]ratelimit.Item(nil), ps.ip...), ps.signup...)
	var stages []func(http.Handler) http.Handler
	if len(ipItems) > 0 {
		ipOnly, withSignup := ps.ip, ipItems
		mw, err := httplimit.New(l, httplimit.Options{
			Subject: httplimit.IPSubject(trusted),
			Items: func(r *http.Request) []ratelimit.Item {
				if r.Pattern == signupRoute {
					return withSignup
				}
				return ipOnly
			},
			Logger:     logger,
			OnDecision: onDecision,
		})
		if err != nil {
			return nil, nil, err
		}
		stages = append(stages, mw.Handler)
	}
	if len(ps.login) > 0 {
		login := ps.login
		mw, err := httplimit.New(l, httplimit.Options{
			Subject: func(r *http.Request) (string, bool) {
				if r.Pattern != loginRoute {
					return "", false
				}
				user, ok := peekUsername(r)
				if !ok {
					return "", false // the handler answers 400/413/415 without checking a password
				}
				sum := sha256.Sum256([]byte(user))
				ip := httplimit.SubjectForIP(httplimit.ClientIP(r, trusted))
				return "login:" + ip[len("ip:"):] + ":" + hex.EncodeToString(sum[:16]), true
			},
			Items:      func(*http.Request) []ratelimit.Item { return login },
			Logger:     logger,
			OnDecision: onDecision,
		})
		if err != nil {
			return nil, nil, err
		}
		stages = append(stages, mw.Handler)
	}
	if len(stages) > 0 {
		ipStage = func(next http.Handler) http.Handler {
			for i := len(stages) - 1; i >= 0; i-- {
				next = stages[i](next)
			}
			return next
		}
	}
	if len(ps.user) > 0 {
		user := ps.user
		mw, err := httplimit.New(l, httplimit.Options{
			Subject: func(r *http.Request) (string, bool) {
				u, ok := journal.UserFromContext(r.Context())
				return "user:" + u.ID, ok && u.ID != ""
			},
			Items:      func(*http.Request) []ratelimit.Item { return user },
			Logger:     logger,
			OnDecision: onDecision,
		})
		if err != nil {
			return nil, nil, err
		}
		userStage = mw.Handler
	}
	return ipStage, userStage, nil
}

// peekUsername reads the JSON body of a login request (at most
// httpapi.MaxRequestBytes), returns its "username" and puts the body back
// for the handler. It reports false when the body is too large or has no
// string username: the handler then rejects the request before any
// password is checked, so such requests need no login decision.
func peekUsername(r *http.Request) (string, bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return "", false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, httpapi.MaxRequestBytes+1))
	rest := r.Body
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(body), rest), rest}
	if err != nil || len(body) > httpapi.MaxRequestBytes {
		return "", false
	}
	var creds struct {
		Username string `json:"username"`
	}
	if json.Unmarshal(body, &creds) != nil || creds.Username == "" {
		return "", false
	}
	return creds.Username, true
}

// describePolicies is the start-up log line's view of the policy set.
func describePolicies(ps policySet) []string {
	var out []string
	for _, group := range [][]ratelimit.Item{ps.ip, ps.signup, ps.login, ps.user} {
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
