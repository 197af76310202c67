package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
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

// TestInvalidPolicyFileStopsStartUpFirst: an invalid policy file is a
// configuration error, reported before the listener or the database opens.
func TestInvalidPolicyFileStopsStartUpFirst(t *testing.T) {
	dir := t.TempDir()
	policies := filepath.Join(dir, "policies.yaml")
	if err := os.WriteFile(policies, []byte("policies:\n  - name: x\n    rate: nonsense\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "journal.db")
	var stderr bytes.Buffer
	err := run(t.Context(), nil, env(map[string]string{
		"JOURNAL_ADDR":                "127.0.0.1:0",
		"JOURNAL_DATABASE_URL":        "sqlite:" + db,
		"JOURNAL_RATE_LIMIT_POLICIES": policies,
	}), io.Discard, &stderr)
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Setting != "JOURNAL_RATE_LIMIT_POLICIES" {
		t.Fatalf("run = %v, want a *config.Error for JOURNAL_RATE_LIMIT_POLICIES", err)
	}
	if _, err := os.Stat(db); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the database file was created before the policy file was refused (stat: %v)", err)
	}
	if strings.Contains(stderr.String(), `"listening"`) {
		t.Errorf("the listener opened before the policy file was refused: %s", stderr.String())
	}
}
