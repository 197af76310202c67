package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/journalsvc/journal/internal/testenv"
)

// TestCoherenceThroughService writes on instance A and reads at once on
// instance B, 1,000 times, items and list pages: no read may be stale. (B's
// rate-limit decision reaches Redis on the connection that carries B's
// near-cache invalidations, and Redis delivers the invalidation of A's write
// before that reply, so B never serves its old copy.) It also checks that
// another user gets nothing of the first user's cached data, and conditional
// requests across instances.
func TestCoherenceThroughService(t *testing.T) {
	t.Parallel()
	env := sharedEnv(t, "", map[string]string{"JOURNAL_RATE_LIMIT_IP": "off", "JOURNAL_RATE_LIMIT_USER": "1000000/1h"})
	a, b := startJournal(t, env), startJournal(t, env)
	alice := signup(t, a.URL, "alice")
	onB := newAPIClient(t, b.URL)
	onB.token = alice.token
	created := alice.do("POST", "/v1/entries", map[string]string{"title": "v0", "body": "secret"})
	expect(t, "POST /v1/entries on A", created, http.StatusCreated)
	id := decodeJSON[entryJSON](t, created).ID

	pairs := 1000
	if testing.Short() {
		pairs = 100
	}
	staleItems, stalePages := 0, 0
	for i := range pairs {
		// B holds the current state in its near cache, then A writes.
		expect(t, "GET item on B", onB.do("GET", "/v1/entries/"+id, nil), http.StatusOK)
		expect(t, "GET page on B", onB.do("GET", "/v1/entries", nil), http.StatusOK)
		title := fmt.Sprintf("v%d", i+1)
		expect(t, "PATCH on A", alice.do("PATCH", "/v1/entries/"+id, map[string]string{"title": title}), http.StatusOK)
		item := onB.do("GET", "/v1/entries/"+id, nil)
		expect(t, "GET item on B after the write", item, http.StatusOK)
		if got := decodeJSON[entryJSON](t, item); got.Title != title || item.Header.Get("ETag") != fmt.Sprintf(`"v%d"`, i+2) {
			staleItems++
		}
		page := decodeJSON[pageJSON](t, onB.do("GET", "/v1/entries", nil))
		if len(page.Entries) != 1 || page.Entries[0].Title != title {
			stalePages++
		}
	}
	if staleItems != 0 || stalePages != 0 {
		t.Errorf("%d write-on-A/read-on-B pairs: %d stale item reads, %d stale page reads; want 0", pairs, staleItems, stalePages)
	}

	// Conditional requests across instances: B answers 304 for A's current
	// ETag, and refuses an update with an ETag that A's write made stale.
	cur := alice.do("GET", "/v1/entries/"+id, nil)
	etag := cur.Header.Get("ETag")
	expect(t, "If-None-Match on B with A's ETag", onB.do("GET", "/v1/entries/"+id, nil, "If-None-Match", etag), http.StatusNotModified)
	expect(t, "PATCH on A", alice.do("PATCH", "/v1/entries/"+id, map[string]string{"body": "changed"}, "If-Match", etag), http.StatusOK)
	expect(t, "If-None-Match on B with the old ETag", onB.do("GET", "/v1/entries/"+id, nil, "If-None-Match", etag), http.StatusOK)
	expect(t, "If-Match on B with the old ETag", onB.do("PATCH", "/v1/entries/"+id, map[string]string{"title": "x"}, "If-Match", etag), http.StatusPreconditionFailed)

	// Another user, on either instance, gets none of alice's cached data.
	bob := signup(t, b.URL, "bob")
	for _, base := range []string{a.URL, b.URL} {
		bob.base = base
		expect(t, "bob reads alice's entry", bob.do("GET", "/v1/entries/"+id, nil), http.StatusNotFound)
		expect(t, "bob's If-None-Match on alice's entry", bob.do("GET", "/v1/entries/"+id, nil, "If-None-Match", etag), http.StatusNotFound)
		page := bob.do("GET", "/v1/entries", nil)
		expect(t, "bob's page", page, http.StatusOK)
		if strings.Contains(string(page.Body), id) || strings.Contains(string(page.Body), "secret") {
			t.Errorf("bob's page on %s contains alice's entry: %s", base, page.Body)
		}
		if page.Header.Get("ETag") == alice.do("GET", "/v1/entries", nil).Header.Get("ETag") {
			t.Errorf("bob's empty page has alice's page ETag")
		}
	}

	// Deletes: gone on B at once.
	expect(t, "DELETE on A", alice.do("DELETE", "/v1/entries/"+id, nil), http.StatusNoContent)
	expect(t, "GET on B after the delete", onB.do("GET", "/v1/entries/"+id, nil), http.StatusNotFound)
	if page := decodeJSON[pageJSON](t, onB.do("GET", "/v1/entries", nil)); len(page.Entries) != 0 {
		t.Errorf("page on B after the delete has %d entries, want 0", len(page.Entries))
	}
}

// TestInvalidationLagMetric: with two instances on one Redis, /metrics
// reports the invalidation lag the canary measures.
func TestInvalidationLagMetric(t *testing.T) {
	t.Parallel()
	env := sharedEnv(t, "", nil)
	a, _ := startJournal(t, env), startJournal(t, env)
	c := newAPIClient(t, a.URL)
	_, ok := testenv.Poll(15*time.Second, 200*time.Millisecond, func() bool {
		body := string(c.do("GET", "/metrics", nil).Body)
		i := strings.Index(body, "journal_cache_invalidation_lag_seconds_count ")
		if i < 0 {
			return false
		}
		var n int
		_, err := fmt.Sscan(body[i+len("journal_cache_invalidation_lag_seconds_count "):], &n)
		return err == nil && n >= 2
	})
	if !ok {
		t.Fatalf("journal_cache_invalidation_lag_seconds has fewer than 2 observations after 15s")
	}
}
