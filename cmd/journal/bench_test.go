package main

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// BenchmarkHandlerStack measures GET /v1/entries/{id} and a 20-entry list
// page through everything run builds (listener, http.Server, the whole
// httpapi middleware chain, authentication, the store) over loopback HTTP/1.1
// keep-alive connections, on SQLite and on PostgreSQL. Rate limits are off so
// that every request is served; access logs are written (to a discarding
// sink) as in production.
//
//	go test -run '^$' -bench HandlerStack -benchtime 3s ./cmd/journal
func BenchmarkHandlerStack(b *testing.B) {
	for name, dbURL := range databases(b) {
		j := startJournal(b, map[string]string{
			"JOURNAL_DATABASE_URL":      dbURL(),
			"JOURNAL_RATE_LIMIT_IP":     "off",
			"JOURNAL_RATE_LIMIT_USER":   "off",
			"JOURNAL_RATE_LIMIT_LOGIN":  "off",
			"JOURNAL_RATE_LIMIT_SIGNUP": "off",
		})
		c := signup(b, j.URL, "bench")
		var id string
		for i := range 25 {
			r := c.do("POST", "/v1/entries", map[string]string{"title": fmt.Sprintf("entry %d", i), "body": "a short body of a journal entry"})
			expect(b, "create", r, http.StatusCreated)
			id = decodeJSON[entryJSON](b, r).ID
		}
		hc := &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256},
		}
		b.Cleanup(hc.CloseIdleConnections)
		bench := func(path string) func(*testing.B) {
			return func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					req, err := http.NewRequest("GET", j.URL+path, nil)
					if err != nil {
						b.Error(err)
						return
					}
					req.Header.Set("Authorization", "Bearer "+c.token)
					for pb.Next() {
						resp, err := hc.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						_, err = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if err != nil || resp.StatusCode != http.StatusOK {
							b.Errorf("GET %s: %d, %v", path, resp.StatusCode, err)
							return
						}
					}
				})
			}
		}
		b.Run(name+"/get", bench("/v1/entries/"+id))
		b.Run(name+"/list20", bench("/v1/entries?limit=20"))
	}
}
