package httpapi

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
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
		o.Users, o.Tokens, o.Entries, o.Database = st, st, st, st.Ping
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
