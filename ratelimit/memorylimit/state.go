package memorylimit

import (
	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/internal/backend"
)

// A slot is 32 bytes: the key, the state in two words (a, b) and a meta word
// that a sweep or an eviction reads without knowing the key's policy.
//
// The state:
//   - GCRA: a is the TAT (Unix µs); b is unused.
//   - Windows: a holds the current window's count in its low 43 bits and
//     bits 0-20 of the window index above them; b holds the previous
//     window's count and bits 21-31 of the index. A count never exceeds the
//     limit N, and N times the period in milliseconds is at most 2^52 with a
//     period of at least a second, so N < 2^43. The index is kept modulo
//     2^32 and restored as the one nearest the current window: windows are
//     at least a second long, so 2^32 of them outlast any clock.
//
// The meta word:
//   - bits 61-62: the algorithm of the state (a state of another algorithm
//     than the policy's counts as the zero state, as in the reference);
//   - bits 0-31: the expiry, Unix seconds rounded up: from then on the state
//     is equivalent to the zero state, so a sweep may drop it (a state is
//     decided the same way before it is dropped);
//   - bits 32-60: how many seconds before the expiry the key stops blocking a
//     request of cost 1 (gapNone: it does not block), rounded so that it
//     blocks no shorter than it does. Eviction keeps blocking keys longest.
const (
	algShift  = 61
	gapShift  = 32
	gapNone   = 1<<29 - 1
	expMask   = 1<<32 - 1
	countBits = 43
	countMask = 1<<countBits - 1
	idxLow    = 64 - countBits // index bits kept in a
)

// makeMeta returns the meta word of a state of alg that expires at exp and,
// when blocks, blocks until blockedUntil (both Unix µs).
func makeMeta(alg ratelimit.Algorithm, exp int64, blocks bool, blockedUntil int64) uint64 {
	e := ceilSeconds(exp)
	gap := uint64(gapNone)
	if blocks {
		gap = 0 // blocking until the expiry, when the gap does not fit
		if b := ceilSeconds(blockedUntil); b < e && e-b < gapNone {
			gap = e - b
		}
	}
	return uint64(alg)<<algShift | gap<<gapShift | e
}

// ceilSeconds converts Unix µs to Unix seconds rounded up, within 32 bits.
func ceilSeconds(us int64) uint64 {
	if us <= 0 {
		return 0
	}
	return min(uint64(us+999_999)/1_000_000, expMask)
}

func expiry(m uint64) uint64 { return m & expMask }

// expired reports whether the state of meta word m is equivalent to the zero
// state at now (Unix µs).
func expired(m uint64, now int64) bool { return int64(expiry(m))*1_000_000 <= now }

// blocking reports whether the key of meta word m denies a request of cost 1
// at now (Unix µs), or may: the block is rounded up to whole seconds.
func blocking(m uint64, now int64) bool {
	gap := m >> gapShift & gapNone
	return gap != gapNone && (int64(expiry(m))-int64(gap))*1_000_000 > now
}

// decode returns the state held in (a, b, m) as the reference semantics
// sees it under sp at now.
func decode(sp *backend.Spec, a, b, m uint64, now int64) backend.State {
	alg := ratelimit.Algorithm(m >> algShift & 3)
	switch {
	case alg != sp.Algorithm():
		return backend.State{Algorithm: alg} // the zero state for sp
	case alg == ratelimit.GCRA:
		return backend.State{Algorithm: alg, T: int64(a)}
	}
	stored := uint32(a>>countBits) | uint32(b>>countBits)<<idxLow
	idx := sp.Window(now)
	return backend.State{
		Algorithm: alg,
		T:         idx - int64(uint32(idx)-stored),
		Count:     int64(a & countMask),
		Prev:      int64(b & countMask),
	}
}

// encode returns the words a and b holding st.
func encode(st backend.State) (a, b uint64) {
	if st.Algorithm == ratelimit.GCRA {
		return uint64(st.T), 0
	}
	idx := uint64(uint32(st.T))
	return uint64(st.Count) | idx<<countBits, uint64(st.Prev) | idx>>idxLow<<countBits
}
