package httplimit

import (
	"net/http"
	"strconv"
	"strings"
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
func SetHeaders(h http.Header, items []ratelimit.Item, d *ratelimit.Decision) {
	if len(d.Results) == 0 {
		return
	}
	buf := make([]byte, 0, 64*len(d.Results))
	for i := range d.Results {
		if i > 0 {
			buf = append(buf, ", "...)
		}
		buf = appendPolicyMember(buf, &items[i].Policy, &d.Results[i])
	}
	appendMembers(h, keyRateLimitPolicy, string(buf))
	buf = buf[:0]
	for i := range d.Results {
		if i > 0 {
			buf = append(buf, ", "...)
		}
		buf = appendLimitMember(buf, &items[i].Policy, &d.Results[i])
	}
	appendMembers(h, keyRateLimit, string(buf))
	setLegacy(h, items, d)
}

// appendMembers appends the list members to the field key (canonical) of h,
// keeping a single field line.
func appendMembers(h http.Header, key, members string) {
	prev := h[key]
	switch len(prev) {
	case 0:
		h[key] = []string{members}
	case 1:
		h[key] = []string{prev[0] + ", " + members}
	default:
		h[key] = []string{strings.Join(prev, ", ") + ", " + members}
	}
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
// (see SetHeaders), or -1 when there is none.
func legacyResult(items []ratelimit.Item, d *ratelimit.Decision) int {
	best := -1
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
			return best
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
	return best
}

func setLegacy(h http.Header, items []ratelimit.Item, d *ratelimit.Decision) {
	i := legacyResult(items, d)
	if i < 0 {
		return
	}
	res := &d.Results[i]
	rem := remaining(res)
	if prev := h[keyLegacyRemaining]; d.Allowed && len(prev) > 0 {
		if n, err := strconv.ParseInt(prev[0], 10, 64); err == nil && n <= rem {
			return
		}
	}
	h[keyLegacyLimit] = []string{strconv.FormatInt(items[i].Policy.Limit(), 10)}
	h[keyLegacyRemaining] = []string{strconv.FormatInt(rem, 10)}
	h[keyLegacyReset] = []string{strconv.FormatInt(resetSeconds(res), 10)}
}
