package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"sort"
	"strconv"
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

// A fault controller (-faults URL) is whatever owns the processes behind
// the target: it answers POST URL/ACTION with 2xx once the action is done,
// anything else with what went wrong. The actions are redis-pause and
// redis-resume (SIGSTOP, SIGCONT), redis-kill and redis-start (a crash, and
// a start with no data), postgres-kill and postgres-start (a crash, and a
// start with crash recovery), instance-kill?i=N and instance-start?i=N
// (SIGKILL of instance N of -instances, and a start that returns once it is
// ready). deploy/chaos_test.go is one.
const controlTimeout = 2 * time.Minute

// control asks the fault controller for action; inst >= 0 names an
// instance.
func (c *chaosRun) control(action string, inst int) error {
	u := strings.TrimRight(c.cfg.Faults, "/") + "/" + action
	if inst >= 0 {
		u += "?i=" + strconv.Itoa(inst)
	}
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %v", action, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %d %s", action, resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}

// injectFaults runs the fault schedule from the start of the load: the
// first fault at chaosFirstFault, then one after another in a seeded order
// that takes every kind once before any again, each held 0.5 to 3 s and
// followed, once every instance is ready, by 1 to 2.5 quiet seconds. The last one ends, with time to recover, chaosQuietEnd before
// the load does. Without -faults it does nothing.
func (c *chaosRun) injectFaults(ctx context.Context) {
	if c.cfg.Faults == "" {
		return
	}
	rng := mrand.New(mrand.NewPCG(uint64(c.cfg.Seed), 0xfa17))
	last := c.start.Add(c.cfg.Duration - chaosQuietEnd)
	at := c.start.Add(chaosFirstFault)
	var order []int
	for {
		if len(order) == 0 {
			order = rng.Perm(len(chaosKinds))
		}
		k := chaosKinds[order[0]]
		order = order[1:]
		hold := 500*time.Millisecond + time.Duration(rng.Int64N(int64(2500*time.Millisecond)))
		gap := time.Second + time.Duration(rng.Int64N(int64(1500*time.Millisecond)))
		inst := -1
		if k.Name == "instance-kill" {
			inst = rng.IntN(len(c.cfg.Instances))
		}
		if at.Add(hold + chaosReadyBound).After(last) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(at)):
		}
		c.fault(k.Name, k.Begin, k.End, inst, hold)
		at = time.Now().Add(gap)
	}
}

// fault causes one fault and ends it after hold, whatever happens to the
// run meanwhile, then waits until every instance is ready.
func (c *chaosRun) fault(kind, begin, end string, inst int, hold time.Duration) {
	since := func(t time.Time) float64 { return t.Sub(c.start).Seconds() }
	f := chaosFault{Kind: kind, Instance: inst, ReadyS: -1}
	from := time.Now()
	c.mu.Lock()
	idx := len(c.windows)
	c.windows = append(c.windows, faultWindow{kind: kind, from: from})
	c.mu.Unlock()
	f.BeginS = since(from)
	err := c.control(begin, inst)
	if err == nil {
		time.Sleep(hold)
	}
	if err2 := c.control(end, inst); err == nil {
		err = err2
	}
	ended := time.Now()
	f.EndS = since(ended)
	if err != nil {
		f.Err = err.Error()
	}
	ready := c.waitReady(context.Background(), 30*time.Second)
	to := time.Now()
	if !ready.IsZero() {
		f.ReadyS, to = since(ready), ready
	}
	c.mu.Lock()
	c.windows[idx].to = to.Add(chaosGrace)
	c.out.Faults = append(c.out.Faults, f)
	c.mu.Unlock()
}

// waitReady asks every instance's /readyz until each has answered 200
// "ready" (not "degraded": Redis is back too) and returns when the last of
// them first did; the zero time when one had not within limit.
func (c *chaosRun) waitReady(ctx context.Context, limit time.Duration) time.Time {
	deadline := time.Now().Add(limit)
	pending := append([]string(nil), c.cfg.Instances...)
	var last time.Time
	for len(pending) > 0 {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return time.Time{}
		}
		var next []string
		for _, base := range pending {
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			r := c.a.Do(rctx, call{Base: base, Method: http.MethodGet, Path: "/readyz"})
			cancel()
			if ok, _ := readiness(r); ok {
				last = later(last, r.At.Add(r.Latency))
			} else {
				next = append(next, base)
			}
		}
		pending = next
		if len(pending) > 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	return last
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// floodEvery is how often each rate-limit flood of the chaos scenario
// sends a request once the first was refused (429, 503 or no answer);
// until then it sends one after another, so that a short run reaches the
// limit too.
const floodEvery = 100 * time.Millisecond

// flood sends one kind of request, over and over, straight to the
// instances in turn, to spend one subject's quota of the policies it
// checks; see [flood.result] for their bound.
type flood struct {
	policies []string
	send     func(ctx context.Context, base string) response

	q, w                                map[string]int
	sent, admitted, denied, unavailable int
	began, ended                        time.Time
}

// newFloods prepares a flood per policy of the service: ip (one simulated
// address asking for /v1/users/me without a token), user (one user listing
// its entries, from a new address each time), signup (one address signing
// up with an empty body, refused 400 after the limit), login (one address
// trying a wrong password for one username) and login-account (a wrong
// password for another username, from a new address each time).
func (c *chaosRun) newFloods(ctx context.Context) ([]*flood, error) {
	inst0 := c.cfg.Instances[0]
	u, err := newUser(ctx, c.a, inst0, c.clients.New())
	if err != nil {
		return nil, err
	}
	sprayed, err := newUser(ctx, c.a, inst0, c.clients.New())
	if err != nil {
		return nil, err
	}
	ipAddr, signupAddr, loginAddr := c.clients.New(), c.clients.New(), c.clients.New()
	mk := func(send func(ctx context.Context, base string) response, policies ...string) *flood {
		return &flood{policies: policies, send: send, q: map[string]int{}, w: map[string]int{}}
	}
	return []*flood{
		mk(func(ctx context.Context, base string) response {
			return c.a.Do(ctx, call{Base: base, Method: http.MethodGet, Path: "/v1/users/me", Client: ipAddr})
		}, "ip"),
		mk(func(ctx context.Context, base string) response {
			return c.a.Do(ctx, call{Base: base, Method: http.MethodGet, Path: "/v1/entries?limit=1", Token: u.Token, Client: c.clients.New()})
		}, "user"),
		mk(func(ctx context.Context, base string) response {
			return c.a.Do(ctx, call{Base: base, Method: http.MethodPost, Path: "/v1/users", Client: signupAddr, Body: map[string]string{}})
		}, "signup"),
		mk(func(ctx context.Context, base string) response {
			return c.a.Do(ctx, call{Base: base, Method: http.MethodPost, Path: "/v1/tokens", Client: loginAddr,
				Body: map[string]string{"username": u.Name, "password": "not-" + u.Password}})
		}, "login", "login-account"),
		mk(func(ctx context.Context, base string) response {
			return c.a.Do(ctx, call{Base: base, Method: http.MethodPost, Path: "/v1/tokens", Client: c.clients.New(),
				Body: map[string]string{"username": sprayed.Name, "password": "not-" + sprayed.Password}})
		}, "login-account"),
	}, nil
}

// run floods until ctx ends.
func (f *flood) run(ctx context.Context, c *chaosRun) {
	f.began = time.Now()
	tick := time.NewTicker(floodEvery)
	defer tick.Stop()
	for k := 0; ; k++ {
		r := f.send(ctx, c.cfg.Instances[k%len(c.cfg.Instances)])
		if r.Err != nil && ctx.Err() != nil {
			break
		}
		c.record(r, true)
		f.sent++
		switch {
		case r.Err != nil || r.Status == http.StatusServiceUnavailable:
			f.unavailable++
		case r.Status == http.StatusTooManyRequests:
			f.denied++
		default:
			f.admitted++
		}
		for _, p := range f.policies {
			if q, ok := findQuota(r.Header, p); ok && q.Q > 0 && f.q[p] == 0 {
				f.q[p], f.w[p] = q.Q, q.W
			}
		}
		if f.denied+f.unavailable == 0 && ctx.Err() == nil {
			continue
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
			continue
		}
		break
	}
	f.ended = time.Now()
}

// result checks each of the flood's policies against its bound, from
// docs/design.md: a GCRA policy of quota q per window w admits at most
// q + q·t/w in any interval t; an outage of Redis adds at most 2n for
// rounding across n instances; Redis restarted empty forgets what was
// spent (q more); an instance restarted forgets what Redis reported, so
// its local share during a later outage starts whole (q/n more).
func (f *flood) result(c *chaosRun) []limitCheck {
	var restartsEmpty, outages, instanceRestarts int
	for _, ft := range c.out.Faults {
		switch ft.Kind {
		case "redis-restart-empty":
			restartsEmpty++
			outages++
		case "redis-pause":
			outages++
		case "instance-kill":
			instanceRestarts++
		}
	}
	n := len(c.cfg.Instances)
	t := f.ended.Sub(f.began).Seconds()
	var out []limitCheck
	for _, p := range f.policies {
		l := limitCheck{Policy: p, Flood: f.policies[0], Q: f.q[p], W: f.w[p], Sent: f.sent, Admitted: f.admitted, Denied: f.denied, Unavailable: f.unavailable, FloodS: t}
		if l.Q > 0 && l.W > 0 {
			l.Bound = l.Q*(1+restartsEmpty) + int(math.Ceil(float64(l.Q)*t/float64(l.W))) + 2*n*outages +
				instanceRestarts*((l.Q+n-1)/n)
		}
		out = append(out, l)
	}
	return out
}
