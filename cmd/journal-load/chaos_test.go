package main

import (
	"net/http"
	"testing"
	"time"
)

// item is an answer to GET /v1/entries/{id}.
func item(status int, version, title, body string) response {
	r := response{Status: status, Header: http.Header{}}
	if status == http.StatusOK {
		r.Header.Set("ETag", `"v`+version+`"`)
		r.Body = []byte(`{"id":"e1","title":"` + title + `","body":"` + body + `"}`)
	}
	return r
}

func TestJudgeItem(t *testing.T) {
	live := func() *ledgerEntry {
		return &ledgerEntry{ID: "e1", Title: "t", Body: "b2", Version: 2, Maybe: map[string]bool{"b3": true}}
	}
	gone := func() *ledgerEntry { e := live(); e.Gone = true; return e }
	doubtful := func() *ledgerEntry { e := live(); e.MaybeGone = true; return e }
	for _, tc := range []struct {
		name  string
		e     *ledgerEntry
		r     response
		wrong bool
	}{
		{"the acknowledged write", live(), item(200, "2", "t", "b2"), false},
		{"a later write of unknown outcome", live(), item(200, "3", "t", "b3"), false},
		{"an older version", live(), item(200, "1", "t", "b1"), true},
		{"the acknowledged body at another version", live(), item(200, "1", "t", "b2"), true},
		{"an unknown write at the acknowledged version", live(), item(200, "2", "t", "b3"), true},
		{"a live entry missing", live(), item(404, "", "", ""), true},
		{"an acknowledged delete", gone(), item(404, "", "", ""), false},
		{"an acknowledged delete resurrected", gone(), item(200, "2", "t", "b2"), true},
		{"a delete of unknown outcome, applied", doubtful(), item(404, "", "", ""), false},
		{"a delete of unknown outcome, not applied", doubtful(), item(200, "2", "t", "b2"), false},
		{"a 503 says nothing", live(), item(503, "", "", ""), false},
		{"a 429 says nothing", live(), item(429, "", "", ""), false},
		{"no answer says nothing", live(), response{Err: http.ErrHandlerTimeout}, false},
	} {
		if why := judgeItem(tc.e, tc.r); (why != "") != tc.wrong {
			t.Errorf("%s: judgeItem = %q, want wrong=%v", tc.name, why, tc.wrong)
		}
	}
}

func TestJudgeList(t *testing.T) {
	w := &chaosWorker{
		live:        []*ledgerEntry{{ID: "a", Title: "A", Body: "a1"}, {ID: "b", Title: "B", Body: "b1", Maybe: map[string]bool{"b2": true}}},
		gone:        []*ledgerEntry{{ID: "g", Title: "G", Body: "g1", Gone: true}},
		doubtful:    []*ledgerEntry{{ID: "d", Title: "D", Body: "d1", MaybeGone: true}},
		maybeTitles: map[string]bool{"M": true},
	}
	all := []entry{{ID: "a", Title: "A", Body: "a1"}, {ID: "b", Title: "B", Body: "b2"}, {ID: "d", Title: "D", Body: "d1"}, {ID: "m", Title: "M"}}
	if lost, res, _ := judgeList(w, all, nil); len(lost)+len(res) != 0 {
		t.Errorf("a consistent listing: lost %q, resurrected %q", lost, res)
	}
	if lost, _, _ := judgeList(w, all[1:], nil); len(lost) != 1 {
		t.Errorf("an acknowledged create missing: lost %q, want 1", lost)
	}
	old := append([]entry{{ID: "a", Title: "A", Body: "a0"}}, all[1:]...)
	if lost, _, _ := judgeList(w, old, nil); len(lost) != 1 {
		t.Errorf("an acknowledged update undone: lost %q, want 1", lost)
	}
	if _, res, _ := judgeList(w, append(all, entry{ID: "g", Title: "G", Body: "g1"}), nil); len(res) != 1 {
		t.Errorf("a deleted entry listed: resurrected %q, want 1", res)
	}
	if _, res, _ := judgeList(w, append(all, entry{ID: "x", Title: "X"}), nil); len(res) != 1 {
		t.Errorf("an entry nobody wrote: resurrected %q, want 1", res)
	}
}

// TestOutageLagExcuse: a wrong read within outageLag of a write acknowledged
// during a Redis outage is excused (the design allows it); a later one, or
// one about a write acknowledged outside an outage, is not.
func TestOutageLagExcuse(t *testing.T) {
	at := time.Now()
	during := &ledgerEntry{ID: "g", Title: "G", Body: "g1", Gone: true, OutageAck: at}
	outside := &ledgerEntry{ID: "h", Title: "H", Body: "h1", Gone: true}
	if !during.excused(at.Add(outageLag / 2)) {
		t.Error("a read half the lag after a write during an outage is not excused")
	}
	if during.excused(at.Add(outageLag)) || outside.excused(at) {
		t.Error("a read after the lag, or about a write outside an outage, is excused")
	}
	w := &chaosWorker{gone: []*ledgerEntry{during, outside}}
	listing := []entry{{ID: "g", Title: "G", Body: "g1"}, {ID: "h", Title: "H", Body: "h1"}}
	_, res, excused := judgeList(w, listing, func(e *ledgerEntry) bool { return e.excused(at) })
	if len(res) != 1 || excused != 1 {
		t.Errorf("resurrected %q and %d excused, want h resurrected and g excused", res, excused)
	}
}

func TestOutcome(t *testing.T) {
	for _, tc := range []struct {
		r    response
		want string
	}{
		{response{Status: 201}, "acked"},
		{response{Status: 204}, "acked"},
		{response{Status: 429}, "refused"},
		{response{Status: 404}, "refused"},
		{response{Status: 503}, "unknown"},
		{response{Status: 502}, "unknown"},
		{response{Err: http.ErrHandlerTimeout}, "unknown"},
	} {
		if got := outcome(tc.r); got != tc.want {
			t.Errorf("outcome(%d, %v) = %s, want %s", tc.r.Status, tc.r.Err, got, tc.want)
		}
	}
}

// TestFloodBound: q per w over t, plus q per Redis restarted empty, 2n per
// Redis outage and ceil(q/n) per instance restarted.
func TestFloodBound(t *testing.T) {
	start := time.Now()
	c := &chaosRun{cfg: config{Instances: []string{"a", "b", "c"}}, out: &chaosSummary{Faults: []chaosFault{
		{Kind: "redis-pause"}, {Kind: "redis-restart-empty"}, {Kind: "instance-kill"}, {Kind: "postgres-restart"},
	}}}
	f := &flood{policies: []string{"ip"}, q: map[string]int{"ip": 100}, w: map[string]int{"ip": 60},
		began: start, ended: start.Add(30 * time.Second), admitted: 100}
	l := f.result(c)[0]
	if want := 100*2 + 50 + 2*3*2 + 34; l.Bound != want || !l.OK() {
		t.Errorf("bound %d (ok %v), want %d", l.Bound, l.OK(), want)
	}
	f.admitted = l.Bound + 1
	if l := f.result(c)[0]; l.OK() {
		t.Errorf("admitted %d over a bound of %d is OK", l.Admitted, l.Bound)
	}
}
