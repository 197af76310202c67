package postgres_test

import (
	"context"
	"log"
	"time"

	"github.com/journalsvc/journal/postgres"
)

// Open connects, applies the embedded migrations under an advisory lock and
// returns the store. (Not run: it needs a server.)
func ExampleOpen() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, "postgres://postgres@127.0.0.1:5432/journal?sslmode=disable", 16)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(ctx); err != nil {
		log.Fatal(err)
	}
}
