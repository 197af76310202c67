package backend_test

import (
	"errors"
	"testing"
	"time"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/internal/backend"
)

func TestCombine(t *testing.T) {
	p := func(name string, shadow bool) ratelimit.Policy {
		return ratelimit.Policy{Name: name, Shadow: shadow}
	}
	d := backend.Combine([]ratelimit.Result{
		{Policy: p("a", false), Allowed: true},
		{Policy: p("b", false), RetryAfter: 3 * time.Second},
		{Policy: p("c", true), RetryAfter: time.Hour},
		{Policy: p("d", false), RetryAfter: 7 * time.Second},
	})
	if d.Allowed || d.RetryAfter != 7*time.Second {
		t.Errorf("Combine = allowed %v retry %v, want denied with the latest retry 7s (shadow ignored)", d.Allowed, d.RetryAfter)
	}
	if d := backend.Combine([]ratelimit.Result{{Policy: p("s", true)}}); !d.Allowed || d.RetryAfter != 0 {
		t.Errorf("a shadow denial blocked: %+v", d)
	}
}

func TestValidateItems(t *testing.T) {
	ok := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 10, Per: time.Minute}}
	for _, tc := range []struct {
		name  string
		items []ratelimit.Item
		valid bool
	}{
		{"one", []ratelimit.Item{{Policy: ok}}, true},
		{"none", nil, false},
		{"twice", []ratelimit.Item{{Policy: ok}, {Policy: ok}}, false},
		{"negative cost", []ratelimit.Item{{Policy: ok, Cost: -1}}, false},
		{"cost over the limit", []ratelimit.Item{{Policy: ok, Cost: 11}}, false},
		{"cost of the whole limit", []ratelimit.Item{{Policy: ok, Cost: 10}}, true},
		{"invalid policy", []ratelimit.Item{{Policy: ratelimit.Policy{Name: "x"}}}, false},
	} {
		err := backend.ValidateItems(tc.items)
		if (err == nil) != tc.valid || (err != nil && !errors.Is(err, ratelimit.ErrInvalid)) {
			t.Errorf("%s: ValidateItems = %v, want valid %v (errors wrap ErrInvalid)", tc.name, err, tc.valid)
		}
	}
}
