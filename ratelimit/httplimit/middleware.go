package httplimit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/journalsvc/journal/ratelimit"
)

// ErrOptions is wrapped by the errors of [New].
var ErrOptions = errors.New("httplimit: invalid options")

// Problem types of the responses this package writes (RFC 9457, registered by
// draft-ietf-httpapi-ratelimit-headers).
const (
	ProblemQuotaExceeded            = "https://iana.org/assignments/http-problem-types#quota-exceeded"
	ProblemTemporaryReducedCapacity = "https://iana.org/assignments/http-problem-types#temporary-reduced-capacity"
)

// DefaultUnavailableRetryAfter is the default Retry-After of a 503 answered
// because a fail-closed policy could not be decided.
const DefaultUnavailableRetryAfter = time.Second

// Options configures a [Middleware]. Only Items is required.
type Options struct {
	// Subject returns the identity the request's policies are keyed by,
	// e.g. "ip:203.0.113.7" or "user:0190...". When ok is false the
	// request is not limited by this middleware (for example, a user
	// middleware sees no authenticated user). Default: [IPSubject](nil),
	// the TCP peer's address, trusting no proxy.
	Subject func(r *http.Request) (subject string, ok bool)
	// Items returns the policies (with costs) checked for the request, in
	// one atomic decision for its subject. No items: not limited. The
	// returned slice is only read. Required.
	Items func(r *http.Request) []ratelimit.Item
	// Skip reports requests that must never be limited (e.g. /livez,
	// /readyz, /metrics, /openapi.json). Default: none.
	Skip func(r *http.Request) bool
	// Logger receives limiter errors (Warn) and the 503s of fail-closed
	// policies. Default: discard.
	Logger *slog.Logger
	// OnDecision, if set, is called once per decision made (not for
	// skipped requests), before the 429/503 is written or the next handler
	// runs, with the outcome, the items decided, the decision (without
	// results when err != nil; its Results are in item order) and the
	// limiter's error. Use it for metrics. d is valid only during the call:
	// the Middleware reuses it for other requests. It must be safe for
	// concurrent use.
	OnDecision func(r *http.Request, o Outcome, items []ratelimit.Item, d *ratelimit.Decision, err error)
	// UnavailableRetryAfter is the Retry-After of the 503 written when a
	// fail-closed policy cannot be decided (rounded up to whole seconds,
	// at least 1). Default [DefaultUnavailableRetryAfter].
	UnavailableRetryAfter time.Duration
}

// Middleware enforces rate-limit policies on HTTP requests. Create it with
// [New]; it is safe for concurrent use and holds no per-request state.
//
// For each request that is not skipped and has a subject and items, it calls
// [ratelimit.Limiter.Decide] once, with the request's context, and:
//   - admitted: sets the RateLimit headers (see [SetHeaders]) and calls the
//     next handler; a shadow policy's denial and degraded results are only
//     reported (headers, outcome), never enforced.
//   - denied: writes 429 with the RateLimit headers, Retry-After (see
//     [RetryAfterSeconds]) and an application/problem+json body of type
//     [ProblemQuotaExceeded] whose "violated-policies" lists the violated
//     policies; the next handler is not called.
//   - error (for example one wrapping [ratelimit.ErrUnavailable]: a
//     fail-closed policy's store is down): writes 503 with Retry-After and a
//     problem body of type [ProblemTemporaryReducedCapacity], and logs the
//     error. The middleware decides no fail mode itself: a limiter that
//     should admit, or decide locally, while its store is down is wrapped in
//     a [ratelimit.Fallback], which does so by each policy's fail mode.
//
// The outcome is recorded in the request context (see [WithOutcome]).
//
// The decisions are written into Decisions the Middleware reuses across
// requests, so deciding allocates nothing beyond what the limiter itself
// allocates (an in-process memorylimit.Limiter allocates nothing).
type Middleware struct {
	limiter    ratelimit.Limiter
	subject    func(*http.Request) (string, bool)
	items      func(*http.Request) []ratelimit.Item
	skip       func(*http.Request) bool
	logger     *slog.Logger
	onDecision func(*http.Request, Outcome, []ratelimit.Item, *ratelimit.Decision, error)
	retry503   string
	decisions  sync.Pool // *ratelimit.Decision
}

// New returns a Middleware deciding with limiter. It returns an error
// wrapping [ErrOptions] when limiter or opts.Items is nil or
// opts.UnavailableRetryAfter is negative.
func New(limiter ratelimit.Limiter, opts Options) (*Middleware, error) {
	if limiter == nil {
		return nil, fmt.Errorf("%w: nil limiter", ErrOptions)
	}
	if opts.Items == nil {
		return nil, fmt.Errorf("%w: Items is required", ErrOptions)
	}
	if opts.UnavailableRetryAfter < 0 {
		return nil, fmt.Errorf("%w: negative UnavailableRetryAfter %v", ErrOptions, opts.UnavailableRetryAfter)
	}
	m := &Middleware{
		limiter:    limiter,
		subject:    opts.Subject,
		items:      opts.Items,
		skip:       opts.Skip,
		logger:     opts.Logger,
		onDecision: opts.OnDecision,
	}
	if m.subject == nil {
		m.subject = IPSubject(nil)
	}
	if m.logger == nil {
		m.logger = slog.New(slog.DiscardHandler)
	}
	ra := opts.UnavailableRetryAfter
	if ra == 0 {
		ra = DefaultUnavailableRetryAfter
	}
	m.retry503 = strconv.FormatInt(max(ceilSeconds(ra), 1), 10)
	return m, nil
}

// IPSubject returns a Subject function keying requests by their client
// address: [SubjectForIP]([ClientIP](r, trusted)). It always reports ok.
func IPSubject(trusted *TrustedProxies) func(*http.Request) (string, bool) {
	return func(r *http.Request) (string, bool) {
		return SubjectForIP(ClientIP(r, trusted)), true
	}
}

// StaticItems returns an Items function returning items for every request.
func StaticItems(items ...ratelimit.Item) func(*http.Request) []ratelimit.Item {
	items = append([]ratelimit.Item(nil), items...)
	return func(*http.Request) []ratelimit.Item { return items }
}

// Handler returns next wrapped by m; it has the type of a
// func(http.Handler) http.Handler middleware.
func (m *Middleware) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.skip != nil && m.skip(r) {
			next.ServeHTTP(w, r)
			return
		}
		subject, ok := m.subject(r)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		items := m.items(r)
		if len(items) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		if recordFrom(r.Context()) == nil {
			r = r.WithContext(WithOutcome(r.Context()))
		}
		if m.Limit(w, r, subject, items...) {
			next.ServeHTTP(w, r)
		}
	})
}

// Limit decides one request for subject and items as the Handler does and
// reports whether the caller should go on serving it. When it returns false
// it has written the complete 429 or 503 response. Handlers use it for
// policies whose subject is only known inside the handler (e.g. the login
// policy keyed by IP and username). Options.Skip, Subject and Items are not
// consulted.
func (m *Middleware) Limit(w http.ResponseWriter, r *http.Request, subject string, items ...ratelimit.Item) bool {
	d, _ := m.decisions.Get().(*ratelimit.Decision)
	if d == nil {
		d = new(ratelimit.Decision)
	}
	defer m.decisions.Put(d)
	if !m.check(w, r, d, subject, items, true) {
		return false
	}
	SetHeaders(w.Header(), items, d)
	return true
}

// Check is Limit for a cost a request may incur later: it peeks (consumes
// nothing) into d and reports whether the request may go on. When it
// returns false it has written the complete 429 or 503 response; when it
// returns true it has set no header: the caller charges the cost later
// ([Middleware.Charge], which sets them) or not at all. d then holds what
// the charge would leave, not what is left now.
func (m *Middleware) Check(w http.ResponseWriter, r *http.Request, d *ratelimit.Decision, subject string, items ...ratelimit.Item) bool {
	return m.check(w, r, d, subject, items, false)
}

// check decides (or peeks) into d and writes the 429 or 503 of a request
// that may not go on.
func (m *Middleware) check(w http.ResponseWriter, r *http.Request, d *ratelimit.Decision, subject string, items []ratelimit.Item, decide bool) bool {
	switch m.run(r, d, subject, items, decide) {
	case OutcomeDenied:
		SetHeaders(w.Header(), items, d)
		writeTooManyRequests(w, items, d)
		return false
	case OutcomeUnavailable:
		writeProblem(w, http.StatusServiceUnavailable, m.retry503, problem{
			Type:   ProblemTemporaryReducedCapacity,
			Title:  "Service Unavailable",
			Status: http.StatusServiceUnavailable,
			Detail: "The rate limiter cannot decide this request at the moment; retry after " + m.retry503 + " " + plural(m.retry503, "second") + ".",
		})
		return false
	}
	return true
}

// Charge decides items for subject, consuming their costs if every policy
// admits, and sets the RateLimit headers of the decision, but writes no
// response whatever it is: for a cost a request incurs after its answer is
// settled (a failed password check counted against its account, after a
// [Middleware.Check]). A limiter error is logged.
func (m *Middleware) Charge(w http.ResponseWriter, r *http.Request, subject string, items ...ratelimit.Item) {
	d, _ := m.decisions.Get().(*ratelimit.Decision)
	if d == nil {
		d = new(ratelimit.Decision)
	}
	defer m.decisions.Put(d)
	if m.run(r, d, subject, items, true) != OutcomeUnavailable {
		SetHeaders(w.Header(), items, d)
	}
}

// run decides (or peeks) items for subject into d, records the outcome in
// the request context and reports it to OnDecision, and logs a limiter
// error.
func (m *Middleware) run(r *http.Request, d *ratelimit.Decision, subject string, items []ratelimit.Item, decide bool) Outcome {
	ctx := r.Context()
	var err error
	if decide {
		err = m.limiter.Decide(ctx, d, subject, items...)
	} else {
		err = m.limiter.Peek(ctx, d, subject, items...)
	}
	o := OutcomeUnavailable
	if err == nil {
		o = OutcomeOf(items, d)
	} else {
		*d = ratelimit.Decision{Results: d.Results[:0]}
		m.logger.Log(ctx, errLevel(ctx), "ratelimit: cannot decide, failing closed",
			"subject", subject, "policies", policyNames(items), "error", err)
	}
	if rec := recordFrom(ctx); rec != nil {
		rec.raise(o)
	}
	if m.onDecision != nil {
		m.onDecision(r, o, items, d, err)
	}
	return o
}

// errLevel is Warn, or Debug when the client has gone away.
func errLevel(ctx context.Context) slog.Level {
	if ctx.Err() != nil {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

func policyNames(items []ratelimit.Item) []string {
	names := make([]string, len(items))
	for i, it := range items {
		names[i] = it.Policy.Name
	}
	return names
}

// problem is an RFC 9457 problem details object.
type problem struct {
	Type             string   `json:"type"`
	Title            string   `json:"title"`
	Status           int      `json:"status"`
	Detail           string   `json:"detail"`
	ViolatedPolicies []string `json:"violated-policies,omitempty"`
}

func writeTooManyRequests(w http.ResponseWriter, items []ratelimit.Item, d *ratelimit.Decision) {
	var violated []string
	for _, p := range d.Violated(items) {
		violated = append(violated, p.Name)
	}
	if len(violated) == 0 {
		violated = []string{} // a backend bug; keep the member present
	}
	retry := strconv.FormatInt(RetryAfterSeconds(items, d), 10)
	writeProblem(w, http.StatusTooManyRequests, retry, problem{
		Type:   ProblemQuotaExceeded,
		Title:  "Too Many Requests",
		Status: http.StatusTooManyRequests,
		Detail: "Quota exceeded for " + plural(strconv.Itoa(len(violated)), "policy") + " " +
			strings.Join(violated, ", ") + "; retry after " + retry + " " + plural(retry, "second") + ".",
		ViolatedPolicies: violated,
	})
}

// plural returns word in the plural unless n is "1".
func plural(n, word string) string {
	if n == "1" {
		return word
	}
	if strings.HasSuffix(word, "y") {
		return word[:len(word)-1] + "ies"
	}
	return word + "s"
}

func writeProblem(w http.ResponseWriter, status int, retryAfter string, p problem) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		// Cannot happen: problem holds only strings and an int.
		http.Error(w, http.StatusText(status), status)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set(HeaderRetryAfter, retryAfter)
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
