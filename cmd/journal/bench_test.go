package main

import "testing"

// BenchmarkHandlerStack measures GET /v1/entries/{id} and a 20-entry list
// page through everything run builds (listener, http.Server, the whole
// httpapi middleware chain, authentication, the store) over loopback HTTP/1.1
// keep-alive connections from benchClients concurrent clients, on SQLite and
// on PostgreSQL. Rate limits are off so that every request is served; access
// logs are written (to a discarding sink) as in production.
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
		b.Run(name, func(b *testing.B) { benchAPI(b, j.URL) })
	}
}
