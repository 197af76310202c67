package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketRoundTrip(t *testing.T) {
	prevHigh := int64(-1)
	for i := 0; i < numBuckets-1; i++ {
		hi := bucketHigh(i)
		if int64(hi) <= prevHigh {
			t.Fatalf("bucketHigh(%d) = %d, not above bucketHigh(%d) = %d", i, hi, i-1, prevHigh)
		}
		if got := bucketOf(hi); got != i {
			t.Fatalf("bucketOf(bucketHigh(%d) = %d) = %d", i, hi, got)
		}
		if got := bucketOf(uint64(prevHigh + 1)); got != i {
			t.Fatalf("bucketOf(%d) = %d, want %d (lowest value of the bucket)", prevHigh+1, got, i)
		}
		prevHigh = int64(hi)
	}
}

func TestQuantileSmallExact(t *testing.T) {
	var h histogram
	for v := 1; v <= 10; v++ {
		h.Record(time.Duration(v) * time.Microsecond)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0.1, 1 * time.Microsecond},
		{0.5, 5 * time.Microsecond},
		{0.9, 9 * time.Microsecond},
		{0.95, 10 * time.Microsecond},
		{1, 10 * time.Microsecond},
	}
	for _, tt := range tests {
		if got := h.Quantile(tt.q); got != tt.want {
			t.Errorf("Quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if got, want := h.Mean(), 5500*time.Nanosecond; got != want {
		t.Errorf("Mean() = %v, want %v", got, want)
	}
}

func TestQuantileEmpty(t *testing.T) {
	var h histogram
	if got := h.Quantile(0.99); got != 0 {
		t.Errorf("empty Quantile(0.99) = %v, want 0", got)
	}
}

// TestQuantileRelativeError compares with the exact nearest-rank quantile of
// sorted samples: never below it, at most 1/32 above.
func TestQuantileRelativeError(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h, a, b histogram
	var samples []time.Duration
	for i := 0; i < 50000; i++ {
		// Log-normal-ish latencies from 50 µs to seconds.
		d := time.Duration(float64(50*time.Microsecond) * (1 + r.ExpFloat64()*r.ExpFloat64()*40))
		samples = append(samples, d)
		h.Record(d)
		if i%2 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(&b)
	slices.Sort(samples)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		rank := int(float64(len(samples))*q+0.999999) - 1
		exact := samples[rank]
		for name, hh := range map[string]*histogram{"one": &h, "merged": &a} {
			got := hh.Quantile(q)
			if got < exact.Truncate(time.Microsecond) || float64(got) > float64(exact)*(1+1.0/32)+float64(time.Microsecond) {
				t.Errorf("%s Quantile(%v) = %v, exact %v: outside [exact, exact*(1+1/32)]", name, q, got, exact)
			}
		}
	}
	if got, want := h.Max(), samples[len(samples)-1]; got != want {
		t.Errorf("Max() = %v, want %v", got, want)
	}
	if got, want := a.Count(), uint64(len(samples)); got != want {
		t.Errorf("merged Count() = %d, want %d", got, want)
	}
}
