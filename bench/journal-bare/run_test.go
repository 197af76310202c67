package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const recorded = "HTTP/1.1 200 OK\r\n" +
	"Cache-Control: private, no-cache\r\n" +
	"Content-Length: 11\r\n" +
	"Content-Type: application/json\r\n" +
	"Etag: \"v1\"\r\n" +
	"Vary: Authorization\r\n" +
	"Date: Fri, 27 Nov 2026 15:59:31 GMT\r\n" +
	"\r\n" +
	"{\"id\":\"x\"}\n"

func TestReplay(t *testing.T) {
	h, err := replay([]byte(recorded))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	for range 2 { // the handler must not consume its recording
		resp, err := http.Get(srv.URL + "/any/path")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := resp.StatusCode, 200; got != want {
			t.Errorf("status = %d, want %d", got, want)
		}
		if got, want := string(body), "{\"id\":\"x\"}\n"; got != want {
			t.Errorf("body = %q, want %q", got, want)
		}
		for k, want := range map[string]string{"Etag": `"v1"`, "Vary": "Authorization", "Content-Length": "11", "Cache-Control": "private, no-cache"} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
		// The recorded headers plus net/http's own Date, which is not copied.
		if got, want := len(resp.Header), 6; got != want {
			t.Errorf("%d headers, want %d: %v", got, want, resp.Header)
		}
		if resp.Header.Get("Date") == "Fri, 27 Nov 2026 15:59:31 GMT" {
			t.Error("the recorded Date was replayed")
		}
	}
}

func TestReplayRejectsGarbage(t *testing.T) {
	if _, err := replay([]byte("not a response")); err == nil {
		t.Error("replay accepted garbage")
	}
}

func TestPace(t *testing.T) {
	var n, bad int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n++ // the handler's calls are serialised below by one connection
		if r.Header.Get("Authorization") != "Bearer t" {
			bad++
		}
	}))
	defer srv.Close()
	req, err := http.NewRequest("GET", srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer t")
	start := time.Now()
	r := pace(context.Background(), req, 200, 500*time.Millisecond, 1)
	if got, want := r.Sent, 100; got != want {
		t.Errorf("sent %d, want %d", got, want)
	}
	if r.Failed != 0 || bad != 0 || n != 100 {
		t.Errorf("failed %d, served %d (%d without the header)", r.Failed, n, bad)
	}
	// Paced, not as fast as possible: 100 requests at 200/s take about 0.5 s
	// (generous bounds: this machine is shared).
	if d := time.Since(start); d < 450*time.Millisecond || d > 5*time.Second {
		t.Errorf("took %v, want about 500ms", d)
	}
	if !(0 < r.P50 && r.P50 <= r.P99 && r.P99 <= r.Max) {
		t.Errorf("percentiles out of order: %+v", r)
	}
}

func TestPaceFlags(t *testing.T) {
	var out strings.Builder
	if err := runPace(context.Background(), []string{"-rate", "10"}, &out, io.Discard); err == nil {
		t.Error("runPace without -url succeeded")
	}
}
