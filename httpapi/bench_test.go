package httpapi

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	rtmetrics "runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/internal/testdb"
)

// benchStores returns the stores the benchmarks run on: SQLite always,
// PostgreSQL on a fresh database of the test server.
func benchStores(b *testing.B) map[string]func(b *testing.B) journal.Database {
	return map[string]func(b *testing.B) journal.Database{
		"sqlite":   func(b *testing.B) journal.Database { return newTestServer(b).store },
		"postgres": func(b *testing.B) journal.Database { return testdb.Postgres(b) },
	}
}

// benchServer is the full handler stack (every middleware, JSON access log
// to io.Discard, metrics) on st, with one user who has n entries.
func benchServer(b *testing.B, st journal.Database, n int) (h http.Handler, token string, ids []string) {
	b.Helper()
	ts := newTestServer(b, func(o *Options) {
		o.Users, o.Tokens, o.Entries, o.Idempotency, o.Database = st, st, st, st, st.Ping
		o.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
		o.Now = time.Now
	})
	token = ts.signup(b, "bench")
	for range n {
		e, _ := ts.createEntry(b, token, "a title of some length", "a body that is a little longer than the title, like most are")
		ids = append(ids, e["id"].(string))
	}
	return ts.h, token, ids
}

func runRequests(b *testing.B, h http.Handler, target, token string) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := httptest.NewRequest("GET", target, nil)
			r.Header.Set("Authorization", "Bearer "+token)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				b.Errorf("GET %s = %d %s", target, w.Code, w.Body)
				return
			}
		}
	})
}

// BenchmarkEntryGet measures GET /v1/entries/{id} through the whole stack.
func BenchmarkEntryGet(b *testing.B) {
	for name, open := range benchStores(b) {
		b.Run(name, func(b *testing.B) {
			h, tok, ids := benchServer(b, open(b), 1)
			runRequests(b, h, "/v1/entries/"+ids[0], tok)
		})
	}
}

// BenchmarkEntryList20 measures a 20-entry GET /v1/entries page.
func BenchmarkEntryList20(b *testing.B) {
	for name, open := range benchStores(b) {
		b.Run(name, func(b *testing.B) {
			h, tok, _ := benchServer(b, open(b), 25)
			runRequests(b, h, "/v1/entries?limit=20", tok)
		})
	}
}

// BenchmarkIdempotentReplay measures a retried POST /v1/entries answered
// from its stored Idempotency-Key record, beside a plain GET of an entry
// through the same stack.
func BenchmarkIdempotentReplay(b *testing.B) {
	for name, open := range benchStores(b) {
		b.Run(name, func(b *testing.B) {
			h, tok, ids := benchServer(b, open(b), 1)
			b.Run("get", func(b *testing.B) { runRequests(b, h, "/v1/entries/"+ids[0], tok) })
			b.Run("replay", func(b *testing.B) {
				post := func() *httptest.ResponseRecorder {
					r := httptest.NewRequest("POST", "/v1/entries", strings.NewReader(`{"title":"once","body":"sent again and again"}`))
					r.Header.Set("Authorization", "Bearer "+tok)
					r.Header.Set("Content-Type", "application/json")
					r.Header.Set("Idempotency-Key", `"bench-key"`)
					w := httptest.NewRecorder()
					h.ServeHTTP(w, r)
					return w
				}
				if w := post(); w.Code != http.StatusCreated {
					b.Fatalf("first POST = %d %s", w.Code, w.Body)
				}
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if w := post(); w.Code != http.StatusCreated || w.Header().Get("Idempotent-Replayed") != "true" {
							b.Errorf("retry = %d %v", w.Code, w.Header())
							return
						}
					}
				})
			})
		})
	}
}

// discardWriter is a ResponseWriter that counts the lines of the body and
// keeps nothing, so a benchmark measures the handler's memory, not the
// client's.
type discardWriter struct {
	h      http.Header
	status int
	lines  int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *discardWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.lines += bytes.Count(p, []byte("\n"))
	return len(p), nil
}

// exportEntries is the number of entries BenchmarkExport exports.
const exportEntries = 100_000

// BenchmarkExport measures GET /v1/export of 100,000 entries on SQLite
// through the whole stack, and reports the peak of live heap above the
// level before the export (peak-heap-MB), sampled every millisecond.
func BenchmarkExport(b *testing.B) {
	path := filepath.Join(b.TempDir(), "journal.db")
	h, tok, _ := benchServer(b, testdb.SQLiteAt(b, path), 0)
	var uid string
	{
		r := httptest.NewRequest("GET", "/v1/users/me", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		uid = strings.Split(strings.Split(w.Body.String(), `"id":"`)[1], `"`)[0]
	}
	// The export does not read the word index: the entries are marked
	// indexed.
	start := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	body := strings.Repeat("A line of a journal entry, of a usual length. ", 8)
	entries := make([]journal.Entry, exportEntries)
	for i := range entries {
		at := start.Add(time.Duration(i) * time.Second)
		entries[i] = journal.Entry{ID: journal.NewID(at), UserID: uid, Title: "Entry of the day", Body: body, CreatedAt: at, UpdatedAt: at}
	}
	testdb.SQLiteEntries(b, path, entries, true)
	entries = nil

	sample := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	heap := func() uint64 {
		rtmetrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	var peak uint64
	b.ReportAllocs()
	for b.Loop() {
		runtime.GC()
		base := heap()
		var max atomic.Uint64
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			t := time.NewTicker(time.Millisecond)
			defer t.Stop()
			for {
				if v := heap(); v > max.Load() {
					max.Store(v)
				}
				select {
				case <-stop:
					return
				case <-t.C:
				}
			}
		}()
		r := httptest.NewRequest("GET", "/v1/export", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		w := &discardWriter{h: http.Header{}}
		h.ServeHTTP(w, r)
		close(stop)
		<-done
		if w.status != http.StatusOK || w.lines != exportEntries {
			b.Fatalf("GET /v1/export = %d with %d lines, want 200 and %d", w.status, w.lines, exportEntries)
		}
		if m := max.Load(); m > base && m-base > peak {
			peak = m - base
		}
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
}
