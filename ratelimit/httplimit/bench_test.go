package httplimit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/memorylimit"
)

func BenchmarkClientIP(b *testing.B) {
	trusted := mustTrusted(b, "10.0.0.0/8, 192.168.0.0/16, fd00::/8")
	cases := []struct {
		name string
		c    clientIPCase
	}{
		{"peer", clientIPCase{remote: "203.0.113.7:5555"}},
		{"xff-3-hops", clientIPCase{remote: "10.0.0.2:1", xff: []string{"198.51.100.1, 203.0.113.7, 192.168.1.1", "10.0.0.3"}}},
		{"xff-v6", clientIPCase{remote: "10.0.0.2:1", xff: []string{"2001:db8:1:2::7, fd00::1"}}},
		{"forwarded", clientIPCase{remote: "10.0.0.2:1", fwd: []string{`for=198.51.100.1, for="203.0.113.7:4711";proto=https, for=10.0.0.3`}}},
	}
	for _, bc := range cases {
		r := newClientIPRequest(bc.c)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var sink netip.Addr
			for b.Loop() {
				sink = ClientIP(r, trusted)
			}
			_ = sink
		})
	}
}

func BenchmarkSubjectForIP(b *testing.B) {
	for _, s := range []string{"203.0.113.7", "2001:db8:1:2:3:4:5:6"} {
		a := netip.MustParseAddr(s)
		b.Run(s, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = SubjectForIP(a)
			}
		})
	}
}

// discardWriter is a minimal ResponseWriter, so the benchmarks measure the
// middleware rather than httptest.ResponseRecorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkMiddleware measures the middleware's own cost per request
// (client IP, subject, decision plumbing, headers) around a limiter that
// answers instantly ("fake"), and with the in-process backend ("memory",
// one subject per goroutine-request from a pool of 10,000 clients).
// "baseline" is the bare handler.
func BenchmarkMiddleware(b *testing.B) {
	trusted := mustTrusted(b, "10.0.0.0/8")
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	items := StaticItems(ratelimit.Item{Policy: ipPolicy})
	fake := answer(decision(allowed(ipPolicy, 42, 600*time.Millisecond)), nil)
	fake.decide = func(string, []ratelimit.Item) (scripted, error) {
		return decision(allowed(ipPolicy, 42, 600*time.Millisecond)), nil
	}
	mem := memorylimit.New(memorylimit.Options{SweepInterval: -1})
	b.Cleanup(func() { mem.Close() })
	huge := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 1 << 30, Per: time.Second}}

	reqs := make([]*http.Request, 10_000)
	for i := range reqs {
		r := httptest.NewRequest(http.MethodGet, "/v1/entries", nil)
		r.RemoteAddr = "10.0.0.2:1"
		r.Header.Set("X-Forwarded-For", "198.51.100.1, 203.0."+strconv.Itoa(i/256)+"."+strconv.Itoa(i%256))
		reqs[i] = r
	}
	handlers := []struct {
		name string
		h    http.Handler
	}{
		{"baseline", next},
		{"fake", mustNew(b, &noRecordLimiter{fake}, Options{Subject: IPSubject(trusted), Items: items}).Handler(next)},
		{"memory", mustNew(b, mem, Options{Subject: IPSubject(trusted), Items: StaticItems(ratelimit.Item{Policy: huge})}).Handler(next)},
	}
	for _, hc := range handlers {
		b.Run(hc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				w := &discardWriter{h: make(http.Header, 8)}
				i := 0
				for pb.Next() {
					clear(w.h)
					hc.h.ServeHTTP(w, reqs[i%len(reqs)])
					i++
				}
			})
		})
	}
}

// noRecordLimiter forwards to a fakeLimiter without recording calls, so the
// benchmark does not grow a slice.
type noRecordLimiter struct{ f *fakeLimiter }

func (n *noRecordLimiter) Decide(_ context.Context, d *ratelimit.Decision, s string, items ...ratelimit.Item) error {
	return n.f.write(d, s, items)
}
func (n *noRecordLimiter) Peek(_ context.Context, d *ratelimit.Decision, s string, items ...ratelimit.Item) error {
	return n.f.write(d, s, items)
}
func (n *noRecordLimiter) Reset(context.Context, string, string) error { return nil }
