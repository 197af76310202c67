package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// param is one named parameter of a run.
type param struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// summary is the outcome of a run: printed as a table, written as JSON
// (-json) and shown in the report.
type summary struct {
	Scenario   string         `json:"scenario"`
	Target     string         `json:"target"`
	Params     []param        `json:"params"`
	Started    time.Time      `json:"started"`
	Elapsed    float64        `json:"elapsed_s"`
	Requests   int            `json:"requests"`
	RPS        float64        `json:"rps"`
	Failed     int            `json:"failed"`
	ByStatus   map[string]int `json:"by_status"` // "200", ..., "error" for no response
	ByInstance map[string]int `json:"by_instance"`
	Latency    latencySummary `json:"latency"`

	Ratelimit *rlSummary    `json:"ratelimit,omitempty"`
	Coherence *cohSummary   `json:"coherence,omitempty"`
	Paced     *pacedSummary `json:"paced,omitempty"`
	Chaos     *chaosSummary `json:"chaos,omitempty"`
	Notes     []string      `json:"notes,omitempty"`
	OK        bool          `json:"ok"`
	Problems  []string      `json:"problems,omitempty"`
}

// rlSummary is the ratelimit scenario's outcome.
type rlSummary struct {
	Policy             string         `json:"policy"`
	Limit              int            `json:"limit"`    // q of the policy, 0 when never announced
	WindowS            int            `json:"window_s"` // w of the policy
	Preconsumed        int            `json:"preconsumed"`
	Expected           int            `json:"expected"` // Limit - Preconsumed
	Admitted           int            `json:"admitted"`
	Denied             int            `json:"denied"`
	Exact              bool           `json:"exact"`
	RefillAllowance    int            `json:"refill_allowance"` // quota the policy gave back during the flood (q per w)
	AdmittedByInstance map[string]int `json:"admitted_by_instance"`
	DeniedByInstance   map[string]int `json:"denied_by_instance"`
	RetryAfterMissing  int            `json:"retry_after_missing"`
	PolicyHeader       string         `json:"policy_header"`
}

// cohSummary is the coherence scenario's outcome.
type cohSummary struct {
	Instances      []string  `json:"instances"`
	Pairs          int       `json:"pairs"`
	ItemReads      int       `json:"item_reads"`
	ListReads      int       `json:"list_reads"`
	StaleReads     int       `json:"stale_reads"`
	StaleItem      int       `json:"stale_item"`
	StaleList      int       `json:"stale_list"`
	NeverFresh     int       `json:"never_fresh"` // still stale when polling gave up
	LagMaxMs       float64   `json:"invalidation_lag_max_ms"`
	LagsMs         []float64 `json:"invalidation_lags_ms,omitempty"`
	Revocations    int       `json:"revocations"`
	RevocationLags []float64 `json:"revocation_lags_ms"`
	RevocationMax  float64   `json:"revocation_lag_max_ms"`
	RevokedStill   int       `json:"revoked_still_accepted"` // never refused within the poll bound
	SameInstance   bool      `json:"same_instance"`          // fewer than two instances were given
}

// pacedSummary is the mixed and outage scenarios' outcome.
type pacedSummary struct {
	TargetRate float64        `json:"target_rate"`
	Sent       int            `json:"sent"`
	Missed     int            `json:"missed"`
	ByOp       map[string]int `json:"by_op"`
	FailedByOp map[string]int `json:"failed_by_op"`
	FirstError string         `json:"first_error,omitempty"`
	Users      int            `json:"users"`
	// Faults are the outage scenario's: when the target stopped and
	// started answering "ready" again.
	Faults []fault `json:"faults,omitempty"`
}

// fault is a time during which the target's /readyz did not answer
// "ready", in seconds from the start of the measured run.
type fault struct {
	BeginS float64 `json:"begin_s"`
	// EndS is when /readyz answered "ready" again; -1 when it had not by
	// the end of the run.
	EndS float64 `json:"end_s"`
	// What is what /readyz said, in order of appearance: "redis down",
	// "database down", "draining", "no answer".
	What string `json:"what"`
}

// Ended reports whether the fault ended before the run did.
func (f fault) Ended() bool { return f.EndS >= 0 }

// String describes the fault for the summary table.
func (f fault) String() string {
	if !f.Ended() {
		return fmt.Sprintf("%s from %.1f s to the end of the run", f.What, f.BeginS)
	}
	return fmt.Sprintf("%s from %.1f s to %.1f s (%.1f s)", f.What, f.BeginS, f.EndS, f.EndS-f.BeginS)
}

// fill copies the recorder's totals into s.
func (s *summary) fill(rec *recorder, elapsed time.Duration) {
	snap := rec.snapshot(false)
	s.Elapsed = elapsed.Seconds()
	s.Requests = snap.Requests
	s.Failed = snap.Failed
	if elapsed > 0 {
		s.RPS = float64(snap.Requests) / elapsed.Seconds()
	}
	s.ByStatus = map[string]int{}
	for code, n := range snap.ByStatus {
		k := strconv.Itoa(code)
		if code == 0 {
			k = "error"
		}
		s.ByStatus[k] = n
	}
	s.ByInstance = snap.ByInstance
	s.Latency = snap.Latency
}

// check decides OK and lists the problems.
func (s *summary) check() {
	var p []string
	// ratelimit and chaos judge their failed requests themselves.
	if s.Failed > 0 && s.Scenario != "ratelimit" && s.Scenario != "chaos" {
		p = append(p, fmt.Sprintf("%d failed requests", s.Failed))
	}
	if r := s.Ratelimit; r != nil {
		if r.Limit == 0 {
			p = append(p, fmt.Sprintf("no RateLimit-Policy member %q seen", r.Policy))
		} else if !r.Exact && r.RefillAllowance == 0 {
			p = append(p, fmt.Sprintf("admitted %d, want exactly %d", r.Admitted, r.Expected))
		} else if !r.Exact {
			p = append(p, fmt.Sprintf("admitted %d, want %d to %d", r.Admitted, r.Expected, r.Expected+r.RefillAllowance))
		}
		if r.RetryAfterMissing > 0 {
			p = append(p, fmt.Sprintf("%d responses 429 without a valid Retry-After", r.RetryAfterMissing))
		}
		if s.Failed > 0 {
			p = append(p, fmt.Sprintf("%d failed requests (errors or 5xx)", s.Failed))
		}
	}
	if c := s.Coherence; c != nil {
		if c.StaleReads > 0 {
			p = append(p, fmt.Sprintf("%d stale reads", c.StaleReads))
		}
		if c.RevokedStill > 0 {
			p = append(p, fmt.Sprintf("%d revoked tokens still accepted", c.RevokedStill))
		}
	}
	if c := s.Chaos; c != nil {
		p = append(p, c.problems()...)
	}
	if s.Requests == 0 {
		p = append(p, "no requests completed")
	}
	s.Problems = p
	s.OK = len(p) == 0
}

// WriteTable prints the summary as aligned text.
func (s *summary) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k string, format string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, a...)) }
	fmt.Fprintf(tw, "journal-load %s against %s\n", s.Scenario, s.Target)
	row("elapsed", "%.1f s", s.Elapsed)
	row("requests", "%d (%.0f/s)", s.Requests, s.RPS)
	row("failed", "%d", s.Failed)
	row("status", "%s", joinCounts(s.ByStatus))
	row("instances", "%s", joinCounts(s.ByInstance))
	row("latency", "p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms", s.Latency.P50, s.Latency.P90, s.Latency.P99, s.Latency.Max)
	if r := s.Ratelimit; r != nil {
		row("policy", "%s  (%s)", r.Policy, r.PolicyHeader)
		row("limit", "%d per %d s; %d used before the flood; expected %d admitted", r.Limit, r.WindowS, r.Preconsumed, r.Expected)
		row("admitted", "%d  (%s)", r.Admitted, joinCounts(r.AdmittedByInstance))
		row("denied (429)", "%d  (%s)", r.Denied, joinCounts(r.DeniedByInstance))
		row("exact", "%v", r.Exact)
		if r.RefillAllowance > 0 {
			row("refill", "the flood was long enough for the policy to give back up to %d more", r.RefillAllowance)
		}
		row("429 w/o Retry-After", "%d", r.RetryAfterMissing)
	}
	if c := s.Coherence; c != nil {
		row("pairs", "%d  (%d item reads, %d list reads)", c.Pairs, c.ItemReads, c.ListReads)
		row("stale reads", "%d  (item %d, list %d, never fresh %d)", c.StaleReads, c.StaleItem, c.StaleList, c.NeverFresh)
		row("invalidation lag", "max %.1f ms", c.LagMaxMs)
		row("revocation lag", "max %.1f ms over %d revocations (still accepted: %d)", c.RevocationMax, c.Revocations, c.RevokedStill)
		if c.SameInstance {
			row("note", "fewer than two -instances: reads and writes went to the same address")
		}
	}
	if p := s.Paced; p != nil {
		row("target rate", "%g/s  (sent %d, missed %d)", p.TargetRate, p.Sent, p.Missed)
		row("operations", "%s", joinCounts(p.ByOp))
		if len(p.FailedByOp) > 0 {
			row("failed by op", "%s", joinCounts(p.FailedByOp))
		}
		if p.FirstError != "" {
			row("first failure", "%s", p.FirstError)
		}
		for _, f := range p.Faults {
			row("fault seen", "%s", f)
		}
	}
	if c := s.Chaos; c != nil {
		c.rows(row)
	}
	for _, n := range s.Notes {
		row("note", "%s", n)
	}
	if s.OK {
		row("result", "OK")
	} else {
		row("result", "FAILED: %s", strings.Join(s.Problems, "; "))
	}
	tw.Flush()
}

// joinCounts formats a count map as "a=1 b=2" in key order (numeric keys
// numerically).
func joinCounts(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	keys := sortedKeys(m)
	sort.SliceStable(keys, func(i, j int) bool {
		a, ea := strconv.Atoi(keys[i])
		b, eb := strconv.Atoi(keys[j])
		if ea == nil && eb == nil {
			return a < b
		}
		return (ea == nil) && eb != nil
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}
