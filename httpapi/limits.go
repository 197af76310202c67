package httpapi

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/httplimit"
)

// Policies are the rate-limit policies the service applies, by what keys
// them. The route table says which routes evaluate which: every route but
// the operational ones is limited by IP before authentication (Signup joins
// that decision on the routes that create an account), every authenticated
// route by User after it, and the routes that check a password by Login and
// LoginAccount inside the handler, once the username is known and before
// the password is hashed.
type Policies struct {
	// IP: every limited request, keyed by client IP (IPv6 by /64).
	IP []ratelimit.Item
	// Signup: POST /v1/users, in the same decision as IP.
	Signup []ratelimit.Item
	// Login: every password check, keyed by client IP and the SHA-256 of
	// the username. Each attempt counts.
	Login []ratelimit.Item
	// LoginAccount: failed password checks of a username from any address,
	// keyed by the SHA-256 of the username alone. It is checked before the
	// password is hashed (when exhausted: 429 without hashing) and charged
	// only by a failed check, so an attacker who knows a username can block
	// its logins for the window, but a user who knows their password is not
	// slowed by it until then.
	LoginAccount []ratelimit.Item
	// User: every authenticated request, keyed by the user.
	User []ratelimit.Item
}

// Summary lists every policy as NAME=RATE/ALGORITHM, with "(shadow)" after a
// shadow policy, in the order IP, Signup, Login, LoginAccount, User: one
// line's worth for the start-up log.
func (p Policies) Summary() []string {
	var out []string
	for _, group := range [][]ratelimit.Item{p.IP, p.Signup, p.Login, p.LoginAccount, p.User} {
		for _, it := range group {
			s := fmt.Sprintf("%s=%s/%s", it.Policy.Name, it.Policy.Rate, it.Policy.Algorithm)
			if it.Policy.Shadow {
				s += "(shadow)"
			}
			out = append(out, s)
		}
	}
	return out
}

// limitSet says which of the Policies a route evaluates beyond IP (every
// limited route) and User (every authenticated route).
type limitSet uint8

const (
	limitSignup limitSet = 1 << iota // Signup joins the IP decision
	limitLogin                       // Login and LoginAccount, in the handler
)

// limits are the rate-limit middlewares of a server, built from
// Options.Limiter and Options.Policies; a nil *limits limits nothing.
type limits struct {
	mw                 *httplimit.Middleware
	trusted            *httplimit.TrustedProxies
	ip, ipSignup, user []ratelimit.Item
	logins             *logins
}

func newLimits(o *Options) (*limits, error) {
	if o.Limiter == nil {
		return nil, nil
	}
	p := o.Policies
	mw, err := httplimit.New(o.Limiter, httplimit.Options{
		// The stages and the handlers pass the subject and the items
		// of each decision to Limit, Check and Charge.
		Items:      func(*http.Request) []ratelimit.Item { return nil },
		Logger:     o.Logger,
		OnDecision: o.OnDecision,
	})
	if err != nil {
		return nil, fmt.Errorf("httpapi: rate limits: %w", err)
	}
	l := &limits{
		mw: mw, trusted: o.TrustedProxies, ip: p.IP, user: p.User,
		ipSignup: append(append([]ratelimit.Item(nil), p.IP...), p.Signup...),
	}
	if len(p.Login) > 0 || len(p.LoginAccount) > 0 {
		l.logins = &logins{mw: mw, trusted: o.TrustedProxies, login: p.Login, account: p.LoginAccount}
	}
	return l, nil
}

// ipStage returns the middleware that decides, before authentication, the
// IP policies of a route that evaluates set (with Signup when it does), or
// nil when there is none.
func (l *limits) ipStage(set limitSet) func(http.Handler) http.Handler {
	if l == nil {
		return nil
	}
	items := l.ip
	if set&limitSignup != 0 {
		items = l.ipSignup
	}
	return l.stage(items, func(r *http.Request) (string, bool) {
		return httplimit.SubjectForIP(httplimit.ClientIP(r, l.trusted)), true
	})
}

// userStage returns the middleware that decides the User policies after
// authentication, or nil when there is none.
func (l *limits) userStage() func(http.Handler) http.Handler {
	if l == nil {
		return nil
	}
	return l.stage(l.user, func(r *http.Request) (string, bool) {
		u, ok := journal.UserFromContext(r.Context())
		return "user:" + u.ID, ok && u.ID != ""
	})
}

func (l *limits) stage(items []ratelimit.Item, subject func(*http.Request) (string, bool)) func(http.Handler) http.Handler {
	if len(items) == 0 {
		return nil
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s, ok := subject(r)
			if !ok || l.mw.Limit(w, r, s, items...) {
				next.ServeHTTP(w, r)
			}
		})
	}
}

// passwords returns what limits password checks, nil for none.
func (l *limits) passwords() *logins {
	if l == nil {
		return nil
	}
	return l.logins
}

// logins limits password checks: every attempt of (client IP, username)
// against the Login policies, and the failed checks of a username against
// the LoginAccount policies. A nil *logins limits nothing.
type logins struct {
	mw             *httplimit.Middleware
	trusted        *httplimit.TrustedProxies
	login, account []ratelimit.Item
}

// passwordCheck is one password check that attempt let through.
type passwordCheck struct {
	l       *logins
	account string             // the LoginAccount subject
	peeked  ratelimit.Decision // scratch for the check before hashing
}

// attempt counts a password check of username by the request's client
// against the Login policies, and checks, consuming nothing, that the
// LoginAccount policies allow one more failure. When it returns false it
// has written the 429 or 503, and no password may be checked.
func (l *logins) attempt(w http.ResponseWriter, r *http.Request, username string) (*passwordCheck, bool) {
	if l == nil {
		return nil, true
	}
	sum := sha256.Sum256([]byte(username))
	user := hex.EncodeToString(sum[:16])
	if len(l.login) > 0 {
		ip := httplimit.SubjectForIP(httplimit.ClientIP(r, l.trusted))
		if !l.mw.Limit(w, r, "login:"+ip[len("ip:"):]+":"+user, l.login...) {
			return nil, false
		}
	}
	c := &passwordCheck{l: l, account: "login-account:" + user}
	if len(l.account) > 0 && !l.mw.Check(w, r, &c.peeked, c.account, l.account...) {
		return nil, false
	}
	return c, true
}

// done records the outcome of the check: a failure is charged to the
// LoginAccount policies, and the response carries their RateLimit headers.
// A success costs them nothing and adds no header: the peeked decision
// describes the quota a failure would have left, not what is left.
func (c *passwordCheck) done(w http.ResponseWriter, r *http.Request, failed bool) {
	if c == nil || len(c.l.account) == 0 || !failed {
		return
	}
	c.l.mw.Charge(w, r, c.account, c.l.account...)
}
