package main

import (
	"net/http"
	"strconv"
	"strings"
)

// quota is what one response says about one rate-limit policy, from the
// IETF draft-10 header fields the service sends: RateLimit-Policy
// `"ip";q=100;w=60` and RateLimit `"ip";r=42;t=1`.
type quota struct {
	Name string
	Q, W int // the quota and its window in seconds; 0 when not announced
	// R is what is left of the quota after this request, T the seconds
	// until more is available; R is -1 when the response did not say.
	R, T int
	// Degraded marks a decision taken without Redis (;journal-degraded).
	Degraded bool
}

// member is one list member of a RateLimit or RateLimit-Policy field: a
// quoted name, integer parameters (q=100) and boolean ones (a bare key).
type member struct {
	Name   string
	Params map[string]int
	Flags  map[string]bool
}

// parseMembers parses every line of a RateLimit or RateLimit-Policy field;
// malformed members are skipped, and so are parameters that are neither an
// integer nor a bare key.
func parseMembers(lines []string) []member {
	var out []member
	for _, line := range lines {
		for _, m := range strings.Split(line, ",") {
			parts := strings.Split(strings.TrimSpace(m), ";")
			name := strings.TrimSpace(parts[0])
			if len(name) < 2 || name[0] != '"' || name[len(name)-1] != '"' {
				continue
			}
			pm := member{Name: name[1 : len(name)-1], Params: map[string]int{}, Flags: map[string]bool{}}
			for _, p := range parts[1:] {
				k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
				if !ok {
					pm.Flags[k] = true
					continue
				}
				if n, err := strconv.Atoi(v); err == nil {
					pm.Params[k] = n
				}
			}
			out = append(out, pm)
		}
	}
	return out
}

// quotas returns the policies a response announced, in the order of its
// RateLimit-Policy field, with what RateLimit says is left of each.
func quotas(h http.Header) []quota {
	left := map[string]member{}
	for _, m := range parseMembers(h.Values("RateLimit")) {
		left[m.Name] = m
	}
	var out []quota
	for _, m := range parseMembers(h.Values("RateLimit-Policy")) {
		q := quota{Name: m.Name, Q: m.Params["q"], W: m.Params["w"], R: -1}
		if l, ok := left[m.Name]; ok {
			if r, ok := l.Params["r"]; ok {
				q.R = r
			}
			q.T = l.Params["t"]
			q.Degraded = l.Flags["journal-degraded"]
		}
		out = append(out, q)
	}
	return out
}

// findQuota returns the policy name of a response, if it announced one.
func findQuota(h http.Header, name string) (quota, bool) {
	for _, q := range quotas(h) {
		if q.Name == name {
			return q, true
		}
	}
	return quota{}, false
}
