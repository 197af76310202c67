package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// op is one kind of request of the mixed workload.
type op struct {
	Name   string
	Weight int // out of 100
}

// mixedOps is the workload: 80% reads, 15% creates, 5% updates and deletes.
var mixedOps = []op{
	{"get", 50},
	{"list", 30},
	{"create", 15},
	{"update", 3},
	{"delete", 2},
}

// pickOp maps x in [0, 100) to an operation of the mixed workload by
// weight.
func pickOp(x int) string { return pickFrom(mixedOps, x) }

// pickFrom maps x in [0, 100) to an operation of ops by weight.
func pickFrom(ops []op, x int) string {
	for _, o := range ops {
		if x < o.Weight {
			return o.Name
		}
		x -= o.Weight
	}
	return ops[0].Name
}

// poolUser is a user of the mixed workload and the entries it owns.
type poolUser struct {
	user
	mu      sync.Mutex
	ids     []string
	deleted map[string]bool
}

// pick returns a random live id, "" when none.
func (u *poolUser) pick(r *rand.Rand) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.ids) == 0 {
		return ""
	}
	return u.ids[r.IntN(len(u.ids))]
}

func (u *poolUser) isDeleted(id string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.deleted[id]
}

// runMixed offers the mixed workload at cfg.Rate requests per second for
// cfg.Duration (open loop, see [pacer]) with at most cfg.Concurrency in
// flight. With simulated clients each request comes from a new address, so
// the per-IP limit does not shape the load; the user limit does apply. The
// outage scenario also records when /readyz stopped and started answering
// "ready" (see [watchReady]).
func runMixed(ctx context.Context, cfg config, a *api, rec *recorder, prog *progress) (*pacedSummary, error) {
	clients := newClientPool(cfg.FakeClients)
	out := &pacedSummary{TargetRate: cfg.Rate, ByOp: map[string]int{}, FailedByOp: map[string]int{}}
	users, err := setupUsers(ctx, a, cfg.Target, cfg.Users, clients)
	out.Users = len(users)
	if err != nil {
		return out, err
	}

	var mu sync.Mutex // guards out's maps
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < cfg.Concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for k := range jobs {
				u := users[k%len(users)]
				name, r, failed := mixedRequest(ctx, a, cfg.Target, u, clients.New(), rng)
				if r.Err != nil && ctx.Err() != nil {
					continue // cut off by an interrupt: not an answer
				}
				rec.Record(r.result(failed), false)
				mu.Lock()
				out.ByOp[name]++
				if failed {
					out.FailedByOp[name]++
					if out.FirstError == "" {
						out.FirstError = fmt.Sprintf("%s: %s", name, r.describe())
					}
				}
				mu.Unlock()
			}
		}(w)
	}
	start := time.Now()
	prog.Begin(start)
	// The outage scenario watches /readyz, so that its charts show when
	// the fault began and ended.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	faults := make(chan []fault, 1)
	if cfg.Scenario == "outage" {
		go func() { faults <- watchReady(watchCtx, a, cfg.Target, start) }()
	} else {
		faults <- nil
	}
	p := &pacer{Rate: cfg.Rate, Start: start, End: start.Add(cfg.Duration)}
	sent, missed := p.Run(ctx, func(k int) bool {
		select {
		case jobs <- k:
			return true
		default:
			if k%50 == 0 {
				prog.Set("missed sends %d", k)
			}
			return false
		}
	})
	close(jobs)
	wg.Wait()
	stopWatch()
	out.Faults = <-faults
	out.Sent, out.Missed = sent, missed
	return out, nil
}

// setupUsers signs up n users (four at a time: password hashing is the
// expensive part) and gives each three entries.
func setupUsers(ctx context.Context, a *api, base string, n int, clients *clientPool) ([]*poolUser, error) {
	users := make([]*poolUser, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i := range users {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			u, err := newUser(ctx, a, base, clients.New())
			if err != nil {
				errs <- err
				return
			}
			pu := &poolUser{user: u, deleted: map[string]bool{}}
			for j := 0; j < 3; j++ {
				r := a.Do(ctx, call{Base: base, Method: http.MethodPost, Path: "/v1/entries", Token: u.Token, Client: clients.New(),
					Body: map[string]string{"title": fmt.Sprintf("seed %d", j), "body": "seed entry of the mixed workload"}})
				var e entry
				if r.Status != http.StatusCreated || json.Unmarshal(r.Body, &e) != nil {
					errs <- setupError("POST /v1/entries", r)
					return
				}
				pu.ids = append(pu.ids, e.ID)
			}
			users[i] = pu
		}(i)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return users, nil
}

// mixedRequest sends one request of the workload for u and says whether it
// failed: a transport error, a 5xx, or a status the operation does not
// expect (a 404 is expected only for an entry deleted meanwhile).
func mixedRequest(ctx context.Context, a *api, base string, u *poolUser, client string, rng *rand.Rand) (string, response, bool) {
	name := pickOp(rng.IntN(100))
	id := u.pick(rng)
	if id == "" && name != "list" {
		name = "create"
	}
	if name == "delete" {
		u.mu.Lock()
		if len(u.ids) <= 2 {
			name = "create"
		} else {
			// Forget it before sending: nobody picks it again.
			i := rng.IntN(len(u.ids))
			id = u.ids[i]
			u.ids = append(u.ids[:i], u.ids[i+1:]...)
			u.deleted[id] = true
		}
		u.mu.Unlock()
	}
	c := call{Base: base, Token: u.Token, Client: client}
	want := http.StatusOK
	switch name {
	case "get":
		c.Method, c.Path = http.MethodGet, "/v1/entries/"+id
	case "list":
		c.Method, c.Path = http.MethodGet, "/v1/entries?limit=20"
	case "create":
		c.Method, c.Path, want = http.MethodPost, "/v1/entries", http.StatusCreated
		c.Body = map[string]string{"title": "entry " + randHex(4), "body": "a day in the life of a load generator"}
	case "update":
		c.Method, c.Path = http.MethodPatch, "/v1/entries/"+id
		c.Body = map[string]string{"body": "edited " + randHex(4)}
	case "delete":
		c.Method, c.Path, want = http.MethodDelete, "/v1/entries/"+id, http.StatusNoContent
	}
	r := a.Do(ctx, c)
	failed := r.Err != nil || r.Status != want
	if r.Status == http.StatusNotFound && (name == "get" || name == "update") && u.isDeleted(id) {
		failed = false
	}
	if name == "create" && r.Status == http.StatusCreated {
		var e entry
		if json.Unmarshal(r.Body, &e) == nil && e.ID != "" {
			u.mu.Lock()
			u.ids = append(u.ids, e.ID)
			u.mu.Unlock()
		}
	}
	return name, r, failed
}
