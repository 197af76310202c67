package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The chaos scenario: mixed load through the balancer (-target) while a
// fault controller (-faults) breaks Redis, PostgreSQL and the instances;
// a ledger of every acknowledged write, checked during the run and at the
// end on every instance (-instances); a flood per rate-limit policy whose
// admissions must stay within the policy's bound.
//
// A write is acknowledged when the client got a 2xx. A 4xx was not applied.
// A 5xx or no answer leaves the outcome unknown: the entry may or may not
// carry that write, and the ledger allows both.
const (
	// chaosMaxLive is how many live entries a worker keeps; past it a
	// create becomes a delete, so the final list fits in a few pages.
	chaosMaxLive = 20
	// chaosReadyBound is how soon after a fault ends every instance must
	// answer /readyz 200.
	chaosReadyBound = 5 * time.Second
	// chaosGrace extends a fault's window past the instances' readiness:
	// a request sent during the fault may be answered just after it.
	chaosGrace = time.Second
	// chaosEvidence caps the problems kept as evidence.
	chaosEvidence = 20
	// chaosFirstFault is when the first fault begins, chaosQuietEnd how
	// long before the end of the load the last one must have ended.
	chaosFirstFault = 2 * time.Second
	chaosQuietEnd   = 4 * time.Second
)

// chaosOps is the chaos workload, weights out of 100. Every acknowledged
// write is followed by a read of the entry through the balancer.
var chaosOps = []op{
	{"get", 40},
	{"list", 20},
	{"create", 20},
	{"update", 12},
	{"delete", 8},
}

// chaosKinds are the faults, each a begin and an end action of the
// controller. An instance's actions take its index (?i=N).
var chaosKinds = []struct{ Name, Begin, End string }{
	{"redis-pause", "redis-pause", "redis-resume"},
	{"redis-restart-empty", "redis-kill", "redis-start"},
	{"postgres-restart", "postgres-kill", "postgres-start"},
	{"instance-kill", "instance-kill", "instance-start"},
}

// chaosSummary is the chaos scenario's outcome.
type chaosSummary struct {
	Seed    int64          `json:"seed"`
	Workers int            `json:"workers"`
	Faults  []chaosFault   `json:"faults"`
	Acked   map[string]int `json:"acked"`   // acknowledged writes by kind
	Unknown map[string]int `json:"unknown"` // writes whose outcome is unknown (5xx, no answer)
	Refused map[string]int `json:"refused"` // writes answered 4xx (429, 503 excluded)
	// DeleteResent counts deletes answered 404 while an instance was
	// killed: resent by nginx after the dead instance may have applied them.
	DeleteResent int `json:"delete_resent"`
	// Reads counts the reads checked against the ledger during the run.
	Reads      int `json:"reads"`
	StaleReads int `json:"stale_reads"`
	// OutageLagReads counts wrong reads within outageLag of a write
	// acknowledged during a Redis outage: allowed by the design.
	OutageLagReads int `json:"outage_lag_reads"`
	Lost           int `json:"lost_writes"`
	// Unchecked counts the users whose entries an instance never listed at
	// the end (no answer within the retries): nothing is known of them.
	Unchecked   int `json:"unchecked"`
	Resurrected int `json:"resurrected"`
	// Checked counts the entries checked at the end, on each instance.
	Checked      int            `json:"final_checked"`
	Instances    []string       `json:"instances"`
	ServerErrors map[string]int `json:"server_errors"` // 5xx and no answers, by kind
	Disallowed   int            `json:"disallowed"`    // those of kinds the design does not state
	Limits       []limitCheck   `json:"limits"`
	RecoveryMaxS float64        `json:"recovery_max_s"`
	FinalReady   bool           `json:"final_ready"`
	Evidence     []string       `json:"evidence,omitempty"`
	Err          string         `json:"error,omitempty"`
}

// chaosFault is one fault the scenario caused, in seconds from the start
// of the load.
type chaosFault struct {
	Kind     string  `json:"kind"`
	Instance int     `json:"instance"` // instance-kill: its index; else -1
	BeginS   float64 `json:"begin_s"`
	EndS     float64 `json:"end_s"`   // the end action returned
	ReadyS   float64 `json:"ready_s"` // every instance answered /readyz 200; -1 never
	Err      string  `json:"error,omitempty"`
}

// RecoveryS is how long after the fault ended every instance was ready.
func (f chaosFault) RecoveryS() float64 {
	if f.ReadyS < 0 {
		return -1
	}
	return f.ReadyS - f.EndS
}

// limitCheck is one policy's flood: what it admitted against its bound.
type limitCheck struct {
	Policy      string  `json:"policy"`
	Flood       string  `json:"flood"` // the flood's first policy: the one it aims at
	Q           int     `json:"q"`
	W           int     `json:"w"`
	Sent        int     `json:"sent"`
	Admitted    int     `json:"admitted"`
	Denied      int     `json:"denied"`      // 429
	Unavailable int     `json:"unavailable"` // 503 or no answer
	FloodS      float64 `json:"flood_s"`
	Bound       int     `json:"bound"`
}

// OK reports whether the policy stayed within its bound.
func (l limitCheck) OK() bool { return l.Q > 0 && l.Admitted <= l.Bound }

// problems lists what the run found wrong.
func (c *chaosSummary) problems() []string {
	var p []string
	add := func(n int, what string) {
		if n > 0 {
			p = append(p, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(c.Lost, "acknowledged writes lost")
	add(c.Unchecked, "ledgers an instance never answered for at the end")
	add(c.Resurrected, "deleted entries resurrected")
	add(c.StaleReads, "stale reads after a write returned")
	add(c.Disallowed, "5xx or failed requests of a kind the design does not state")
	for _, l := range c.Limits {
		switch {
		case l.Q == 0:
			p = append(p, fmt.Sprintf("policy %s: never announced", l.Policy))
		case !l.OK():
			p = append(p, fmt.Sprintf("policy %s admitted %d, bound %d", l.Policy, l.Admitted, l.Bound))
		}
	}
	for _, f := range c.Faults {
		switch {
		case f.Err != "":
			p = append(p, fmt.Sprintf("fault %s at %.1f s: %s", f.Kind, f.BeginS, f.Err))
		case f.ReadyS < 0:
			p = append(p, fmt.Sprintf("after %s at %.1f s: the instances never became ready", f.Kind, f.BeginS))
		case f.RecoveryS() > chaosReadyBound.Seconds():
			p = append(p, fmt.Sprintf("after %s at %.1f s: ready %.1f s after it ended, want <= %v", f.Kind, f.BeginS, f.RecoveryS(), chaosReadyBound))
		}
	}
	if !c.FinalReady {
		p = append(p, "not every instance ready at the end")
	}
	if c.Checked == 0 {
		p = append(p, "no entry checked at the end")
	}
	if c.Err != "" {
		p = append(p, c.Err)
	}
	return p
}

// rows prints the outcome into the summary table.
func (c *chaosSummary) rows(row func(k, format string, a ...any)) {
	row("seed", "%d  (%d workers)", c.Seed, c.Workers)
	row("acknowledged", "%s", joinCounts(c.Acked))
	row("unknown outcome", "%s", joinCounts(c.Unknown))
	row("refused (4xx)", "%s", joinCounts(c.Refused))
	row("deletes resent", "%d answered 404 by a second instance after nginx resent them (the first was killed)", c.DeleteResent)
	row("reads checked", "%d during the run; at the end %d entry reads over %d instances, each also listed", c.Reads, c.Checked, len(c.Instances))
	row("lost writes", "%d", c.Lost)
	if c.Unchecked > 0 {
		row("unchecked", "%d ledgers: an instance did not answer the final list", c.Unchecked)
	}
	row("resurrected", "%d", c.Resurrected)
	row("stale reads", "%d", c.StaleReads)
	row("outage lag", "%d reads within %v of a write acknowledged during a Redis outage (allowed)", c.OutageLagReads, outageLag)
	row("5xx and no answer", "%s  (of kinds the design does not state: %d)", joinCounts(c.ServerErrors), c.Disallowed)
	for _, l := range c.Limits {
		row("limit "+l.Policy, "(%s flood) q=%d w=%ds  sent %d admitted %d denied %d unavailable %d over %.0f s; bound %d: %s",
			l.Flood, l.Q, l.W, l.Sent, l.Admitted, l.Denied, l.Unavailable, l.FloodS, l.Bound, okWord(l.OK()))
	}
	for _, f := range c.Faults {
		what := f.Kind
		if f.Instance >= 0 {
			what += " " + strconv.Itoa(f.Instance)
		}
		rec := "never ready"
		if f.ReadyS >= 0 {
			rec = fmt.Sprintf("ready %.2f s after", f.RecoveryS())
		}
		if f.Err != "" {
			rec = "error: " + f.Err
		}
		row("fault", "%-22s %6.1f s to %6.1f s, %s", what, f.BeginS, f.EndS, rec)
	}
	row("recovery max", "%.2f s (bound %v)", c.RecoveryMaxS, chaosReadyBound)
	for _, e := range c.Evidence {
		row("evidence", "%s", e)
	}
}

func okWord(ok bool) string {
	if ok {
		return "ok"
	}
	return "EXCEEDED"
}

// ledgerEntry is what the client knows of one entry.
type ledgerEntry struct {
	ID, Title string
	Body      string          // the acknowledged body
	Version   int64           // the acknowledged version (the ETag's)
	Maybe     map[string]bool // bodies of updates whose outcome is unknown
	Gone      bool            // an acknowledged delete
	MaybeGone bool            // a delete whose outcome is unknown
	// OutageAck is when the last acknowledged write of e was answered, if
	// its request overlapped a Redis outage; zero otherwise (see
	// outageLag).
	OutageAck time.Time
}

// outageLag is how long a write acknowledged during a Redis outage may stay
// unseen on the other instances: the design states such a write is seen on
// every instance within 1 s. Its writer, believing Redis down, leaves the
// invalidation in the outbox until it sees Redis again, while another
// instance may already trust its cache. Reads it excuses are counted apart
// (OutageLagReads), never as stale.
const outageLag = time.Second

// excused reports whether a wrong answer about e, to a request sent at at,
// falls within outageLag of a write acknowledged during a Redis outage.
func (e *ledgerEntry) excused(at time.Time) bool {
	return !e.OutageAck.IsZero() && at.Sub(e.OutageAck) < outageLag
}

// fresh reports whether an answer with this body and version (-1 when
// unknown, as in a list) can follow every acknowledged write of e.
func (e *ledgerEntry) fresh(body string, version int64) bool {
	if body == e.Body {
		return version < 0 || version == e.Version
	}
	return e.Maybe[body] && (version < 0 || version > e.Version)
}

// chaosWorker owns one user and its entries: its requests on an entry are
// sequential, so every read it sends follows the writes it saw answered.
type chaosWorker struct {
	n           int
	a           *api // leaves from the worker's own loopback address
	u           user
	rng         *mrand.Rand
	live        []*ledgerEntry
	gone        []*ledgerEntry // acknowledged deletes
	doubtful    []*ledgerEntry // deletes of unknown outcome
	maybeTitles map[string]bool
	seq         int
}

// chaosRun holds the state of one chaos run.
type chaosRun struct {
	cfg     config
	a       *api // direct requests to the instances
	rec     *recorder
	clients *clientPool
	start   time.Time

	mu      sync.Mutex // guards out, windows
	out     *chaosSummary
	windows []faultWindow
}

// faultWindow is when a fault may explain a 5xx: from its begin until a
// grace after every instance was ready again.
type faultWindow struct {
	kind     string
	from, to time.Time // to is zero while the fault lasts
}

// runChaos runs the chaos scenario; see the comment at the top of this file.
func runChaos(ctx context.Context, cfg config, a *api, rec *recorder, prog *progress) (*chaosSummary, error) {
	out := &chaosSummary{Seed: cfg.Seed, Workers: cfg.Concurrency, Instances: cfg.Instances,
		Acked: map[string]int{}, Unknown: map[string]int{}, Refused: map[string]int{}, ServerErrors: map[string]int{}}
	if len(cfg.Instances) == 0 {
		return out, fmt.Errorf("-scenario chaos needs -instances: the direct URLs of the instances behind -target")
	}
	c := &chaosRun{cfg: cfg, a: a, rec: rec, clients: newClientPool(true), out: out}

	// Each worker connects from its own loopback address, which the
	// balancer passes on as the client: one ip subject per worker.
	var b [2]byte
	_, _ = rand.Read(b[:])
	workers := make([]*chaosWorker, cfg.Concurrency)
	for i := range workers {
		from := &net.TCPAddr{IP: net.IPv4(127, 1+b[0]%250, b[1], byte(1+i%250))}
		workers[i] = &chaosWorker{n: i, a: newAPIFrom(4, cfg.Timeout, from), maybeTitles: map[string]bool{},
			rng: mrand.New(mrand.NewPCG(uint64(cfg.Seed), uint64(i)))}
	}
	if err := c.setup(ctx, workers); err != nil {
		return out, err
	}
	floods, err := c.newFloods(ctx)
	if err != nil {
		return out, err
	}

	c.start = time.Now()
	prog.Begin(c.start)
	loadCtx, stopLoad := context.WithDeadline(ctx, c.start.Add(cfg.Duration))
	defer stopLoad()
	var wg sync.WaitGroup
	for _, f := range floods {
		wg.Go(func() { f.run(loadCtx, c) })
	}
	wg.Go(func() { c.injectFaults(loadCtx) })

	// One goroutine per worker, so a worker's requests are sequential; a
	// due send whose worker is busy goes to the next idle one, and is
	// missed when none is.
	jobs := make([]chan struct{}, len(workers))
	var work sync.WaitGroup
	for i, w := range workers {
		jobs[i] = make(chan struct{})
		work.Go(func() {
			for range jobs[i] {
				c.step(loadCtx, w)
				c.mu.Lock()
				prog.Set("acked %d  stale %d  faults %d", out.Acked["create"]+out.Acked["update"]+out.Acked["delete"], out.StaleReads, len(out.Faults))
				c.mu.Unlock()
			}
		})
	}
	p := &pacer{Rate: cfg.Rate, Start: c.start, End: c.start.Add(cfg.Duration)}
	p.Run(loadCtx, func(k int) bool {
		for j := range jobs {
			select {
			case jobs[(k+j)%len(jobs)] <- struct{}{}:
				return true
			default:
			}
		}
		return false
	})
	for _, ch := range jobs {
		close(ch)
	}
	work.Wait()
	wg.Wait()
	stopLoad()
	if ctx.Err() != nil {
		return out, ctx.Err()
	}

	// The end: every instance ready, then the ledger on each of them.
	ready := c.waitReady(ctx, 30*time.Second)
	out.FinalReady = !ready.IsZero()
	for _, f := range floods {
		out.Limits = append(out.Limits, f.result(c)...)
	}
	// The users' checks run side by side: each is bounded by its user's
	// limit, which the final reads may exhaust (they wait it out).
	var check sync.WaitGroup
	for _, w := range workers {
		check.Go(func() {
			for _, base := range cfg.Instances {
				c.finalCheck(ctx, base, w)
			}
		})
	}
	check.Wait()
	for _, f := range out.Faults {
		out.RecoveryMaxS = max(out.RecoveryMaxS, f.RecoveryS())
	}
	return out, nil
}

// evidence keeps the first problems found.
func (c *chaosRun) evidence(format string, a ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.out.Evidence) < chaosEvidence {
		at := time.Duration(0)
		if !c.start.IsZero() {
			at = time.Since(c.start).Round(100 * time.Millisecond)
		}
		c.out.Evidence = append(c.out.Evidence, fmt.Sprintf("at %v: ", at)+fmt.Sprintf(format, a...))
	}
}

// count adds one to a counter of the summary.
func (c *chaosRun) count(field *int) {
	c.mu.Lock()
	*field++
	c.mu.Unlock()
}

// record records r and judges an answer that is a 5xx or none: allowed
// when the design states it for a fault that was on (or had just ended)
// when the request was in flight. direct marks a request sent to an
// instance rather than through the balancer.
func (c *chaosRun) record(r response, direct bool) {
	kind, allowed := "", true
	switch {
	case r.Err != nil && direct:
		// A killed instance refuses connections until it is started.
		kind, allowed = "no answer from an instance", c.during(r, "instance-kill")
	case r.Err != nil:
		kind, allowed = "no answer", false
	case r.Status == http.StatusServiceUnavailable && validRetryAfter(r.Header.Get("Retry-After")):
		// Login fails closed while Redis is down, and a request that needs
		// the database while it is down gets 503 with Retry-After.
		kind = "503 with Retry-After"
	case (r.Status == http.StatusBadGateway || r.Status == http.StatusGatewayTimeout) && r.Instance == "" && !direct:
		// nginx does not resend a write that reached an instance killed
		// before it answered.
		kind, allowed = fmt.Sprintf("%d from the balancer", r.Status), c.during(r, "instance-kill")
	case r.Status >= 500:
		kind, allowed = strconv.Itoa(r.Status), false
		if r.Status == http.StatusServiceUnavailable {
			kind = "503 without Retry-After"
		}
	}
	res := r.result(false)
	res.Failed = !allowed
	c.rec.Record(res, false)
	if kind == "" {
		return
	}
	if !allowed {
		kind += " (not stated)"
	}
	c.mu.Lock()
	c.out.ServerErrors[kind]++
	if !allowed {
		c.out.Disallowed++
	}
	c.mu.Unlock()
	if !allowed {
		via := "through the balancer"
		if direct {
			via = "on an instance"
		}
		c.evidence("%s %s: %s", kind, via, r.describe())
	}
}

// during reports whether r was in flight during a fault of kind.
func (c *chaosRun) during(r response, kind string) bool {
	begin, end := r.At, r.At.Add(r.Latency)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.windows {
		if w.kind != kind {
			continue
		}
		if !end.Before(w.from) && (w.to.IsZero() || begin.Before(w.to)) {
			return true
		}
	}
	return false
}

// markOutage records on e when r, which acknowledged a write of e,
// overlapped a Redis outage (see outageLag).
func (c *chaosRun) markOutage(e *ledgerEntry, r response) {
	e.OutageAck = time.Time{}
	if c.during(r, "redis-pause") || c.during(r, "redis-restart-empty") {
		e.OutageAck = r.At.Add(r.Latency)
	}
}

// setup signs up each worker's user through the balancer, from the
// worker's address, four at a time, and gives it three entries.
func (c *chaosRun) setup(ctx context.Context, workers []*chaosWorker) error {
	errs := make(chan error, len(workers))
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			u, err := newUser(ctx, w.a, c.cfg.Target, "")
			if err != nil {
				errs <- err
				return
			}
			w.u = u
			for range 3 {
				if !c.create(ctx, w) {
					errs <- fmt.Errorf("%w: worker %d: the seed entries were not created", errSetup, w.n)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// do sends a request of w through the balancer and records it.
func (c *chaosRun) do(ctx context.Context, w *chaosWorker, method, path string, body any) response {
	r := w.a.Do(ctx, call{Base: c.cfg.Target, Method: method, Path: path, Token: w.u.Token, Body: body})
	if r.Err == nil || ctx.Err() == nil {
		c.record(r, false)
	}
	return r
}

// outcome sorts a write's answer: acknowledged (2xx), refused (4xx: not
// applied), or unknown (5xx, no answer). A write cut off by the end of
// the run is unknown too.
func outcome(r response) string {
	switch {
	case r.Err == nil && r.Status/100 == 2:
		return "acked"
	case r.Err == nil && r.Status/100 == 4:
		return "refused"
	}
	return "unknown"
}

// tally counts a write of kind by its outcome.
func (c *chaosRun) tally(kind, o string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch o {
	case "acked":
		c.out.Acked[kind]++
	case "refused":
		c.out.Refused[kind]++
	default:
		c.out.Unknown[kind]++
	}
}

// etagVersion returns the version of an entry's ETag ("v<version>"), -1
// when there is none.
func etagVersion(h http.Header) int64 {
	v, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(h.Get("ETag"), "W/"), `"v`), 10, 64)
	if err != nil {
		return -1
	}
	return v
}

// step runs one operation of w's workload.
func (c *chaosRun) step(ctx context.Context, w *chaosWorker) {
	name := pickFrom(chaosOps, w.rng.IntN(100))
	switch {
	case len(w.live) == 0:
		name = "create"
	case name == "create" && len(w.live) >= chaosMaxLive:
		name = "delete"
	case name == "delete" && len(w.live) <= 2:
		name = "update"
	}
	var e *ledgerEntry
	var i int
	if len(w.live) > 0 {
		i = w.rng.IntN(len(w.live))
		e = w.live[i]
	}
	switch name {
	case "get":
		c.readItem(ctx, w, e)
	case "list":
		c.readList(ctx, w)
	case "create":
		c.create(ctx, w)
	case "update":
		body := fmt.Sprintf("w%d edit %d %s", w.n, w.seq, randHex(4))
		w.seq++
		r := c.do(ctx, w, http.MethodPatch, "/v1/entries/"+e.ID, map[string]string{"body": body})
		o := outcome(r)
		c.tally("update", o)
		switch {
		case o == "acked":
			c.markOutage(e, r)
			var got entry
			if json.Unmarshal(r.Body, &got) != nil || got.Body != body || etagVersion(r.Header) <= e.Version {
				c.count(&c.out.StaleReads)
				c.evidence("PATCH %s answered %s, want body %q and a version above %d", e.ID, r.describe(), body, e.Version)
			}
			e.Body, e.Version = body, etagVersion(r.Header)
			c.readItem(ctx, w, e)
		case o == "unknown":
			e.Maybe[body] = true
		case r.Status == http.StatusNotFound:
			c.count(&c.out.StaleReads)
			c.evidence("PATCH %s (live) answered 404", e.ID)
		}
	case "delete":
		r := c.do(ctx, w, http.MethodDelete, "/v1/entries/"+e.ID, nil)
		o := outcome(r)
		c.tally("delete", o)
		switch {
		case o == "acked":
			c.markOutage(e, r)
			e.Gone = true
			w.live = append(w.live[:i], w.live[i+1:]...)
			w.gone = append(w.gone, e)
			c.readItem(ctx, w, e)
		case o == "unknown" || (r.Status == http.StatusNotFound && c.during(r, "instance-kill")):
			// DELETE is idempotent: nginx resends it to another instance
			// when the one that applied it died before answering, and the
			// second answers 404. Either way the entry may be gone.
			if o != "unknown" {
				c.count(&c.out.DeleteResent)
			}
			e.MaybeGone = true
			w.live = append(w.live[:i], w.live[i+1:]...)
			w.doubtful = append(w.doubtful, e)
		case r.Status == http.StatusNotFound:
			c.count(&c.out.StaleReads)
			c.evidence("DELETE %s (live) answered 404", e.ID)
		}
	}
}

// create creates an entry of w and reads it back; it reports whether the
// create was acknowledged.
func (c *chaosRun) create(ctx context.Context, w *chaosWorker) bool {
	title := fmt.Sprintf("chaos w%d n%d %s", w.n, w.seq, randHex(3))
	body := "created " + randHex(4)
	w.seq++
	r := c.do(ctx, w, http.MethodPost, "/v1/entries", map[string]string{"title": title, "body": body})
	o := outcome(r)
	c.tally("create", o)
	switch o {
	case "unknown":
		w.maybeTitles[title] = true
	case "acked":
		var got entry
		if json.Unmarshal(r.Body, &got) != nil || got.ID == "" || got.Title != title || got.Body != body {
			c.evidence("POST /v1/entries answered %s", r.describe())
			return false
		}
		e := &ledgerEntry{ID: got.ID, Title: title, Body: body, Version: etagVersion(r.Header), Maybe: map[string]bool{}}
		c.markOutage(e, r)
		w.live = append(w.live, e)
		c.readItem(ctx, w, e)
		return true
	}
	return false
}

// judgeItem says what is wrong with an answer to GET /v1/entries/{id} of
// e, "" when nothing. An answer that says nothing about the data (no
// answer, 429, 5xx) is never wrong.
func judgeItem(e *ledgerEntry, r response) string {
	if !answered(r) {
		return ""
	}
	switch r.Status {
	case http.StatusNotFound:
		if e.Gone || e.MaybeGone {
			return ""
		}
		return "404 for a live entry"
	case http.StatusOK:
		var got entry
		if err := json.Unmarshal(r.Body, &got); err != nil {
			return "unreadable body: " + err.Error()
		}
		if e.Gone {
			return "an entry whose delete was acknowledged: " + r.describe()
		}
		if got.Title != e.Title || !e.fresh(got.Body, etagVersion(r.Header)) {
			return fmt.Sprintf("body %q version %d, acknowledged %q version %d", got.Body, etagVersion(r.Header), e.Body, e.Version)
		}
		return ""
	}
	return "status " + r.describe()
}

// readItem reads e through the balancer and checks it against the ledger.
func (c *chaosRun) readItem(ctx context.Context, w *chaosWorker, e *ledgerEntry) {
	r := c.do(ctx, w, http.MethodGet, "/v1/entries/"+e.ID, nil)
	if !answered(r) {
		return
	}
	c.count(&c.out.Reads)
	if why := judgeItem(e, r); why != "" && e.excused(r.At) {
		c.count(&c.out.OutageLagReads)
	} else if why != "" {
		c.count(&c.out.StaleReads)
		c.evidence("stale read of %s on %s: %s", e.ID, r.Instance, why)
	}
}

// listAll reads every page of w's entries from base, each request from a
// new simulated client; ok is false when a page got no answer that says
// something about the data.
func (c *chaosRun) listAll(ctx context.Context, base string, w *chaosWorker, get func(path string) response) (entries []entry, ok bool) {
	path := "/v1/entries?limit=100"
	for range 20 {
		r := get(path)
		if !answered(r) || r.Status != http.StatusOK {
			return entries, false
		}
		var p page
		if err := json.Unmarshal(r.Body, &p); err != nil {
			c.evidence("list on %s: %v", base, err)
			return entries, false
		}
		entries = append(entries, p.Entries...)
		if p.NextCursor == nil {
			return entries, true
		}
		path = "/v1/entries?limit=100&cursor=" + url.QueryEscape(*p.NextCursor)
	}
	return entries, false
}

// judgeList compares a whole listing with w's ledger and returns what is
// wrong: acknowledged entries missing or old (lost), deleted ones present
// (resurrected), entries nobody wrote. An entry excuse reports true for is
// skipped and counted in excused (excuse may be nil).
func judgeList(w *chaosWorker, entries []entry, excuse func(*ledgerEntry) bool) (lost, resurrected []string, excused int) {
	byID := map[string]*ledgerEntry{}
	for _, set := range [][]*ledgerEntry{w.live, w.gone, w.doubtful} {
		for _, e := range set {
			byID[e.ID] = e
		}
	}
	// excusing counts what is wrong about e as excused when excuse says so.
	excusing := func(e *ledgerEntry) bool {
		if excuse != nil && excuse(e) {
			excused++
			return true
		}
		return false
	}
	seen := map[string]bool{}
	for _, got := range entries {
		seen[got.ID] = true
		e, known := byID[got.ID]
		switch {
		case !known && w.maybeTitles[got.Title]:
		case !known:
			resurrected = append(resurrected, fmt.Sprintf("%s (%q): nobody wrote it", got.ID, got.Title))
		case e.Gone:
			if !excusing(e) {
				resurrected = append(resurrected, fmt.Sprintf("%s (%q): its delete was acknowledged", got.ID, got.Title))
			}
		case got.Title != e.Title || !e.fresh(got.Body, -1):
			if !excusing(e) {
				lost = append(lost, fmt.Sprintf("%s: body %q, acknowledged %q", got.ID, got.Body, e.Body))
			}
		}
	}
	for _, e := range w.live {
		if !seen[e.ID] && !excusing(e) {
			lost = append(lost, fmt.Sprintf("%s (%q): acknowledged, missing from the list", e.ID, e.Title))
		}
	}
	return lost, resurrected, excused
}

// readList lists w's entries through the balancer and checks them.
func (c *chaosRun) readList(ctx context.Context, w *chaosWorker) {
	entries, ok := c.listAll(ctx, c.cfg.Target, w, func(path string) response {
		return c.do(ctx, w, http.MethodGet, path, nil)
	})
	if !ok {
		return
	}
	c.count(&c.out.Reads)
	at := time.Now()
	lost, res, excused := judgeList(w, entries, func(e *ledgerEntry) bool { return e.excused(at) })
	for range excused {
		c.count(&c.out.OutageLagReads)
	}
	for _, s := range append(lost, res...) {
		c.count(&c.out.StaleReads)
		c.evidence("stale list: %s", s)
	}
}

// direct sends a request of w's user straight to the instance at base,
// from a new simulated client each time (the instances believe the tool's
// X-Forwarded-For), retrying answers that say nothing about the data (429,
// 503, no answer) for up to 30 s.
func (c *chaosRun) direct(ctx context.Context, base, token, path string) response {
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := c.a.Do(ctx, call{Base: base, Method: http.MethodGet, Path: path, Token: token, Client: c.clients.New()})
		c.record(r, true)
		if answered(r) || time.Now().After(deadline) || ctx.Err() != nil {
			return r
		}
		wait := 200 * time.Millisecond
		if n, err := strconv.Atoi(r.Header.Get("Retry-After")); err == nil && n > 0 {
			wait = min(time.Duration(n)*time.Second, 2*time.Second)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// finalCheck checks w's ledger on the instance at base: the listing, then
// every entry the ledger knows.
func (c *chaosRun) finalCheck(ctx context.Context, base string, w *chaosWorker) {
	entries, ok := c.listAll(ctx, base, w, func(path string) response { return c.direct(ctx, base, w.u.Token, path) })
	if !ok {
		c.count(&c.out.Unchecked)
		c.evidence("final list of worker %d on %s: no answer", w.n, base)
		return
	}
	lost, res, _ := judgeList(w, entries, nil)
	for _, s := range lost {
		c.count(&c.out.Lost)
		c.evidence("final list on %s: lost %s", base, s)
	}
	for _, s := range res {
		c.count(&c.out.Resurrected)
		c.evidence("final list on %s: resurrected %s", base, s)
	}
	for _, set := range [][]*ledgerEntry{w.live, w.gone, w.doubtful} {
		for _, e := range set {
			r := c.direct(ctx, base, w.u.Token, "/v1/entries/"+e.ID)
			c.count(&c.out.Checked)
			why := judgeItem(e, r)
			if why == "" && !answered(r) {
				why = "no answer: " + r.describe()
			}
			switch {
			case why == "":
			case e.Gone:
				c.count(&c.out.Resurrected)
				c.evidence("final read on %s: %s resurrected: %s", base, e.ID, why)
			default:
				c.count(&c.out.Lost)
				c.evidence("final read on %s: %s lost: %s", base, e.ID, why)
			}
		}
	}
}
