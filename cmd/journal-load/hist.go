package main

import (
	"math"
	"math/bits"
	"time"
)

// subBits is the number of linear sub-buckets per power of two, as a power
// of two: 32 sub-buckets bound the relative error of a recorded value to
// 1/32 (about 3%).
const subBits = 5

const (
	subCount = 1 << subBits
	// maxExp covers values up to 2^40 microseconds (about 12 days).
	maxExp     = 40
	numBuckets = (maxExp - subBits + 2) * subCount
)

// histogram records durations in log-linear buckets of microseconds, like an
// HDR histogram: values below 32 µs are exact, larger ones land in one of 32
// linear sub-buckets of their power of two. Its memory is fixed (about 9 KiB).
// The zero value is empty and ready to use; it is not safe for concurrent
// use.
type histogram struct {
	counts   [numBuckets]uint32
	n        uint64
	sum      time.Duration
	min, max time.Duration
}

// bucketOf returns the bucket index of v microseconds.
func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	e := bits.Len64(v) - subBits - 1 // v>>e is in [32, 64)
	if e > maxExp-subBits {
		return numBuckets - 1
	}
	return (e+1)*subCount + int(v>>uint(e)) - subCount
}

// bucketHigh returns the largest value (µs) that falls into bucket i.
func bucketHigh(i int) uint64 {
	if i < subCount {
		return uint64(i)
	}
	e := i/subCount - 1
	m := uint64(i%subCount + subCount)
	return (m+1)<<uint(e) - 1
}

// Record adds one duration; negative durations count as zero.
func (h *histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d/time.Microsecond))]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
	h.sum += d
}

// Merge adds every value recorded in o.
func (h *histogram) Merge(o *histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Count returns the number of recorded values.
func (h *histogram) Count() uint64 { return h.n }

// Max returns the largest recorded value, exactly.
func (h *histogram) Max() time.Duration { return h.max }

// Mean returns the arithmetic mean, 0 when empty.
func (h *histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}

// Quantile returns the q-quantile (0 < q <= 1) by the nearest-rank method:
// the smallest recorded value v such that at least q of the values are <= v,
// as the upper bound of its bucket, clamped to [Min, Max]. So it never
// understates a latency, and it overstates it by at most 1/32. It returns 0
// when the histogram is empty.
func (h *histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	if rank > h.n {
		rank = h.n
	}
	var seen uint64
	for i, c := range h.counts {
		seen += uint64(c)
		if seen >= rank {
			v := time.Duration(bucketHigh(i)) * time.Microsecond
			// Sub-microsecond remainders of min/max are kept exactly.
			if v > h.max {
				v = h.max
			}
			if v < h.min {
				v = h.min
			}
			return v
		}
	}
	return h.max
}
