package storetest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/journalsvc/journal"
)

// Bench benchmarks the store alone: Entry by id, a 20-entry ListEntries page
// (first page and a cursor page) and CreateEntry, each with b.RunParallel.
// s must be a fresh, empty store.
func Bench(b *testing.B, s journal.Database) {
	ctx := context.Background()
	u := journal.User{ID: journal.NewID(base), Username: "bench", PasswordHash: "h", CreatedAt: base}
	if err := s.CreateUser(ctx, u); err != nil {
		b.Fatalf("CreateUser = %v", err)
	}
	// A few users with 200 entries each, so the index holds other data too.
	const perUser = 200
	var ids []string
	for i := range perUser {
		ids = append(ids, NewEntry(b, s, u.ID, fmt.Sprint("bench ", i), base.Add(time.Duration(i)*time.Second)).ID)
	}
	for k := range 3 {
		o := NewUser(b, s, fmt.Sprint("other", k))
		for i := range perUser {
			NewEntry(b, s, o.ID, fmt.Sprint("other ", i), base.Add(time.Duration(i)*time.Second))
		}
	}
	drain(b, s, "")
	mid := ids[perUser/2]
	e, err := s.Entry(ctx, u.ID, mid)
	if err != nil {
		b.Fatal(err)
	}

	b.Run("Entry", func(b *testing.B) {
		b.ReportAllocs()
		var i atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				id := ids[i.Add(1)%perUser]
				if _, err := s.Entry(ctx, u.ID, id); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	for _, tc := range []struct {
		name  string
		after *journal.Cursor
	}{
		{"ListEntries20/first", nil},
		{"ListEntries20/cursor", &journal.Cursor{CreatedAt: e.CreatedAt, ID: e.ID}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p, err := s.ListEntries(ctx, u.ID, journal.PageRequest{Limit: 20, After: tc.after})
					if err != nil || len(p.Entries) != 20 {
						b.Errorf("ListEntries = %d entries, %v", len(p.Entries), err)
						return
					}
				}
			})
		})
	}
	b.Run("CreateEntry", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				now := time.Now()
				_, err := s.CreateEntry(ctx, journal.Entry{ID: journal.NewID(now), UserID: u.ID, Title: "t", Body: "b", CreatedAt: now, UpdatedAt: now})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
