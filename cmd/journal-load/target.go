package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"strings"
	"time"
)

// addressing is how the target counts this tool's requests against its
// per-address limits, as [probe] measured it.
type addressing struct {
	// Measured reports that the target announced its ip policy, so that
	// Believed was measured; a target with the ip policy off tells nothing.
	Measured bool
	// Believed reports that the target takes the client from
	// X-Forwarded-For: this tool's address is in its trusted proxies (or a
	// balancer that appends to the header sits between). A balancer that
	// replaces the header, as cluster.sh's nginx does, is not believed.
	Believed bool
	// IP is the ip policy; when the target does not believe the simulated
	// addresses, R is what this tool's own address had left after the
	// probe. Q is 0 when the policy was not announced.
	IP quota
	// Local is the address this tool connects from, "" when unknown.
	Local string
}

// probePath is what the probe asks for: the ip limit applies, and without a
// token the answer is a cheap 401.
const probePath = "/v1/users/me"

// probe learns how base counts this tool's requests. With simulated
// clients it sends GET /v1/users/me without a token twice from address A,
// then once from B. A target that believes the addresses admits B with a
// fresh quota (q-1 left, on any instance and with any algorithm); one that
// ignores them counts all three against this tool's own address, which has
// then used at least two more, so B sees less than q-1 left or is refused.
// Without simulated clients it sends one request and reads what is left.
// Only a failure to reach the target is an error.
func probe(ctx context.Context, a *api, base string, clients *clientPool) (addressing, error) {
	var adr addressing
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
		if ap, err := netip.ParseAddrPort(ci.Conn.LocalAddr().String()); err == nil {
			adr.Local = ap.Addr().Unmap().String()
		}
	}})
	from := []string{""}
	if clients != nil {
		c1, c2 := clients.New(), clients.New()
		from = []string{c1, c1, c2}
	}
	var last response
	for _, cl := range from {
		r := a.Do(ctx, call{Base: base, Method: http.MethodGet, Path: probePath, Client: cl})
		if r.Err != nil {
			return adr, fmt.Errorf("cannot reach %s: %v", base, r.Err)
		}
		last = r
	}
	q, ok := findQuota(last.Header, "ip")
	if !ok || q.R < 0 {
		return adr, nil // the ip policy is off (or this is not a journal)
	}
	adr.Measured, adr.IP = true, q
	adr.Believed = clients != nil && last.Status != http.StatusTooManyRequests && q.R == q.Q-1
	return adr, nil
}

// Budgets of the set-up and the scenarios, in requests, for a target that
// counts every request against this tool's one address.
const (
	// userSetup: sign-up, login and three seed entries of a pooled user.
	userSetup = 5
	// minPaced is the fewest requests a paced run is worth.
	minPaced = 10
	// coherencePerPair: warm the list, warm the item, write, read the item,
	// read the list; coherenceFixed: sign-up, login and the revocation
	// rounds (login, read, revoke, read).
	coherencePerPair = 5
	coherenceFixed   = 2 + 4*revocationRounds
	// minPairs is the fewest write/read pairs a coherence run is worth.
	minPairs = 3
	// budgetShare is the share of what is left that a run plans to use,
	// so that rounding and the timing of the requests stay inside it.
	budgetShare = 0.9
)

// plan fits cfg to what the target allows, from what [probe] learned. When
// the target ignores the simulated addresses it turns -fake-clients off;
// then, since every request counts against this tool's one address, it
// keeps the run within the ip limit: one user unless -users was given and
// a lower -rate (mixed, outage), fewer -pairs (coherence). When even that
// does not fit it returns only an error: one line that says what to
// change. Otherwise the returned notes say what it changed.
func plan(cfg *config, adr addressing) ([]string, error) {
	var notes []string
	// why says why the ip limit binds, for the one line of an error.
	why := "the target's"
	if cfg.FakeClients && adr.Measured && !adr.Believed {
		cfg.FakeClients = false
		who := "this tool's address"
		if adr.Local != "" {
			who = adr.Local
		}
		notes = append(notes, fmt.Sprintf("%s ignores X-Forwarded-For from %s, so all requests count against that one address (-fake-clients is off for this run)",
			cfg.Target, who))
		why = fmt.Sprintf("%s ignores X-Forwarded-For from %s, and its", cfg.Target, who)
	}
	ip := adr.IP
	if cfg.FakeClients || !adr.Measured || ip.Q <= 0 || ip.W <= 0 {
		return notes, nil
	}
	limit := fmt.Sprintf("ip limit of %d per %d s", ip.Q, ip.W)
	// Any algorithm gives an address at least what it has left now within
	// one window (GCRA gives more as it refills): plan on that.
	window := min(cfg.Duration, time.Duration(ip.W)*time.Second).Seconds()
	wait := func(need int) int { return int(math.Ceil(float64(need-ip.R) * float64(ip.W) / float64(ip.Q))) }
	switch cfg.Scenario {
	case "mixed", "outage":
		if !cfg.UsersSet {
			cfg.Users = 1
		}
		left := ip.R - cfg.Users*userSetup
		rate := math.Floor(10*budgetShare*float64(left)/window) / 10
		if left < minPaced || rate <= 0 {
			return nil, fmt.Errorf("%s %s leaves %d requests for that address, too few to set up %d users and run: wait %d s, or %s",
				why, limit, ip.R, cfg.Users, wait(cfg.Users*userSetup+minPaced), adr.change("ip"))
		}
		if rate < cfg.Rate {
			users := "1 user"
			if cfg.Users != 1 {
				users = fmt.Sprintf("%d users", cfg.Users)
			}
			notes = append(notes, fmt.Sprintf("staying within its %s (%d left): %s, %g requests/s instead of %g; for more, %s",
				limit, ip.R, users, rate, cfg.Rate, adr.change("ip")))
			cfg.Rate = rate
		}
	case "coherence":
		pairs := int(budgetShare * float64(ip.R-coherenceFixed) / coherencePerPair)
		if pairs < minPairs {
			return nil, fmt.Errorf("%s %s leaves %d requests for that address, too few for %d write/read pairs: wait %d s, or %s",
				why, limit, ip.R, minPairs, wait(coherenceFixed+minPairs*coherencePerPair), adr.change("ip"))
		}
		if pairs < cfg.Pairs {
			notes = append(notes, fmt.Sprintf("staying within its %s (%d left): %d write/read pairs instead of %d; for more, %s",
				limit, ip.R, pairs, cfg.Pairs, adr.change("ip")))
			cfg.Pairs = pairs
		}
	}
	return notes, nil
}

// policySetting names the setting of each of the service's policies.
var policySetting = map[string]string{
	"ip":            "JOURNAL_RATE_LIMIT_IP",
	"user":          "JOURNAL_RATE_LIMIT_USER",
	"login":         "JOURNAL_RATE_LIMIT_LOGIN",
	"signup":        "JOURNAL_RATE_LIMIT_SIGNUP",
	"login-account": "JOURNAL_RATE_LIMIT_LOGIN_ACCOUNT",
}

// perAddress reports whether a policy counts per client address.
func perAddress(policy string) bool {
	return policy == "ip" || policy == "signup" || policy == "login"
}

// change says what to change on the target so that the policies allow more
// to this tool: trust its address (when a policy counts per address and
// the target ignores the simulated ones) or raise the settings.
func (adr addressing) change(policies ...string) string {
	var settings []string
	trust := false
	for _, p := range policies {
		s, ok := policySetting[p]
		if !ok {
			s = "the policy file (JOURNAL_RATE_LIMIT_POLICIES)"
		}
		settings = append(settings, s)
		trust = trust || (perAddress(p) && !adr.Believed)
	}
	raise := "raise " + strings.Join(settings, " and ")
	if !trust {
		return raise
	}
	proxies := "this tool's address"
	if a, err := netip.ParseAddr(adr.Local); err == nil {
		proxies = netip.PrefixFrom(a, a.BitLen()).String()
	}
	return fmt.Sprintf("start it with JOURNAL_TRUSTED_PROXIES=%s or %s", proxies, raise)
}

// refusedError is a request of a scenario's set-up that the target refused
// with 429.
type refusedError struct {
	What string // "POST /v1/users"
	R    response
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("setup: %s: %s", e.What, e.R.describe())
}

// advise turns a refused set-up request into one line that says which
// limit refused it and what to change; other errors come back unchanged.
func advise(err error, adr addressing) error {
	var re *refusedError
	if !errors.As(err, &re) {
		return err
	}
	var body struct {
		Violated []string `json:"violated-policies"`
	}
	_ = json.Unmarshal(re.R.Body, &body)
	if len(body.Violated) == 0 {
		return err
	}
	var limits []string
	for _, p := range body.Violated {
		l := p + " limit"
		if q, ok := findQuota(re.R.Header, p); ok && q.Q > 0 {
			l = fmt.Sprintf("%s limit (%d per %d s)", p, q.Q, q.W)
		}
		limits = append(limits, l)
	}
	retry := strings.TrimSpace(re.R.Header.Get("Retry-After"))
	return fmt.Errorf("setup: %s refused (429): the target's %s is used up, retry in %s s; or %s",
		re.What, strings.Join(limits, " and "), retry, adr.change(body.Violated...))
}
