package redislimit

import (
	"strconv"
	"strings"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/internal/backend"
)

// parseState decodes a value written by decide.lua: "TAT" (GCRA, up to 18
// digits), "s:W:C:P" or "f:W:C"; anything else is the zero state, as in the
// script.
func parseState(raw string) backend.State {
	var st backend.State
	if tat, ok := parseTAT(raw); ok {
		return backend.State{Algorithm: ratelimit.GCRA, T: tat}
	}
	if len(raw) < 3 || raw[1] != ':' {
		return st
	}
	switch raw[0] {
	case 's':
		st.Algorithm = ratelimit.Sliding
	case 'f':
		st.Algorithm = ratelimit.Fixed
	default:
		return st
	}
	for i, f := range strings.SplitN(raw[2:], ":", 3) {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return backend.State{}
		}
		switch i {
		case 0:
			st.T = v
		case 1:
			st.Count = v
		case 2:
			st.Prev = v
		}
	}
	return st
}

// parseTAT parses a GCRA value: 1 to 18 decimal digits.
func parseTAT(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	var v int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		v = v*10 + int64(s[i]-'0')
	}
	return v, true
}
