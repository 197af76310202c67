package httplimit

import (
	"net/http"
	"strconv"
	"time"

	"github.com/journalsvc/journal/ratelimit"
)

// Header field names written by this package.
const (
	HeaderRateLimitPolicy = "RateLimit-Policy"
	HeaderRateLimit       = "RateLimit"
	HeaderLegacyLimit     = "X-RateLimit-Limit"
	HeaderLegacyRemaining = "X-RateLimit-Remaining"
	HeaderLegacyReset     = "X-RateLimit-Reset"
	HeaderRetryAfter      = "Retry-After"
)

// Canonical (net/textproto) forms of the header keys, used to index
// http.Header without re-canonicalising (and allocating) on every request.
const (
	keyRateLimitPolicy = "Ratelimit-Policy"
	keyRateLimit       = "Ratelimit"
	keyLegacyLimit     = "X-Ratelimit-Limit"
	keyLegacyRemaining = "X-Ratelimit-Remaining"
	keyLegacyReset     = "X-Ratelimit-Reset"
)

// Boolean Structured Field parameters marking a shadow policy and a result
// decided without the shared store.
const (
	ParamShadow   = "journal-shadow"
	ParamDegraded = "journal-degraded"
)

// SetHeaders adds to h one list member per item of d (the decision made
// for items) to the draft-10
// (draft-ietf-httpapi-ratelimit-headers-10) fields
//
//	RateLimit-Policy: "ip";q=100;w=60
//	RateLimit: "ip";r=42;t=1
//
// where q is [ratelimit.Policy.Limit], w the policy period in whole seconds
// (rounded up), r the remaining quota (0 for a result that denied) and t the
// time until more quota is available in whole seconds, rounded up (for a
// result that denied, at least its RetryAfter). Shadow policies add the
// boolean parameter ;journal-shadow and degraded results ;journal-degraded,
// to the members of both fields. Members are appended to those already in h
// (an earlier middleware's), in one comma-separated field line.
//
// SetHeaders also sets the legacy X-RateLimit-Limit, X-RateLimit-Remaining
// and X-RateLimit-Reset (delta seconds, like t). When d denies they describe
// the violated policy with the latest retry. Otherwise they describe the
// enforced (non-shadow) policy with the lowest remaining quota (ties: the
// later reset), unless h already describes one with a remaining quota as low
// or lower (set by an earlier middleware), which is kept. Shadow policies
// never appear in the legacy fields, since nothing marks them there.
//
// All the values it writes share one string and one []string backing array:
// two allocations, whatever the number of policies.
func SetHeaders(h http.Header, items []ratelimit.Item, d *ratelimit.Decision) {
	if len(d.Results) == 0 {
		return
	}
	var stack [512]byte
	buf := stack[:0]
	var ends [5]int // where each value ends in buf
	buf = appendMembers(buf, h[keyRateLimitPolicy], items, d, appendPolicyMember)
	ends[0] = len(buf)
	buf = appendMembers(buf, h[keyRateLimit], items, d, appendLimitMember)
	ends[1] = len(buf)
	keys := [5]string{keyRateLimitPolicy, keyRateLimit, keyLegacyLimit, keyLegacyRemaining, keyLegacyReset}
	n := 2
	if i, ok := legacyResult(h, items, d); ok {
		res := &d.Results[i]
		buf = strconv.AppendInt(buf, items[i].Policy.Limit(), 10)
		ends[2] = len(buf)
		buf = strconv.AppendInt(buf, remaining(res), 10)
		ends[3] = len(buf)
		buf = strconv.AppendInt(buf, resetSeconds(res), 10)
		ends[4] = len(buf)
		n = 5
	}
	all, vals := string(buf), make([]string, n)
	start := 0
	for i := range n {
		vals[i], start = all[start:ends[i]], ends[i]
		h[keys[i]] = vals[i : i+1 : i+1]
	}
}

// appendPrevious appends the members already in a field (prev, its lines),
// and the separator before the new ones, keeping a single field line.
// appendMembers appends the members of one field: those an earlier
// middleware set (prev), then one per result, written by member.
func appendMembers(b []byte, prev []string, items []ratelimit.Item, d *ratelimit.Decision, member func([]byte, *ratelimit.Policy, *ratelimit.Result) []byte) []byte {
	b = appendPrevious(b, prev)
	for i := range d.Results {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = member(b, &items[i].Policy, &d.Results[i])
	}
	return b
}

func appendPrevious(b []byte, prev []string) []byte {
	for _, v := range prev {
		b = append(b, v...)
		b = append(b, ", "...)
	}
	return b
}

func appendPolicyMember(b []byte, p *ratelimit.Policy, res *ratelimit.Result) []byte {
	b = appendSFString(b, p.Name)
	b = append(b, ";q="...)
	b = strconv.AppendInt(b, p.Limit(), 10)
	b = append(b, ";w="...)
	b = strconv.AppendInt(b, ceilSeconds(p.Rate.Per), 10)
	return appendFlags(b, p, res)
}

func appendLimitMember(b []byte, p *ratelimit.Policy, res *ratelimit.Result) []byte {
	b = appendSFString(b, p.Name)
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, remaining(res), 10)
	b = append(b, ";t="...)
	b = strconv.AppendInt(b, resetSeconds(res), 10)
	return appendFlags(b, p, res)
}

func appendFlags(b []byte, p *ratelimit.Policy, res *ratelimit.Result) []byte {
	if p.Shadow {
		b = append(b, ';')
		b = append(b, ParamShadow...)
	}
	if res.Degraded {
		b = append(b, ';')
		b = append(b, ParamDegraded...)
	}
	return b
}

// appendSFString appends s as an RFC 8941 sf-string. Bytes that an sf-string
// cannot hold (controls, non-ASCII) become '?'; policy names never contain
// them.
func appendSFString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c > 0x7e:
			b = append(b, '?')
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// remaining is the r of res: 0 when it denied.
func remaining(res *ratelimit.Result) int64 {
	if !res.Allowed || res.Remaining < 0 {
		return 0
	}
	return res.Remaining
}

// resetSeconds is the t of res: ResetAfter (for a denial at least RetryAfter)
// in whole seconds, rounded up.
func resetSeconds(res *ratelimit.Result) int64 {
	d := res.ResetAfter
	if !res.Allowed && res.RetryAfter > d {
		d = res.RetryAfter
	}
	return ceilSeconds(d)
}

// ceilSeconds rounds d up to whole seconds; 0 for d <= 0.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	s := int64(d / time.Second)
	if d%time.Second != 0 {
		s++
	}
	return s
}

// RetryAfterSeconds returns the Retry-After of a denied decision d, made for
// items: the latest retry of its violated policies (and at least
// d.RetryAfter) in whole seconds, rounded up, and never less than 1.
func RetryAfterSeconds(items []ratelimit.Item, d *ratelimit.Decision) int64 {
	latest := d.RetryAfter
	for i := range d.Results {
		if res := &d.Results[i]; !res.Allowed && !items[i].Policy.Shadow && res.RetryAfter > latest {
			latest = res.RetryAfter
		}
	}
	return max(ceilSeconds(latest), 1)
}

// legacyResult picks the index of the result the legacy headers describe
// (see SetHeaders); ok is false when there is none, or when h already
// describes one with a remaining quota as low or lower and d admits.
func legacyResult(h http.Header, items []ratelimit.Item, d *ratelimit.Decision) (best int, ok bool) {
	best = -1
	if !d.Allowed {
		for i := range d.Results {
			if r := &d.Results[i]; r.Allowed || items[i].Policy.Shadow {
				continue
			}
			if best < 0 || d.Results[i].RetryAfter > d.Results[best].RetryAfter {
				best = i
			}
		}
		if best >= 0 {
			return best, true
		}
	}
	for i := range d.Results {
		if items[i].Policy.Shadow {
			continue
		}
		if best < 0 {
			best = i
			continue
		}
		r, res := &d.Results[i], &d.Results[best]
		if remaining(r) < remaining(res) ||
			remaining(r) == remaining(res) && resetSeconds(r) > resetSeconds(res) {
			best = i
		}
	}
	if best < 0 {
		return -1, false
	}
	if prev := h[keyLegacyRemaining]; d.Allowed && len(prev) > 0 {
		if n, err := strconv.ParseInt(prev[0], 10, 64); err == nil && n <= remaining(&d.Results[best]) {
			return -1, false
		}
	}
	return best, true
}
