package sqlite_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/sqlite"
)

func Example() {
	dir, err := os.MkdirTemp("", "journal-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(dir, "journal.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	now := time.Date(2025, 1, 2, 3, 4, 5, 678901234, time.UTC)
	u := journal.User{ID: journal.NewID(now), Username: "alice", PasswordHash: "argon2id-hash", CreatedAt: now}
	if err := s.CreateUser(ctx, u); err != nil {
		log.Fatal(err)
	}
	e, err := s.CreateEntry(ctx, journal.Entry{ID: journal.NewID(now), UserID: u.ID, Title: "Hello", CreatedAt: now, UpdatedAt: now})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(e.Title, e.Version, e.CreatedAt.Format(time.RFC3339Nano))

	_, err = s.UpdateEntry(ctx, u.ID, e.ID, journal.EntryPatch{Title: new("Hi")}, 7, now)
	fmt.Println(err)

	n, _ := s.PendingChanges(ctx)
	fmt.Println("pending changes:", n)
	// Output:
	// Hello 1 2025-01-02T03:04:05.678901Z
	// journal: version mismatch
	// pending changes: 1
}
