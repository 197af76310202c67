package main

import (
	"math"
	"testing"
	"time"
)

func TestTrimPartial(t *testing.T) {
	tl := timeline{Width: time.Second}
	tests := []struct {
		name    string
		vals    []float64
		elapsed float64
		want    []float64
	}{
		{"whole buckets", []float64{10, 20}, 2, []float64{10, 20}},
		{"last bucket half covered is scaled up", []float64{10, 5}, 1.5, []float64{10, 10}},
		{"last bucket barely covered is dropped", []float64{10, 1}, 1.1, []float64{10}},
		{"a run shorter than a quarter bucket keeps its only point", []float64{20}, 0.1, []float64{200}},
	}
	for _, tt := range tests {
		got := trimPartial(append([]float64(nil), tt.vals...), tl, tt.elapsed, true)
		if len(got) != len(tt.want) {
			t.Errorf("%s: trimPartial(%v, elapsed %v) = %v, want %v", tt.name, tt.vals, tt.elapsed, got, tt.want)
			continue
		}
		for i := range got {
			if math.Abs(got[i]-tt.want[i]) > 1e-9 {
				t.Errorf("%s: trimPartial(%v, elapsed %v) = %v, want %v", tt.name, tt.vals, tt.elapsed, got, tt.want)
				break
			}
		}
	}
}
