package httpapi_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/journalsvc/journal/httpapi"
	"github.com/journalsvc/journal/password"
	"github.com/journalsvc/journal/sqlite"
)

func ExampleNewServer() {
	dir, _ := os.MkdirTemp("", "journal-example")
	defer os.RemoveAll(dir)
	store, err := sqlite.Open(context.Background(), filepath.Join(dir, "journal.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	h, err := httpapi.NewServer(httpapi.Options{
		Logger:      slog.New(slog.DiscardHandler),
		Users:       store,
		Tokens:      store,
		Entries:     store,
		Idempotency: store,
		Passwords:   password.New(password.Options{}),
		Metrics:     prometheus.NewRegistry(),
		InstanceID:  "example-1",
		Database:    store.Ping,
	})
	if err != nil {
		log.Fatal(err)
	}
	r := httptest.NewRequest("POST", "/v1/users", strings.NewReader(`{"username":"ada","password":"correct horse"}`))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	fmt.Println(w.Code, w.Header().Get("X-Instance"))
	// Output: 201 example-1
}
