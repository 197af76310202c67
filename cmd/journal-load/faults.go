package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// readyEvery is how often the outage scenario asks the target's /readyz,
// which no rate limit applies to.
const readyEvery = 250 * time.Millisecond

// readiness reads one /readyz answer: whether it is "ready", and if not,
// what it says is wrong ("redis down", "draining", "no answer").
func readiness(r response) (ready bool, what string) {
	if r.Err != nil {
		return false, "no answer"
	}
	var body struct {
		Status string `json:"status"`
		Checks map[string]struct {
			Status string `json:"status"`
		} `json:"checks"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil || body.Status == "" {
		return false, fmt.Sprintf("/readyz %d", r.Status)
	}
	if r.Status == http.StatusOK && body.Status == "ready" {
		return true, ""
	}
	var down []string
	for name, c := range body.Checks {
		if c.Status != "up" {
			down = append(down, name+" down")
		}
	}
	if len(down) == 0 {
		return false, body.Status
	}
	sort.Strings(down)
	return false, strings.Join(down, ", ")
}

// watchReady asks base's /readyz every readyEvery until ctx is done and
// returns the faults it saw, in seconds from start: each from the moment
// the first answer other than "ready" was asked for to the moment the next
// "ready" arrived (a fault still on when ctx ends has EndS -1). A check of
// a hung dependency waits for it, so a "ready" that arrives late marks when
// the dependency answered again, not when it was asked. A fault's What
// lists each distinct thing /readyz said during it, in order.
func watchReady(ctx context.Context, a *api, base string, start time.Time) []fault {
	var faults []fault
	var cur *fault
	tick := time.NewTicker(readyEvery)
	defer tick.Stop()
	for ctx.Err() == nil {
		r := a.Do(ctx, call{Base: base, Method: http.MethodGet, Path: "/readyz"})
		if ctx.Err() != nil {
			break // the run is over; an answer cut off by it says nothing
		}
		at := r.At.Sub(start).Seconds()
		ready, what := readiness(r)
		switch {
		case ready && cur != nil:
			cur.EndS = at + r.Latency.Seconds()
			faults = append(faults, *cur)
			cur = nil
		case !ready && cur == nil:
			cur = &fault{BeginS: max(at, 0), EndS: -1, What: what}
		case !ready && !strings.Contains(cur.What, what):
			cur.What += ", then " + what
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	if cur != nil {
		faults = append(faults, *cur)
	}
	return faults
}
