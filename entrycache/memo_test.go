package entrycache

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/journalsvc/journal"
)

func TestMemoDecodesAsUnmarshal(t *testing.T) {
	now := time.Date(2026, 11, 27, 16, 0, 0, 123456789, time.UTC)
	var raws [][]byte
	for i := range 20 {
		b, err := json.Marshal(fromEntry(journal.Entry{ID: fmt.Sprint("id", i), UserID: "u", Title: fmt.Sprint("t", i), Body: "b", Version: int64(i), CreatedAt: now, UpdatedAt: now.Add(time.Duration(i))}))
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, b)
	}
	for _, slots := range []int{1, 3, 512} { // 1 slot: every other value collides
		m := newMemo[cachedEntry](slots, 1<<10)
		for round := range 3 {
			for i, b := range raws {
				var want cachedEntry
				if err := json.Unmarshal(b, &want); err != nil {
					t.Fatal(err)
				}
				got, err := m.decode(b)
				if err != nil {
					t.Fatalf("slots %d round %d value %d: %v", slots, round, i, err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("slots %d round %d value %d (-unmarshal +memo):\n%s", slots, round, i, diff)
				}
			}
		}
	}
}

func TestMemoLimitsAndErrors(t *testing.T) {
	m := newMemo[journal.Token](4, 64)
	big := []byte(`{"Hash":"` + fmt.Sprintf("%0100d", 7) + `","UserID":"u"}`)
	for range 2 {
		tok, err := m.decode(big)
		if err != nil || tok.UserID != "u" {
			t.Fatalf("decode(oversize) = %+v, %v", tok, err)
		}
	}
	for i := range m.slots {
		if e := m.slots[i].Load(); e != nil {
			t.Errorf("an oversize value was memoized in slot %d", i)
		}
	}
	bad := []byte(`{"Hash":`)
	for range 2 {
		if _, err := m.decode(bad); err == nil {
			t.Error("decode(malformed) succeeded")
		}
	}
	// A changed byte is a different value, never the memoized one.
	a, _ := m.decode([]byte(`{"UserID":"a"}`))
	b, _ := m.decode([]byte(`{"UserID":"b"}`))
	if a.UserID != "a" || b.UserID != "b" {
		t.Errorf("decoded %q and %q, want a and b", a.UserID, b.UserID)
	}
}

func TestMemoConcurrent(t *testing.T) {
	m := newMemo[journal.Token](2, 1<<10)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				id := fmt.Sprint(g, "-", i%7)
				tok, err := m.decode([]byte(`{"UserID":"` + id + `"}`))
				if err != nil || tok.UserID != id {
					t.Errorf("decode = %+v, %v; want user %s", tok, err, id)
					return
				}
			}
		})
	}
	wg.Wait()
}
