package ratelimit

import (
	"testing"
	"time"
)

func TestPolicyShare(t *testing.T) {
	t.Parallel()
	p := Policy{Name: "ip", Rate: Rate{N: 100, Per: time.Minute}, Burst: 10}
	for _, tc := range []struct {
		n, cost, wantN, wantBurst int64
	}{
		{1, 1, 100, 10},
		{0, 1, 100, 10}, // n < 1 counts as 1
		{3, 1, 34, 4},   // rounded up
		{100, 1, 1, 1},
		{1000, 1, 1, 1}, // never below the cost
		{1000, 5, 5, 5},
	} {
		got := p.share(tc.n, tc.cost)
		if got.Rate.N != tc.wantN || got.Burst != tc.wantBurst || got.Rate.Per != p.Rate.Per || got.Name != p.Name {
			t.Errorf("share(%d, %d) = %+v, want N %d burst %d", tc.n, tc.cost, got, tc.wantN, tc.wantBurst)
		}
	}
	if got := (Policy{Rate: Rate{N: 9, Per: time.Second}}).share(2, 1); got.Burst != 0 || got.Rate.N != 5 {
		t.Errorf("share of a policy without burst = %+v, want burst 0 (defaults to N) and N 5", got)
	}
}
