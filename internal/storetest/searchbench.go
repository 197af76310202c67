package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/journalsvc/journal"
)

// benchVocabulary is the number of distinct words of BenchCorpus; their
// frequencies follow Zipf's law, as words of natural text do.
const benchVocabulary = 5000

// BenchCorpus returns n entries of userID for the search benchmarks, one a
// minute from start, oldest first: titles of 3 words and bodies of 40,
// drawn from a Zipf distribution over benchVocabulary words ("w0" the most
// frequent), the same for every call.
func BenchCorpus(userID string, n int, start time.Time) []journal.Entry {
	r := rand.New(rand.NewPCG(1, 2))
	z := rand.NewZipf(r, 1.1, 2, benchVocabulary-1)
	text := func(words int) string {
		var b strings.Builder
		for i := range words {
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "w%d", z.Uint64())
		}
		return b.String()
	}
	out := make([]journal.Entry, n)
	for i := range out {
		at := journal.StoredTime(start.Add(time.Duration(i) * time.Minute))
		out[i] = journal.Entry{ID: journal.NewID(at), UserID: userID, Title: text(3), Body: text(40),
			Version: 1, CreatedAt: at, UpdatedAt: at}
	}
	return out
}

// BenchSearch benchmarks the first page (20 entries) of searches over the
// entries of userID that s holds, made by BenchCorpus from start: a frequent
// word, a rare word, two frequent words together, a word within a month,
// and a word that no entry has. It fails if a search finds nothing it
// should.
func BenchSearch(b *testing.B, s journal.Database, userID string, start time.Time) {
	ctx := context.Background()
	month := start.Add(30 * 24 * time.Hour).Format(time.RFC3339)
	for _, tc := range []struct {
		name, q, from, to string
		want              int
	}{
		{"frequent-word", "w3", "", "", 20},
		{"rare-word", "w2000", "", "", 1},
		{"two-words", "w3 w4", "", "", 20},
		{"word-in-a-month", "w10", start.Add(24 * time.Hour).Format(time.RFC3339), month, 20},
		{"no-match", "nothing", "", "", 0},
		{"no-filter", "", "", "", 20},
	} {
		f, err := journal.ParseFilter(tc.q, tc.from, tc.to)
		if err != nil {
			b.Fatal(err)
		}
		req := journal.PageRequest{Limit: 20, Filter: f}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p, err := s.ListEntries(ctx, userID, req)
				if err != nil || len(p.Entries) < tc.want {
					b.Fatalf("ListEntries(%s) = %d entries, %v; want at least %d", tc.name, len(p.Entries), err, tc.want)
				}
			}
		})
	}
}
