package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Polling bounds of the coherence scenario: a stale read is re-read every
// pollEvery until it is fresh or pollFor has passed.
const (
	pollEvery = 2 * time.Millisecond
	pollFor   = 5 * time.Second
	// revocationRounds is how many tokens are revoked on one instance and
	// tried on another.
	revocationRounds = 5
)

// runCoherence writes on one instance and reads at once on the next: each
// pair first warms the reader's caches (list page, item), then writes
// (create, update or delete, in turn), then reads the item and the first
// list page on the other instance and compares them with what the write
// returned. Then it revokes tokens on one instance and measures how long
// another still accepts them.
func runCoherence(ctx context.Context, cfg config, a *api, rec *recorder, prog *progress) (*cohSummary, error) {
	inst := cfg.Instances
	out := &cohSummary{Instances: inst}
	if len(inst) < 2 {
		out.SameInstance = true
		if len(inst) == 0 {
			inst = []string{cfg.Target}
		}
		inst = []string{inst[0], inst[0]}
	}
	clients := newClientPool(cfg.FakeClients)
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()

	u, err := newUser(ctx, a, inst[0], clients.New())
	if err != nil {
		return out, err
	}
	prog.Begin(time.Now())
	c := &coherenceRun{ctx: ctx, a: a, rec: rec, out: out, tok: u.Token}
	var live []entry // entries that exist, oldest first
	for k := 0; k < cfg.Pairs && ctx.Err() == nil; k++ {
		w, r := inst[k%len(inst)], inst[(k+1)%len(inst)]
		c.client = clients.New()
		op := k % 3
		if op != 0 && len(live) == 0 {
			op = 0
		}
		// Warm the reader: its list page, and the item that will change.
		c.get(r, "/v1/entries?limit=20", nil)
		var target entry
		if op != 0 {
			target = live[len(live)-1]
			c.get(r, "/v1/entries/"+target.ID, nil)
		}
		var want entry
		gone := false
		switch op {
		case 0:
			resp := c.do(w, http.MethodPost, "/v1/entries", map[string]string{
				"title": fmt.Sprintf("coherence %d", k), "body": "written on " + w + " at " + time.Now().Format(time.RFC3339Nano)}, http.StatusCreated)
			if err := json.Unmarshal(resp.Body, &want); err != nil || want.ID == "" {
				return out, fmt.Errorf("POST /v1/entries on %s: %s", w, resp.describe())
			}
			live = append(live, want)
		case 1:
			resp := c.do(w, http.MethodPatch, "/v1/entries/"+target.ID, map[string]string{
				"title": fmt.Sprintf("coherence %d (edited)", k), "body": "edited on " + w + " " + randHex(4)}, http.StatusOK)
			if err := json.Unmarshal(resp.Body, &want); err != nil || want.ID == "" {
				return out, fmt.Errorf("PATCH /v1/entries/%s on %s: %s", target.ID, w, resp.describe())
			}
			live[len(live)-1] = want
		case 2:
			c.do(w, http.MethodDelete, "/v1/entries/"+target.ID, nil, http.StatusNoContent)
			want, gone = target, true
			live = live[:len(live)-1]
		}
		wrote := time.Now()
		out.Pairs++
		c.checkItem(r, want, gone, wrote)
		c.checkList(r, want, gone, wrote)
		prog.Set("pairs %d  stale %d", out.Pairs, out.StaleReads)
	}

	for i := 0; i < revocationRounds && ctx.Err() == nil; i++ {
		w, r := inst[i%len(inst)], inst[(i+1)%len(inst)]
		u.Client = clients.New()
		c.client = u.Client
		tok, err := login(ctx, a, w, u)
		if err != nil {
			return out, err
		}
		c.tok = tok
		c.get(r, "/v1/users/me", nil) // the reader may cache the token now
		c.do(w, http.MethodDelete, "/v1/tokens/current", nil, http.StatusNoContent)
		revoked := time.Now()
		out.Revocations++
		lag, ok, accepted := c.pollUntil(r, "/v1/users/me", revoked, func(resp response) bool { return resp.Status == http.StatusUnauthorized })
		if !ok {
			// Only a 2xx proves the token still works; a run of 429s or
			// 5xx proves nothing (and counts as failed requests).
			if accepted {
				out.RevokedStill++
			}
			continue
		}
		out.RevocationLags = append(out.RevocationLags, ms(lag))
		if ms(lag) > out.RevocationMax {
			out.RevocationMax = ms(lag)
		}
	}
	return out, nil
}

// coherenceRun holds the state of one coherence run.
type coherenceRun struct {
	ctx    context.Context
	a      *api
	rec    *recorder
	out    *cohSummary
	tok    string
	client string
}

// do sends a request and records it; a status other than want counts as a
// failed request.
func (c *coherenceRun) do(base, method, path string, body any, want int) response {
	r := c.a.Do(c.ctx, call{Base: base, Method: method, Path: path, Token: c.tok, Client: c.client, Body: body})
	c.rec.Record(r.result(r.Status != want), false)
	return r
}

// get sends a GET and records it; fresh, when not nil, decides whether the
// answer is as expected (else any 2xx is).
func (c *coherenceRun) get(base, path string, fresh func(response) bool) response {
	r := c.a.Do(c.ctx, call{Base: base, Method: http.MethodGet, Path: path, Token: c.tok, Client: c.client})
	failed := r.Err != nil || r.Status >= 500 || r.Status == http.StatusTooManyRequests
	if fresh == nil && r.Status/100 != 2 {
		failed = true
	}
	c.rec.Record(r.result(failed), false)
	return r
}

// answered reports whether r says something about the data: not a
// transport error, a 429 or a 5xx (those are failed requests, never stale
// reads).
func answered(r response) bool {
	return r.Err == nil && r.Status != http.StatusTooManyRequests && r.Status < 500
}

// pollUntil reads path on base until fresh says yes, at most pollFor. It
// returns how long after since the first fresh answer's request was sent,
// whether one came, and whether any answer before it was a real one that
// was not fresh (see [answered]).
func (c *coherenceRun) pollUntil(base, path string, since time.Time, fresh func(response) bool) (lag time.Duration, ok, staleSeen bool) {
	for time.Since(since) < pollFor && c.ctx.Err() == nil {
		r := c.get(base, path, fresh)
		if fresh(r) {
			return r.At.Sub(since), true, staleSeen
		}
		staleSeen = staleSeen || answered(r)
		time.Sleep(pollEvery)
	}
	return 0, false, staleSeen
}

// stale records one stale read and how long it stayed stale.
func (c *coherenceRun) stale(kind string, lag time.Duration, ok bool) {
	c.out.StaleReads++
	if kind == "item" {
		c.out.StaleItem++
	} else {
		c.out.StaleList++
	}
	if !ok {
		c.out.NeverFresh++
		return
	}
	c.out.LagsMs = append(c.out.LagsMs, ms(lag))
	if ms(lag) > c.out.LagMaxMs {
		c.out.LagMaxMs = ms(lag)
	}
}

// checkItem reads the written entry on base: it must equal want, or be 404
// when gone.
func (c *coherenceRun) checkItem(base string, want entry, gone bool, wrote time.Time) {
	fresh := func(r response) bool {
		if gone {
			return r.Status == http.StatusNotFound
		}
		var got entry
		return r.Status == http.StatusOK && json.Unmarshal(r.Body, &got) == nil && got == want
	}
	c.out.ItemReads++
	c.read("item", base, "/v1/entries/"+want.ID, wrote, fresh)
}

// checkList reads the first list page on base: the entry must be there as
// written (the newest entries come first), or absent when gone.
func (c *coherenceRun) checkList(base string, want entry, gone bool, wrote time.Time) {
	fresh := func(r response) bool {
		var p page
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &p) != nil {
			return false
		}
		for _, e := range p.Entries {
			if e.ID == want.ID {
				return !gone && e == want
			}
		}
		return gone
	}
	c.out.ListReads++
	c.read("list", base, "/v1/entries?limit=20", wrote, fresh)
}

// read gets path on base once; an answer that is not fresh is a stale read
// of kind, whose lag is measured by polling until the fresh answer.
func (c *coherenceRun) read(kind, base, path string, wrote time.Time, fresh func(response) bool) {
	r := c.get(base, path, fresh)
	if fresh(r) {
		return
	}
	lag, ok, staleSeen := c.pollUntil(base, path, wrote, fresh)
	if !answered(r) && !staleSeen {
		return // only errors or 429s before the fresh answer: failed requests, not stale reads
	}
	c.stale(kind, lag, ok)
}
