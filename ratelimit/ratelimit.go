// Package ratelimit is the journal rate limiter's contract: rates, policies,
// algorithms, fail modes, decisions, the [Limiter] interface every backend
// implements, and [Fallback], the one place that decides what happens when a
// backend's shared store is unavailable.
//
// Three algorithms are offered, all counting only admitted requests:
//
//   - [GCRA] (the default): rate N per D with burst B admits at most
//     B + N*t/D requests in any interval of length t, smoothly after the burst.
//   - [Sliding]: Cloudflare's sliding-window counter: the previous aligned
//     window's count weighted by its overlap plus the current window's count;
//     never more than 2N in any interval of length D.
//   - [Fixed]: at most N per aligned window (so 2N across a boundary).
//
// Backends: memorylimit (in process, exact for one process) and redislimit
// (Redis or Redis Cluster, exact across any number of instances). Both make
// the same decisions for the same calls at the same instants. A decision
// covers several policies of one subject atomically and all-or-nothing: if any
// enforced policy denies, nothing is consumed, every violated policy is
// reported, and [Decision.RetryAfter] is the latest of their retry times.
// Shadow policies are evaluated and reported but never block.
//
// A service running several instances composes a shared backend with a local
// one through [NewFallback]: while the shared store answers, every decision is
// exact; while it does not, each policy follows its [FailMode], and a subject
// the instance has seen continues from the state the store last reported,
// never from a fresh quota.
//
// This package depends on the standard library only.
package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors. Check them with errors.Is.
var (
	// ErrUnavailable is returned (wrapped) by [Limiter.Decide] and
	// [Limiter.Peek] of a backend whose shared store cannot decide, and by
	// [Fallback] when a policy with Fail == [FailClosed] cannot be decided.
	ErrUnavailable = errors.New("ratelimit: store unavailable")
	// ErrSlow is wrapped, together with ErrUnavailable, when a call to the
	// store missed its deadline although the store is not known to be down:
	// the store may still decide (and charge) the call. [Fallback] then
	// grants a subject it knows nothing beyond what time returns.
	ErrSlow = errors.New("ratelimit: store too slow")
	// ErrInvalid is returned (wrapped, with the reason) for a malformed rate,
	// algorithm, fail mode or policy, and by Decide for invalid items (negative
	// cost, a cost larger than the policy's limit, no items, or two items with
	// the same policy name).
	ErrInvalid = errors.New("ratelimit: invalid")
)

// Algorithm selects how a [Policy] counts. The zero value is [GCRA].
type Algorithm uint8

// The algorithms.
const (
	GCRA    Algorithm = iota // generic cell rate algorithm (default)
	Sliding                  // sliding-window counter
	Fixed                    // fixed, epoch-aligned windows
)

var algorithms = enum[Algorithm]{kind: "algorithm", names: []string{GCRA: "gcra", Sliding: "sliding", Fixed: "fixed"}}

// ParseAlgorithm parses "gcra", "sliding" or "fixed" (case-insensitive). Any
// other string returns an error wrapping [ErrInvalid].
func ParseAlgorithm(s string) (Algorithm, error) { return algorithms.parse(s) }

// String returns "gcra", "sliding" or "fixed" (or "algorithm(N)" if unknown).
func (a Algorithm) String() string { return algorithms.name(a) }

// FailMode says what a backend does for a policy when its shared store is
// unavailable. The zero value is [FailLocal].
type FailMode uint8

// The fail modes.
const (
	// FailLocal decides with an in-process limiter at ceil(N / N_live), where
	// N_live is the number of live instances seen before the outage. Results
	// are marked Degraded.
	FailLocal FailMode = iota
	// FailOpen admits; results are marked Degraded.
	FailOpen
	// FailClosed makes Decide return an error wrapping [ErrUnavailable].
	FailClosed
)

var failModes = enum[FailMode]{kind: "fail mode", names: []string{FailLocal: "local", FailOpen: "open", FailClosed: "closed"}}

// ParseFailMode parses "local", "open" or "closed" (case-insensitive). Any
// other string returns an error wrapping [ErrInvalid].
func ParseFailMode(s string) (FailMode, error) { return failModes.parse(s) }

// String returns "local", "open" or "closed" (or "failmode(N)" if unknown).
func (f FailMode) String() string { return failModes.name(f) }

// enum is the text form of an enumeration T: names[v] is the name of v.
type enum[T ~uint8] struct {
	kind  string // what a T is, for messages: "fail mode"
	names []string
}

// parse returns the value named s, ignoring case and surrounding space, or
// an error wrapping [ErrInvalid] that lists the names.
func (e *enum[T]) parse(s string) (T, error) {
	name := strings.ToLower(strings.TrimSpace(s))
	for v, n := range e.names {
		if n == name {
			return T(v), nil
		}
	}
	last := len(e.names) - 1
	return 0, fmt.Errorf("%w %s %q (want %s or %s)", ErrInvalid, e.kind, s, strings.Join(e.names[:last], ", "), e.names[last])
}

// name returns the name of v, or "kind(N)" (kind without spaces) for a value
// without one.
func (e *enum[T]) name(v T) string {
	if int(v) < len(e.names) {
		return e.names[v]
	}
	return strings.ReplaceAll(e.kind, " ", "") + "(" + strconv.Itoa(int(v)) + ")"
}

// MinPer is the shortest period a [Rate] may have.
const MinPer = time.Second

// maxExact bounds the integer products the algorithms compute so that they
// stay exact in the Redis script, whose Lua numbers are IEEE doubles (exact up
// to 2^53).
const maxExact = 1 << 52

// exceedsExact reports whether a*b > maxExact for a, b >= 0 (which is
// a > maxExact/b for b > 0) without a division: validation runs on every
// decision.
func exceedsExact(a, b int64) bool {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	return hi != 0 || lo > maxExact
}

// Rate is N events per Per, with N >= 1 and Per >= 1s (a whole number of
// milliseconds). The zero value is not a valid rate.
type Rate struct {
	N   int64
	Per time.Duration
}

// ParseRate parses "N/DURATION" where N >= 1 and DURATION is a Go duration of
// at least 1s ("100/1m", "5/1s", "2000/1h", "50000/24h"). The word "off" is
// not a rate: callers that accept it handle it before calling ParseRate.
// Errors wrap [ErrInvalid].
func ParseRate(s string) (Rate, error) {
	ns, ds, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Rate{}, fmt.Errorf("%w rate %q: want N/DURATION, e.g. 100/1m", ErrInvalid, s)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(ns), 10, 64)
	if err != nil {
		return Rate{}, fmt.Errorf("%w rate %q: N is not an integer", ErrInvalid, s)
	}
	d, err := time.ParseDuration(strings.TrimSpace(ds))
	if err != nil {
		return Rate{}, fmt.Errorf("%w rate %q: %q is not a duration", ErrInvalid, s, ds)
	}
	r := Rate{N: n, Per: d}
	if err := r.validate(); err != nil {
		return Rate{}, fmt.Errorf("%w rate %q: %s", ErrInvalid, s, err.Error())
	}
	return r, nil
}

func (r Rate) validate() error {
	switch {
	case r.N < 1:
		return errors.New("the count must be at least 1")
	case r.Per < MinPer:
		return errors.New("the period must be at least 1s")
	case r.Per%time.Millisecond != 0:
		return errors.New("the period must be a whole number of milliseconds")
	case exceedsExact(r.N, r.Per.Milliseconds()):
		return errors.New("the count times the period in milliseconds must not exceed 2^52")
	}
	return nil
}

// String formats r as ParseRate accepts it, e.g. "100/1m0s".
func (r Rate) String() string {
	return strconv.FormatInt(r.N, 10) + "/" + compactDuration(r.Per)
}

// compactDuration formats d like time.Duration.String without zero trailing
// units ("1h", "1h30m", "90s" stays "1m30s"), so ParseRate(r.String()) == r.
func compactDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// Policy is one named limit. The zero value is not valid; see [Policy.Validate].
type Policy struct {
	// Name identifies the policy: [a-z0-9-]{1,32}. It is the header token
	// and the key suffix, so within one decision names must be unique.
	Name string
	// Rate is the sustained rate (and, for the window algorithms, the limit
	// per window).
	Rate Rate
	// Burst is the GCRA burst: how many requests may arrive at once. 0 means
	// Rate.N. The window algorithms ignore it (their limit is Rate.N).
	Burst int64
	// Algorithm selects the counting algorithm; zero is GCRA.
	Algorithm Algorithm
	// Fail is what a backend does when its store is unavailable; zero is
	// FailLocal.
	Fail FailMode
	// Shadow policies are evaluated, counted and reported but never block.
	Shadow bool
	// Lease lets a backend whose state is remote take quota for this policy
	// ahead, in the same round trip as a decision, and spend it locally
	// (redislimit with Options.Lease): fewer round trips, never more
	// admitted than deciding each request remotely would admit, and at
	// most a lease duration of under-admission for other instances. A
	// backend without remote state (memorylimit) ignores it, as do shadow
	// policies.
	Lease bool
}

// Validate reports whether p is usable: a name of 1 to 32 characters from
// [a-z0-9-], a valid rate, a burst >= 0, and a known algorithm and fail mode.
// Errors wrap [ErrInvalid] and name the policy.
func (p Policy) Validate() error {
	if err := validName(p.Name); err != nil {
		return fmt.Errorf("%w policy %q: %s", ErrInvalid, p.Name, err.Error())
	}
	if err := p.Rate.validate(); err != nil {
		return fmt.Errorf("%w policy %q: rate %s: %s", ErrInvalid, p.Name, p.Rate, err.Error())
	}
	if p.Burst < 0 {
		return fmt.Errorf("%w policy %q: burst must not be negative", ErrInvalid, p.Name)
	}
	if p.Algorithm > Fixed {
		return fmt.Errorf("%w policy %q: unknown %s", ErrInvalid, p.Name, p.Algorithm)
	}
	if p.Fail > FailClosed {
		return fmt.Errorf("%w policy %q: unknown %s", ErrInvalid, p.Name, p.Fail)
	}
	if p.Algorithm == GCRA && exceedsExact(p.burst(), p.emissionMicros()) {
		return fmt.Errorf("%w policy %q: burst times the emission interval must not exceed 2^52 µs", ErrInvalid, p.Name)
	}
	return nil
}

func validName(s string) error {
	if len(s) < 1 || len(s) > 32 {
		return errors.New("name must have 1 to 32 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return errors.New("name may only contain a-z, 0-9 and -")
		}
	}
	return nil
}

// Limit is the number of requests the policy admits at once: the burst for
// GCRA (Rate.N when Burst is 0), Rate.N for the window algorithms. It is the
// `q` of the RateLimit-Policy header.
func (p Policy) Limit() int64 {
	if p.Algorithm == GCRA {
		return p.burst()
	}
	return p.Rate.N
}

func (p Policy) burst() int64 {
	if p.Burst > 0 {
		return p.Burst
	}
	return p.Rate.N
}

// Item is one policy checked in a decision, with its cost (0 means 1).
type Item struct {
	Policy Policy
	Cost   int64
}

// Result is the outcome of one item within a decision. It does not repeat
// the item's policy: a Decision's Results are in the order of its items.
type Result struct {
	// Allowed reports whether this policy admitted (for shadow policies:
	// what it would have decided).
	Allowed bool
	// Degraded reports that the result was decided without the shared store
	// (local fallback or fail-open).
	Degraded bool
	// Remaining is the quota left after this decision (0 when denied).
	Remaining int64
	// RetryAfter is, when denied, the time until the request would be
	// admitted by this policy; 0 when allowed.
	RetryAfter time.Duration
	// ResetAfter is the draft-10 `t`: the time until more quota is available
	// (GCRA: at most one emission interval; windows: until the window's end).
	ResetAfter time.Duration
}

// Decision is the all-or-nothing outcome of checking several policies of ONE
// subject atomically. A [Limiter] writes it into a Decision its caller owns,
// reusing the capacity of Results, so a caller that keeps one Decision per
// goroutine (or in a sync.Pool) decides without allocating. The zero value
// is ready to be written.
type Decision struct {
	// Allowed is false iff a non-shadow policy denied; then nothing was
	// consumed.
	Allowed bool
	// RetryAfter is, when !Allowed, the LATEST RetryAfter of the violated
	// (non-shadow) policies; 0 when allowed.
	RetryAfter time.Duration
	// Results has one Result per item, in the order of the items.
	Results []Result
}

// Violated returns the policies of the non-shadow items that denied, in item
// order. items must be those the decision was made for.
func (d *Decision) Violated(items []Item) []Policy {
	var v []Policy
	for i := range d.Results {
		if p := &items[i].Policy; !d.Results[i].Allowed && !p.Shadow {
			v = append(v, *p)
		}
	}
	return v
}

// Degraded reports whether any result was decided without the shared store.
func (d *Decision) Degraded() bool {
	for i := range d.Results {
		if d.Results[i].Degraded {
			return true
		}
	}
	return false
}

// Limiter is the contract every backend implements. Implementations are safe
// for concurrent use.
//
// subject is the identity the policies are keyed by (e.g. "ip:203.0.113.7",
// "user:0190...", "login:<ip>:<sha256hex>"); all keys of one call share it (as
// a Redis hash tag, so one call is one slot and one round trip). Items must
// have valid policies with distinct names, a cost >= 0 (0 means 1) and a cost
// no larger than the policy's [Policy.Limit]; otherwise Decide and Peek return
// an error wrapping [ErrInvalid].
//
// Decide and Peek write the decision into *d, reusing the capacity of
// d.Results (they allocate only when it holds fewer than len(items)
// results), and retain neither d nor items after they return. When they
// return an error, d holds no results and does not admit.
type Limiter interface {
	// Decide checks every item and consumes their costs if and only if
	// every non-shadow policy admits.
	Decide(ctx context.Context, d *Decision, subject string, items ...Item) error
	// Peek writes the Decision that Decide would write now, consuming
	// nothing.
	Peek(ctx context.Context, d *Decision, subject string, items ...Item) error
	// Reset forgets the state of the named policy for subject, so its next
	// request starts with a full quota.
	Reset(ctx context.Context, subject string, policy string) error
}

// Allow decides one request of cost 1 under p for subject. It returns the
// policy's Result; Result.Allowed is true for a shadow policy's denial only in
// the sense that the request may proceed: check [Result.Allowed] together with
// [Policy.Shadow] (or use Decide) when that matters. Allow allocates the
// Decision it passes to l; a hot path calls [Limiter.Decide] with a Decision
// it reuses.
func Allow(ctx context.Context, l Limiter, subject string, p Policy) (Result, error) {
	return AllowN(ctx, l, subject, p, 1)
}

// AllowN is like [Allow] with cost n.
func AllowN(ctx context.Context, l Limiter, subject string, p Policy, n int64) (Result, error) {
	var d Decision
	if err := l.Decide(ctx, &d, subject, Item{Policy: p, Cost: n}); err != nil {
		return Result{}, err
	}
	return d.Results[0], nil
}

// maxRawSubject is the longest subject Key embeds verbatim.
const maxRawSubject = 128

// Key returns the storage key of policy for subject: prefix + "rl:{" + tag +
// "}:" + policy, e.g. Key("journal:", "ip:203.0.113.7", "ip") ==
// "journal:rl:{ip:203.0.113.7}:ip". The braces make tag the Redis Cluster hash
// tag, so all keys of one subject live in one slot.
//
// tag is the subject itself when it has 1 to 128 bytes of printable ASCII
// other than '{', '}' and '~'. Any other subject (empty, long, with braces,
// spaces, '~' or non-ASCII bytes) is replaced by "~" followed by the hex
// SHA-256 of the subject truncated to 128 bits, so a user-controlled subject
// can neither break the hash tag nor collide with a verbatim one. prefix must
// not contain '{'.
func Key(prefix, subject, policy string) string {
	return prefix + "rl:{" + subjectTag(subject) + "}:" + policy
}

// subjectTag returns the hash-tag form of subject used by [Key].
func subjectTag(subject string) string {
	if rawSubject(subject) {
		return subject
	}
	sum := sha256.Sum256([]byte(subject))
	return "~" + hex.EncodeToString(sum[:16])
}

func rawSubject(s string) bool {
	if len(s) == 0 || len(s) > maxRawSubject {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '{' || c == '}' || c == '~' {
			return false
		}
	}
	return true
}

// emissionMicros returns the GCRA emission interval: the period divided by
// N, rounded up to a whole microsecond so that the rate never exceeds N/Per.
func (p Policy) emissionMicros() int64 {
	per := p.Rate.Per.Microseconds()
	return (per + p.Rate.N - 1) / p.Rate.N
}

// EmissionInterval returns the GCRA emission interval of p: Rate.Per / Rate.N
// rounded up to a microsecond. A request of cost c uses c intervals of quota.
func (p Policy) EmissionInterval() time.Duration {
	return time.Duration(p.emissionMicros()) * time.Microsecond
}
