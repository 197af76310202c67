package httplimit

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func mustTrusted(tb testing.TB, s string) *TrustedProxies {
	tb.Helper()
	t, err := ParseTrustedProxies(s)
	if err != nil {
		tb.Fatalf("ParseTrustedProxies(%q): %v", s, err)
	}
	return t
}

func TestParseTrustedProxies(t *testing.T) {
	tests := []struct {
		in      string
		want    string // String() of the result
		wantErr string // substring of the error
	}{
		{in: "", want: ""},
		{in: "   ", want: ""},
		{in: "10.0.0.0/8, 127.0.0.1/32", want: "10.0.0.0/8,127.0.0.1/32"},
		{in: "127.0.0.1", want: "127.0.0.1/32"},
		{in: "::1", want: "::1/128"},
		{in: " 2001:db8::/32 ,192.168.1.7 ", want: "2001:db8::/32,192.168.1.7/32"},
		{in: "10.1.2.3/8", want: "10.0.0.0/8"},           // host bits masked
		{in: "::ffff:10.0.0.0/104", want: "10.0.0.0/8"},  // IPv4-mapped prefix is IPv4
		{in: "::ffff:192.0.2.1", want: "192.0.2.1/32"},   // IPv4-mapped address is IPv4
		{in: "10.0.0.0/8,", wantErr: "entry 2 is empty"}, // trailing comma
		{in: "10.0.0.0/8,,1.2.3.4", wantErr: "entry 2 is empty"},
		{in: "10.0.0.0/33", wantErr: `"10.0.0.0/33" is not a CIDR prefix`},
		{in: "10.0.0/8", wantErr: `"10.0.0/8" is not a CIDR prefix`},
		{in: "proxy.internal", wantErr: `"proxy.internal" is not an IP address`},
		{in: "1.2.3.4:80", wantErr: `"1.2.3.4:80" is not an IP address`},
		{in: "fe80::1%eth0", wantErr: "has a zone"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTrustedProxies(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseTrustedProxies(%q) = %v, want error containing %q", tt.in, got, tt.wantErr)
				}
				if !errors.Is(err, ErrTrustedProxies) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseTrustedProxies(%q) error = %q, want ErrTrustedProxies containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTrustedProxies(%q): %v", tt.in, err)
			}
			if got := got.String(); got != tt.want {
				t.Errorf("ParseTrustedProxies(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestTrustedProxiesContains(t *testing.T) {
	tp := mustTrusted(t, "10.0.0.0/8, 2001:db8:ff::/48")
	tests := []struct {
		addr string
		want bool
	}{
		{"10.1.2.3", true},
		{"::ffff:10.1.2.3", true}, // mapped form of a trusted IPv4
		{"11.0.0.1", false},
		{"2001:db8:ff:1::9", true},
		{"2001:db8:fe::1", false},
		{"fe80::1%eth0", false},
	}
	for _, tt := range tests {
		if got := tp.Contains(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Contains(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if tp.Contains(netip.Addr{}) {
		t.Error("Contains(invalid) = true, want false")
	}
	var none *TrustedProxies
	if none.Contains(netip.MustParseAddr("10.0.0.1")) {
		t.Error("nil TrustedProxies trusts 10.0.0.1")
	}
	if _, err := NewTrustedProxies(netip.Prefix{}); !errors.Is(err, ErrTrustedProxies) {
		t.Errorf("NewTrustedProxies(invalid) error = %v, want ErrTrustedProxies", err)
	}
	np, err := NewTrustedProxies(netip.MustParsePrefix("::ffff:192.0.2.0/120"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := np.String(), "192.0.2.0/24"; got != want {
		t.Errorf("NewTrustedProxies(::ffff:192.0.2.0/120) = %q, want %q", got, want)
	}
}

// clientIPCase is one request seen by ClientIP.
type clientIPCase struct {
	name    string
	trusted string
	remote  string
	xff     []string // X-Forwarded-For header lines
	fwd     []string // Forwarded header lines
	want    string   // "" means the invalid Addr
}

var clientIPCases = []clientIPCase{
	// The peer alone.
	{name: "peer v4", remote: "203.0.113.7:5555", want: "203.0.113.7"},
	{name: "peer v6", remote: "[2001:db8::7]:5555", want: "2001:db8::7"},
	{name: "peer v4-mapped", remote: "[::ffff:203.0.113.7]:5555", want: "203.0.113.7"},
	{name: "peer v6 zone dropped", remote: "[fe80::1%eth0]:5555", want: "fe80::1"},
	{name: "peer without port", remote: "203.0.113.7", want: "203.0.113.7"},
	{name: "peer not an IP", remote: "@", want: ""},
	{name: "peer empty", remote: "", want: ""},
	{name: "trusted peer without headers", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", want: "10.0.0.2"},

	// Spoofing: forwarding headers from an untrusted peer are ignored.
	{name: "spoofed xff, no trusted proxies", remote: "203.0.113.7:1", xff: []string{"198.51.100.1"}, want: "203.0.113.7"},
	{name: "spoofed xff, untrusted peer", trusted: "10.0.0.0/8", remote: "203.0.113.7:1", xff: []string{"10.0.0.1, 198.51.100.1"}, want: "203.0.113.7"},
	{name: "spoofed forwarded, untrusted peer", trusted: "10.0.0.0/8", remote: "203.0.113.7:1", fwd: []string{"for=198.51.100.1"}, want: "203.0.113.7"},
	{name: "spoofed trusted address in xff, untrusted peer", trusted: "10.0.0.0/8", remote: "203.0.113.7:1", xff: []string{"10.0.0.9"}, want: "203.0.113.7"},
	// Spoofing through a trusted proxy that appends: the client's own left-most
	// entries are not believed, the right-most untrusted one is.
	{name: "client-supplied xff prefix ignored", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", xff: []string{"1.1.1.1, 2.2.2.2, 203.0.113.7"}, want: "203.0.113.7"},
	{name: "client claims to be a trusted proxy", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", xff: []string{"10.9.9.9, 203.0.113.7"}, want: "203.0.113.7"},
	{name: "client pins a victim behind itself", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", xff: []string{"198.51.100.99", "203.0.113.7"}, want: "203.0.113.7"},

	// X-Forwarded-For walk.
	{name: "xff one hop", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", xff: []string{"203.0.113.7"}, want: "203.0.113.7"},
	{name: "xff skips trusted hops", trusted: "10.0.0.0/8, 192.168.0.0/16", remote: "10.0.0.2:1", xff: []string{"203.0.113.7, 192.168.1.1, 10.0.0.3"}, want: "203.0.113.7"},
	{name: "xff all trusted: left-most", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", xff: []string{"10.0.0.5, 10.0.0.4, 10.0.0.3"}, want: "10.0.0.5"},
	{name: "xff several lines in order", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", xff: []string{"198.51.100.1, 203.0.113.7", "10.0.0.4", "10.0.0.3"}, want: "203.0.113.7"},
	{name: "xff lines all trusted: left-most of first line", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", xff: []string{"10.0.0.6, 10.0.0.5", "10.0.0.4"}, want: "10.0.0.6"},
	{name: "xff spaces and tabs", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", xff: []string{" 198.51.100.1 ,\t203.0.113.7\t, 10.0.0.3 "}, want: "203.0.113.7"},
	{name: "xff malformed ends walk at last valid", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", xff: []string{"203.0.113.7, garbage, 10.0.0.4, 10.0.0.3"}, want: "10.0.0.4"},
	{name: "xff malformed right-most: peer", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", xff: []string{"203.0.113.7, not-an-ip"}, want: "10.0.0.2"},
	{name: "xff unknown is malformed", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", xff: []string{"203.0.113.7, unknown, 10.0.0.3"}, want: "10.0.0.3"},
	{name: "xff empty entry is malformed", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", xff: []string{"203.0.113.7,, 10.0.0.3"}, want: "10.0.0.3"},
	{name: "xff trailing comma is malformed", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", xff: []string{"203.0.113.7,"}, want: "10.0.0.2"},
	{name: "xff malformed in a later line", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", xff: []string{"203.0.113.7", "10.0.0.5, x", "10.0.0.3"}, want: "10.0.0.3"},
	{name: "xff with port", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", xff: []string{"203.0.113.7:4711, 10.0.0.3:80"}, want: "203.0.113.7"},
	{name: "xff v6 with port", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", xff: []string{"[2001:db8::7]:4711"}, want: "2001:db8::7"},
	{name: "xff v6", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", xff: []string{"2001:db8::7"}, want: "2001:db8::7"},
	{name: "xff v4-mapped v6 is v4", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", xff: []string{"::ffff:203.0.113.7"}, want: "203.0.113.7"},
	{name: "xff v4-mapped trusted hop skipped", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", xff: []string{"203.0.113.7, ::ffff:10.0.0.3"}, want: "203.0.113.7"},
	{name: "trusted v4-mapped peer", trusted: "10.0.0.0/8", remote: "[::ffff:10.0.0.2]:1", xff: []string{"203.0.113.7"}, want: "203.0.113.7"},
	{name: "trusted v6 peer", trusted: "fd00::/8", remote: "[fd00::2]:1", xff: []string{"203.0.113.7"}, want: "203.0.113.7"},
	{name: "trusted peer by bare address", trusted: "127.0.0.1", remote: "127.0.0.1:1", xff: []string{"203.0.113.7"}, want: "203.0.113.7"},
	{name: "xff blank line is absent", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", xff: []string{"  "}, want: "10.0.0.2"},
	{name: "xff blank lines skipped", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", xff: []string{"203.0.113.7", ""}, want: "203.0.113.7"},

	// Forwarded (RFC 7239), only without X-Forwarded-For.
	{name: "fwd simple", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", fwd: []string{"for=203.0.113.7"}, want: "203.0.113.7"},
	{name: "fwd case-insensitive name, other params", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", fwd: []string{"proto=https;For=203.0.113.7;by=10.0.0.2"}, want: "203.0.113.7"},
	{name: "fwd quoted v4 with port", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", fwd: []string{`for="203.0.113.7:4711"`}, want: "203.0.113.7"},
	{name: "fwd quoted v6 with port", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", fwd: []string{`for="[2001:db8:cafe::17]:4711"`}, want: "2001:db8:cafe::17"},
	{name: "fwd quoted v6", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", fwd: []string{`for="[2001:db8:cafe::17]"`}, want: "2001:db8:cafe::17"},
	{name: "fwd quoted with escapes", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", fwd: []string{`for="\203.0.113.7"`}, want: "203.0.113.7"},
	{name: "fwd walk from right, skip trusted", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", fwd: []string{"for=198.51.100.1, for=203.0.113.7", "for=10.0.0.3;proto=http"}, want: "203.0.113.7"},
	{name: "fwd all trusted: left-most", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", fwd: []string{"for=10.0.0.4, for=10.0.0.3"}, want: "10.0.0.4"},
	{name: "fwd unknown is malformed", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", fwd: []string{"for=203.0.113.7, for=unknown, for=10.0.0.3"}, want: "10.0.0.3"},
	{name: "fwd obfuscated is malformed", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", fwd: []string{"for=203.0.113.7, for=_hidden"}, want: "10.0.0.2"},
	{name: "fwd obfuscated port is fine", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", fwd: []string{`for="203.0.113.7:_p1"`}, want: "203.0.113.7"},
	{name: "fwd element without for is malformed", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", fwd: []string{"for=203.0.113.7, proto=https"}, want: "10.0.0.2"},
	{name: "fwd duplicate for is malformed", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", fwd: []string{"for=198.51.100.1;for=203.0.113.7"}, want: "10.0.0.2"},
	{name: "fwd unbracketed v6 is malformed", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", fwd: []string{`for="2001:db8::1"`}, want: "10.0.0.2"},
	{name: "fwd bracketed v4 is malformed", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", fwd: []string{`for="[203.0.113.7]"`}, want: "10.0.0.2"},
	{name: "fwd bad port is malformed", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", fwd: []string{`for="203.0.113.7:123456"`}, want: "10.0.0.2"},
	{name: "fwd unterminated quote is malformed", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", fwd: []string{`for="203.0.113.7`}, want: "10.0.0.2"},
	{name: "fwd comma inside quotes stays in element", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", fwd: []string{`for=203.0.113.7;ext="a,b"`}, want: "203.0.113.7"},
	{name: "fwd v4-mapped in brackets is v4", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", fwd: []string{`for="[::ffff:203.0.113.7]"`}, want: "203.0.113.7"},
	{name: "xff wins over forwarded", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", xff: []string{"203.0.113.7"}, fwd: []string{"for=198.51.100.1"}, want: "203.0.113.7"},
	{name: "blank xff falls back to forwarded", trusted: "10.0.0.0/8", remote: "10.0.0.2:1", xff: []string{""}, fwd: []string{"for=198.51.100.1"}, want: "198.51.100.1"},
}

func newClientIPRequest(c clientIPCase) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = c.remote
	for _, v := range c.xff {
		r.Header.Add("X-Forwarded-For", v)
	}
	for _, v := range c.fwd {
		r.Header.Add("Forwarded", v)
	}
	return r
}

func TestClientIP(t *testing.T) {
	for _, c := range clientIPCases {
		t.Run(c.name, func(t *testing.T) {
			trusted := mustTrusted(t, c.trusted)
			got := ClientIP(newClientIPRequest(c), trusted)
			var want netip.Addr
			if c.want != "" {
				want = netip.MustParseAddr(c.want)
			}
			if got != want {
				t.Errorf("ClientIP(remote=%q xff=%q fwd=%q, trusted=%q) = %v, want %v", c.remote, c.xff, c.fwd, c.trusted, got, want)
			}
		})
	}
}

func TestSubjectForIP(t *testing.T) {
	tests := []struct {
		addr netip.Addr
		want string
	}{
		{netip.MustParseAddr("203.0.113.7"), "ip:203.0.113.7"},
		{netip.MustParseAddr("::ffff:203.0.113.7"), "ip:203.0.113.7"},
		{netip.MustParseAddr("2001:db8:1:2::1"), "ip:2001:db8:1:2::/64"},
		{netip.MustParseAddr("2001:db8:1:2:ffff:ffff:ffff:ffff"), "ip:2001:db8:1:2::/64"},
		{netip.MustParseAddr("2001:db8:1:3::1"), "ip:2001:db8:1:3::/64"},
		{netip.MustParseAddr("fe80::1%eth0"), "ip:fe80::/64"},
		{netip.MustParseAddr("::1"), "ip:::/64"},
		{netip.Addr{}, "ip:unknown"},
	}
	for _, tt := range tests {
		if got := SubjectForIP(tt.addr); got != tt.want {
			t.Errorf("SubjectForIP(%v) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

// TestSubjectIPv6Rotation shows that rotating the interface identifier inside
// one /64 keeps the subject, while another /64 gets its own.
func TestSubjectIPv6Rotation(t *testing.T) {
	base := netip.MustParseAddr("2001:db8:aa:bb::")
	want := SubjectForIP(base)
	b := base.As16()
	for i := range 64 {
		b[15-i/8] ^= 1 << (i % 8)
		if got := SubjectForIP(netip.AddrFrom16(b)); got != want {
			t.Fatalf("SubjectForIP(%v) = %q, want %q (same /64)", netip.AddrFrom16(b), got, want)
		}
	}
	other := netip.MustParseAddr("2001:db8:aa:bc::1")
	if got := SubjectForIP(other); got == want {
		t.Errorf("SubjectForIP(%v) = %q, the subject of another /64", other, got)
	}
}

func TestClientIPNoAllocs(t *testing.T) {
	trusted := mustTrusted(t, "10.0.0.0/8")
	r := newClientIPRequest(clientIPCase{remote: "10.0.0.2:1", xff: []string{"198.51.100.1, 203.0.113.7", "10.0.0.3"}})
	allocs := testing.AllocsPerRun(100, func() {
		if got := ClientIP(r, trusted); got != netip.MustParseAddr("203.0.113.7") {
			t.Fatalf("ClientIP = %v", got)
		}
	})
	if allocs != 0 {
		t.Errorf("ClientIP with X-Forwarded-For allocates %v times, want 0", allocs)
	}
}

func FuzzClientIP(f *testing.F) {
	for _, c := range clientIPCases {
		f.Add(c.remote, strings.Join(c.xff, "\n"), strings.Join(c.fwd, "\n"))
	}
	trusted := mustTrusted(f, "10.0.0.0/8, fd00::/8, 127.0.0.1")
	f.Fuzz(func(t *testing.T, remote, xff, fwd string) {
		r := &http.Request{RemoteAddr: remote, Header: http.Header{}}
		for l := range strings.SplitSeq(xff, "\n") {
			if xff != "" {
				r.Header.Add("X-Forwarded-For", l)
			}
		}
		for l := range strings.SplitSeq(fwd, "\n") {
			if fwd != "" {
				r.Header.Add("Forwarded", l)
			}
		}
		got := ClientIP(r, trusted)
		peer := parsePeer(remote)
		switch {
		case !trusted.Contains(peer):
			// An untrusted peer is the client, whatever the headers say.
			if got != peer {
				t.Fatalf("untrusted peer %q: ClientIP = %v, want the peer", remote, got)
			}
		default:
			if !got.IsValid() {
				t.Fatalf("trusted peer %q: ClientIP is invalid", remote)
			}
			// The client is the peer or an address named in a header.
			if got != peer && !mentionsAddr(strings.ReplaceAll(xff+"\n"+fwd, `\`, ""), got) {
				t.Fatalf("ClientIP = %v, neither the peer %v nor in the headers %q / %q", got, peer, xff, fwd)
			}
		}
		if got.Is4In6() || got.Zone() != "" {
			t.Fatalf("ClientIP = %v, want unmapped and without zone", got)
		}
		if s := SubjectForIP(got); !strings.HasPrefix(s, "ip:") {
			t.Fatalf("SubjectForIP(%v) = %q", got, s)
		}
	})
}

// mentionsAddr reports whether s names a in any textual form that ClientIP
// accepts (with or without port, zone, brackets, IPv4 mapping).
func mentionsAddr(s string, a netip.Addr) bool {
	for _, f := range strings.FieldsFunc(s, func(r rune) bool {
		return strings.ContainsRune(" ,;=\"[]\t\n\\", r)
	}) {
		for _, cand := range []string{f, strings.SplitN(f, "%", 2)[0]} {
			if b, err := netip.ParseAddr(cand); err == nil && b.WithZone("").Unmap() == a {
				return true
			}
			if ap, err := netip.ParseAddrPort(cand); err == nil && ap.Addr().WithZone("").Unmap() == a {
				return true
			}
			if h, _, ok := strings.Cut(cand, ":"); ok {
				if b, err := netip.ParseAddr(h); err == nil && b == a {
					return true
				}
			}
		}
	}
	return false
}
