package httplimit

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// ErrTrustedProxies is wrapped by the errors of [ParseTrustedProxies].
var ErrTrustedProxies = errors.New("httplimit: invalid trusted proxies")

// TrustedProxies is the set of network prefixes whose forwarding headers
// (X-Forwarded-For, Forwarded) are believed. The zero value and a nil
// *TrustedProxies trust nobody. A TrustedProxies is immutable after
// [ParseTrustedProxies] or [NewTrustedProxies] and safe for concurrent use.
type TrustedProxies struct {
	prefixes []netip.Prefix // masked; IPv4 prefixes are in their 4-byte form
}

// NewTrustedProxies returns the set of the given prefixes. IPv4-mapped IPv6
// prefixes (::ffff:10.0.0.0/104) are stored as IPv4 prefixes (10.0.0.0/8) and
// host bits are masked. An invalid prefix is an error wrapping
// [ErrTrustedProxies].
func NewTrustedProxies(prefixes ...netip.Prefix) (*TrustedProxies, error) {
	t := &TrustedProxies{prefixes: make([]netip.Prefix, 0, len(prefixes))}
	for _, p := range prefixes {
		if !p.IsValid() {
			return nil, fmt.Errorf("%w: invalid prefix %q", ErrTrustedProxies, p)
		}
		t.prefixes = append(t.prefixes, canonicalPrefix(p))
	}
	return t, nil
}

// ParseTrustedProxies parses a comma-separated list of CIDR prefixes
// ("10.0.0.0/8") and bare addresses ("127.0.0.1", "::1"), as in
// JOURNAL_TRUSTED_PROXIES. Spaces around entries are ignored; an empty or
// all-blank string is the empty set. An empty entry (",,"), a malformed
// address or prefix, or an address with a zone is an error wrapping
// [ErrTrustedProxies] that names the offending entry.
func ParseTrustedProxies(s string) (*TrustedProxies, error) {
	t := &TrustedProxies{}
	if strings.TrimSpace(s) == "" {
		return t, nil
	}
	for i, field := range strings.Split(s, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			return nil, fmt.Errorf("%w: entry %d is empty", ErrTrustedProxies, i+1)
		}
		var p netip.Prefix
		if strings.Contains(field, "/") {
			var err error
			p, err = netip.ParsePrefix(field)
			if err != nil {
				return nil, fmt.Errorf("%w: %q is not a CIDR prefix such as 10.0.0.0/8", ErrTrustedProxies, field)
			}
		} else {
			a, err := netip.ParseAddr(field)
			if err != nil {
				return nil, fmt.Errorf("%w: %q is not an IP address or a CIDR prefix", ErrTrustedProxies, field)
			}
			if a.Zone() != "" {
				return nil, fmt.Errorf("%w: %q has a zone, which cannot match a forwarded address", ErrTrustedProxies, field)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		t.prefixes = append(t.prefixes, canonicalPrefix(p))
	}
	return t, nil
}

// canonicalPrefix masks p and turns an IPv4-mapped IPv6 prefix of at least
// 96 bits into the IPv4 prefix it covers.
func canonicalPrefix(p netip.Prefix) netip.Prefix {
	a := p.Addr()
	if a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// Contains reports whether addr is trusted. addr is compared after
// unmapping an IPv4-mapped IPv6 address and dropping its zone. It is false
// for an invalid addr and for a nil t.
func (t *TrustedProxies) Contains(addr netip.Addr) bool {
	if t == nil || !addr.IsValid() {
		return false
	}
	addr = normalizeAddr(addr)
	for _, p := range t.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Len reports the number of prefixes in t.
func (t *TrustedProxies) Len() int {
	if t == nil {
		return 0
	}
	return len(t.prefixes)
}

// String returns the prefixes of t, comma-separated, in the syntax accepted
// by [ParseTrustedProxies].
func (t *TrustedProxies) String() string {
	if t == nil {
		return ""
	}
	parts := make([]string, len(t.prefixes))
	for i, p := range t.prefixes {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

// normalizeAddr drops the zone and unmaps IPv4-mapped IPv6, so that
// ::ffff:192.0.2.1 and 192.0.2.1 are the same client.
func normalizeAddr(a netip.Addr) netip.Addr {
	return a.WithZone("").Unmap()
}

// ClientIP returns the address of the client that sent r, per DESIGN 3.3:
//
//   - The TCP peer (r.RemoteAddr) is the client unless trusted contains it;
//     forwarding headers sent by an untrusted peer are ignored.
//   - From a trusted peer, the X-Forwarded-For entries (all header lines, in
//     order, comma-separated) are walked from the right, skipping trusted
//     addresses: the first untrusted address is the client; when every
//     address is trusted the left-most is. A malformed entry (including
//     "unknown" and empty entries) ends the walk and the last valid address
//     seen (possibly the peer itself) is the client. An entry may carry a
//     port ("192.0.2.1:443", "[2001:db8::1]:443").
//   - The RFC 7239 Forwarded header's for= parameters are walked the same way,
//     but only when the request has no X-Forwarded-For (header lines that are
//     blank count as absent). Obfuscated identifiers ("_hidden") and
//     "unknown" are malformed, as is an element without for=.
//
// The result is unmapped (IPv4-mapped IPv6 is IPv4) and has no zone. It is
// the invalid netip.Addr{} only when r.RemoteAddr is not an IP address (for
// example a Unix socket peer); see [SubjectForIP]. A nil trusted trusts
// nobody. ClientIP does not allocate for requests without a Forwarded header.
func ClientIP(r *http.Request, trusted *TrustedProxies) netip.Addr {
	peer := parsePeer(r.RemoteAddr)
	if !trusted.Contains(peer) {
		return peer
	}
	if xff := r.Header["X-Forwarded-For"]; hasNonBlank(xff) {
		return walkXFF(xff, peer, trusted)
	}
	if fwd := r.Header["Forwarded"]; hasNonBlank(fwd) {
		return walkForwarded(fwd, peer, trusted)
	}
	return peer
}

// parsePeer parses a RemoteAddr ("ip:port", "[v6]:port" or a bare address).
func parsePeer(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return normalizeAddr(ap.Addr())
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return normalizeAddr(a)
	}
	return netip.Addr{}
}

func hasNonBlank(lines []string) bool {
	for _, l := range lines {
		if strings.TrimSpace(l) != "" {
			return true
		}
	}
	return false
}

// walkXFF walks the X-Forwarded-For lines from the right without allocating.
func walkXFF(lines []string, peer netip.Addr, trusted *TrustedProxies) netip.Addr {
	client := peer
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		if strings.TrimSpace(line) == "" {
			continue
		}
		for {
			entry := line
			j := strings.LastIndexByte(line, ',')
			if j >= 0 {
				entry = line[j+1:]
			}
			a, ok := parseXFFEntry(strings.TrimSpace(entry))
			if !ok {
				return client
			}
			client = a
			if !trusted.Contains(a) {
				return a
			}
			if j < 0 {
				break
			}
			line = line[:j]
		}
	}
	return client
}

// parseXFFEntry parses one X-Forwarded-For entry: an IP address, optionally
// with a port ("192.0.2.1:80", "[2001:db8::1]:80").
func parseXFFEntry(s string) (netip.Addr, bool) {
	if s == "" {
		return netip.Addr{}, false
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return normalizeAddr(a), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return normalizeAddr(ap.Addr()), true
	}
	return netip.Addr{}, false
}

// walkForwarded walks the for= parameters of RFC 7239 Forwarded lines from
// the right.
func walkForwarded(lines []string, peer netip.Addr, trusted *TrustedProxies) netip.Addr {
	var elems []string
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		elems = splitOutsideQuotes(l, ',', elems)
	}
	client := peer
	for i := len(elems) - 1; i >= 0; i-- {
		a, ok := forwardedFor(elems[i])
		if !ok {
			return client
		}
		client = a
		if !trusted.Contains(a) {
			return a
		}
	}
	return client
}

// splitOutsideQuotes appends to dst the parts of s separated by sep outside
// quoted strings (which may contain backslash escapes).
func splitOutsideQuotes(s string, sep byte, dst []string) []string {
	start, inQuote := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == sep:
			dst = append(dst, s[start:i])
			start = i + 1
		}
	}
	return append(dst, s[start:])
}

// forwardedFor returns the node of the single for= parameter of one
// forwarded-element, or false when the element is malformed, lacks for=,
// repeats it, or its node is not an IP address.
func forwardedFor(elem string) (netip.Addr, bool) {
	var node string
	found := false
	for _, pair := range splitOutsideQuotes(elem, ';', make([]string, 0, 4)) {
		pair = strings.TrimSpace(pair)
		name, value, ok := strings.Cut(pair, "=")
		if !ok || !isToken(name) {
			return netip.Addr{}, false
		}
		if strings.HasPrefix(value, `"`) {
			v, ok := unquote(value)
			if !ok {
				return netip.Addr{}, false
			}
			value = v
		} else if !isToken(value) {
			return netip.Addr{}, false
		}
		if strings.EqualFold(name, "for") {
			if found {
				return netip.Addr{}, false
			}
			node, found = value, true
		}
	}
	if !found {
		return netip.Addr{}, false
	}
	return parseNode(node)
}

// parseNode parses an RFC 7239 node: IPv4 or "[" IPv6 "]", optionally
// followed by ":" port. "unknown" and obfuscated nodes are not addresses.
func parseNode(s string) (netip.Addr, bool) {
	var host, port string
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, false
		}
		host, port = s[1:end], s[end+1:]
		if port != "" {
			if port[0] != ':' {
				return netip.Addr{}, false
			}
			port = port[1:]
			if port == "" {
				return netip.Addr{}, false
			}
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return netip.Addr{}, false
		}
		if port != "" && !isNodePort(port) {
			return netip.Addr{}, false
		}
		return a.Unmap(), true
	}
	host = s
	if i := strings.IndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
		if !isNodePort(port) {
			return netip.Addr{}, false
		}
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Is4() {
		return netip.Addr{}, false
	}
	return a, true
}

// isNodePort reports whether s is an RFC 7239 node-port: 1-5 digits or an
// obfuscated port ("_" followed by ALPHA / DIGIT / "." / "_" / "-").
func isNodePort(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '_' {
		for i := 1; i < len(s); i++ {
			c := s[i]
			if !(isAlnum(c) || c == '.' || c == '_' || c == '-') {
				return false
			}
		}
		return len(s) > 1
	}
	if len(s) > 5 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// isToken reports whether s is an RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlnum(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// unquote decodes an RFC 9110 quoted-string that must span all of s.
func unquote(s string) (string, bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", false
	}
	s = s[1 : len(s)-1]
	if strings.IndexByte(s, '\\') < 0 {
		if strings.IndexByte(s, '"') >= 0 {
			return "", false
		}
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\\':
			i++
			if i == len(s) {
				return "", false
			}
			b.WriteByte(s[i])
		case '"':
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

// SubjectForIP returns the rate-limit subject of a client address:
// "ip:203.0.113.7" for IPv4 (including IPv4-mapped IPv6), the /64 network
// for IPv6 ("ip:2001:db8:1:2::/64"), so that rotating addresses inside one
// /64 does not escape the limit, and "ip:unknown" for the invalid Addr (a
// peer that is not an IP address; all such peers share one subject).
func SubjectForIP(addr netip.Addr) string {
	if !addr.IsValid() {
		return "ip:unknown"
	}
	addr = normalizeAddr(addr)
	var buf [64]byte
	b := append(buf[:0], "ip:"...)
	if addr.Is4() {
		b = addr.AppendTo(b)
	} else {
		b = netip.PrefixFrom(addr, 64).Masked().AppendTo(b)
	}
	return string(b)
}
