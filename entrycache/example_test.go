package entrycache_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/journalsvc/journal"
	"github.com/journalsvc/journal/cache/memorycache"
	"github.com/journalsvc/journal/entrycache"
	"github.com/journalsvc/journal/sqlite"
)

// Example decorates a SQLite store with an in-process cache: reads are served
// from the cache, and a write invalidates what it changed before it returns.
// With Redis (package rediscache) the same code is coherent across instances.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "entrycache-example")
	defer os.RemoveAll(dir)
	db, err := sqlite.Open(ctx, filepath.Join(dir, "journal.db"))
	if err != nil {
		fmt.Println(err)
		return
	}
	mem, _ := memorycache.New(memorycache.Options{})
	store, err := entrycache.New(db, mem, entrycache.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close() // closes db too

	now := journal.StoredTime(time.Now())
	user := journal.User{ID: journal.NewID(now), Username: "alice", PasswordHash: "x", CreatedAt: now}
	_ = store.CreateUser(ctx, user)
	e, _ := store.CreateEntry(ctx, journal.Entry{ID: journal.NewID(now), UserID: user.ID, Title: "first", CreatedAt: now, UpdatedAt: now})

	got, _ := store.Entry(ctx, user.ID, e.ID) // loaded from the database, then cached
	fmt.Println(got.Title, got.Version)
	title := "edited"
	_, _ = store.UpdateEntry(ctx, user.ID, e.ID, journal.EntryPatch{Title: &title}, got.Version, journal.StoredTime(time.Now()))
	got, _ = store.Entry(ctx, user.ID, e.ID) // the update invalidated the cached copy
	fmt.Println(got.Title, got.Version)
	// Output:
	// first 1
	// edited 2
}
