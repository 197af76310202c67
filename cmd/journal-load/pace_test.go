package main

import (
	"context"
	"testing"
	"time"
)

// fakeClock is a clock that only moves when slept on.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time                           { return c.t }
func (c *fakeClock) Sleep(_ context.Context, d time.Duration) { c.t = c.t.Add(d) }
func (c *fakeClock) advance(d time.Duration)                  { c.t = c.t.Add(d) }

func TestPacerSchedule(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	p := &pacer{Rate: 100, Start: clk.t, End: clk.t.Add(2 * time.Second), Now: clk.Now, Sleep: clk.Sleep}
	var at []time.Duration
	sent, missed := p.Run(context.Background(), func(k int) bool {
		at = append(at, clk.t.Sub(p.Start))
		return true
	})
	if got, want := sent, 200; got != want {
		t.Errorf("sent = %d, want %d", got, want)
	}
	if missed != 0 {
		t.Errorf("missed = %d, want 0", missed)
	}
	for k, d := range at {
		if want := time.Duration(k) * 10 * time.Millisecond; d != want {
			t.Fatalf("send %d at %v, want %v", k, d, want)
		}
	}
}

// TestPacerOpenLoop: a stall does not lower the offered load: the sends due
// during the stall are offered at once afterwards, and refusals count as
// missed.
func TestPacerOpenLoop(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	p := &pacer{Rate: 10, Start: clk.t, End: clk.t.Add(time.Second), Now: clk.Now, Sleep: clk.Sleep}
	var offered []int
	sent, missed := p.Run(context.Background(), func(k int) bool {
		offered = append(offered, k)
		if k == 2 {
			clk.advance(450 * time.Millisecond) // the offer itself stalls
		}
		return k%2 == 0
	})
	if got, want := len(offered), 10; got != want {
		t.Fatalf("offered %d sends, want %d", got, want)
	}
	if sent != 5 || missed != 5 {
		t.Errorf("sent, missed = %d, %d, want 5, 5", sent, missed)
	}
}

func TestPacerContextStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pacer{Rate: 1000, Start: time.Now(), End: time.Now().Add(time.Hour)}
	n := 0
	sent, _ := p.Run(ctx, func(int) bool {
		n++
		if n == 50 {
			cancel()
		}
		return true
	})
	if sent != 50 {
		t.Errorf("sent = %d after cancel at 50", sent)
	}
}
