package main

import (
	"bytes"
	"errors"
	"testing"

	"github.com/journalsvc/journal/internal/config"
)

// TestExitCode checks the exit status and the one line report gives each
// kind of error run returns.
func TestExitCode(t *testing.T) {
	_, usageErr := config.Parse([]string{"-x"}, env(nil))
	if ue := (*config.UsageError)(nil); !errors.As(usageErr, &ue) {
		t.Fatalf("config.Parse(-x) = %v, want a *config.UsageError", usageErr)
	}
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("listen tcp :80: bind: permission denied"), 1},
		{&config.Error{Setting: "JOURNAL_ADDR", Value: "x", Want: "y"}, 2},
		{usageErr, 2},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		if got := report(tt.err, &b); got != tt.want {
			t.Errorf("report(%v) = %d, want %d", tt.err, got, tt.want)
		}
		if tt.err == nil {
			if b.Len() != 0 {
				t.Errorf("report(nil) wrote %q", b.String())
			}
			continue
		}
		if got, want := b.String(), "journal: "+tt.err.Error()+"\n"; got != want {
			t.Errorf("report(%v) wrote %q, want %q", tt.err, got, want)
		}
	}
}
