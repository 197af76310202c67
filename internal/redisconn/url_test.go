package redisconn

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		in   string
		want URL
	}{
		{"redis://127.0.0.1:6379", URL{Addrs: []string{"127.0.0.1:6379"}}},
		{"redis://localhost", URL{Addrs: []string{"localhost:6379"}}},
		{"redis://localhost/", URL{Addrs: []string{"localhost:6379"}}},
		{"redis://h:6380/3", URL{Addrs: []string{"h:6380"}, DB: 3}},
		{"redis://h:6380/0", URL{Addrs: []string{"h:6380"}}},
		{"REDIS://h:1", URL{Addrs: []string{"h:1"}}},
		{"rediss://cache.example.com:6380", URL{Addrs: []string{"cache.example.com:6380"}, TLS: true}},
		{"redis://user:pass@h:1/2", URL{Addrs: []string{"h:1"}, Username: "user", Password: "pass", DB: 2}},
		{"redis://:secret@h:1", URL{Addrs: []string{"h:1"}, Password: "secret"}},
		{"redis://user@h:1", URL{Addrs: []string{"h:1"}, Username: "user"}},
		{"redis://u:p%40ss%3Aw@h:1", URL{Addrs: []string{"h:1"}, Username: "u", Password: "p@ss:w"}},
		{"redis://u:p@ss@h:1", URL{Addrs: []string{"h:1"}, Username: "u", Password: "p@ss"}},
		{"redis://[::1]:6379", URL{Addrs: []string{"[::1]:6379"}}},
		{"redis://[::1]", URL{Addrs: []string{"[::1]:6379"}}},
		{"redis://h1:7000,h2:7001,h3:7002", URL{Addrs: []string{"h1:7000", "h2:7001", "h3:7002"}}},
		{"redis://h1:7000, h2:7001", URL{Addrs: []string{"h1:7000", "h2:7001"}}},
		{"redis://h1:7000,h2:7001/", URL{Addrs: []string{"h1:7000", "h2:7001"}}},
		{"rediss://u:p@h1:7000,h2:7001", URL{Addrs: []string{"h1:7000", "h2:7001"}, Username: "u", Password: "p", TLS: true}},
	}
	for _, tt := range tests {
		got, err := ParseURL(tt.in)
		if err != nil {
			t.Errorf("ParseURL(%q) error: %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseURL(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
		if got, want := got.Cluster(), len(tt.want.Addrs) > 1; got != want {
			t.Errorf("ParseURL(%q).Cluster() = %v, want %v", tt.in, got, want)
		}
	}
}

func TestParseURLErrors(t *testing.T) {
	tests := []struct{ in, wantIn string }{
		{"", "want redis://"},
		{"127.0.0.1:6379", "want redis://"},
		{"http://h:1", "want redis:// or rediss://"},
		{"unix:///tmp/redis.sock", "want redis:// or rediss://"},
		{"redis://", "no host"},
		{"redis:///0", "no host"},
		{"redis://u:p@", "no host"},
		{"redis://h1:1,h2:2/0", "cannot be used with a cluster"},
		{"redis://h1:1,h2:2/5", "cannot be used with a cluster"},
		{"redis://h:1/x", "want a non-negative integer"},
		{"redis://h:1/-1", "want a non-negative integer"},
		{"redis://h:1/01", "want a non-negative integer"},
		{"redis://h:1/1/2", "want a non-negative integer"},
		{"redis://h:0", "port must be 1-65535"},
		{"redis://h:65536", "port must be 1-65535"},
		{"redis://h:http", "port must be 1-65535"},
		{"redis://h1:1,,h2:2", "empty address"},
		{"redis://h1:1,", "empty address"},
		{"redis://h1:1,h1:1", "appears twice"},
		{"redis://h1,h1:6379", "appears twice"},
		{"redis://::1:6379", "want host:port"},
		{"redis://:6379", "has no host"},
		{"redis://h:1?db=2", "query parameters"},
		{"redis://h:1#x", "query parameters"},
		{"redis://u:%zz@h:1", "percent-encoding"},
		{"redis://u:se/cret@h:1", "percent-encode '/'"},
		{"redis://u:a/b/c@h:1/2", "percent-encode '/'"},
	}
	for _, tt := range tests {
		_, err := ParseURL(tt.in)
		if err == nil {
			t.Errorf("ParseURL(%q) = nil error, want one containing %q", tt.in, tt.wantIn)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantIn) {
			t.Errorf("ParseURL(%q) error %q, want it to contain %q", tt.in, err, tt.wantIn)
		}
		if strings.Contains(err.Error(), "cret") || strings.Contains(err.Error(), "a/b") {
			t.Errorf("ParseURL(%q) error %q shows the password", tt.in, err)
		}
	}
}

func TestURLStringRedacts(t *testing.T) {
	tests := []struct{ in, want string }{
		{"redis://h:1", "redis://h:1"},
		{"rediss://u:secret@h:1/2", "rediss://u:xxxxx@h:1/2"},
		{"redis://:secret@a:1,b:2", "redis://:xxxxx@a:1,b:2"},
		{"redis://u@h:1", "redis://u@h:1"},
		{"redis://a%3Ab%2Fc%40d:pw@h:1", "redis://a%3Ab%2Fc%40d:xxxxx@h:1"},
	}
	for _, tt := range tests {
		r, err := ParseURL(tt.in)
		if err != nil {
			t.Fatalf("ParseURL(%q): %v", tt.in, err)
		}
		if got := r.String(); got != tt.want {
			t.Errorf("ParseURL(%q).String() = %q, want %q", tt.in, got, tt.want)
		}
	}
}
