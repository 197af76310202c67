package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// standin is a small in-memory imitation of the journal API for the
// scenario tests: users, tokens, entries, an "ip" policy that admits
// exactly limit requests per client (X-Forwarded-For, else the peer) with
// the RateLimit header fields, an optional "signup" policy, /readyz, and
// X-Instance on every response. Several httptest servers may share one
// standin; each may serve reads from a cache that lags the store.
type standin struct {
	limit int
	// perInstance gives each instance its own counters, like a limiter
	// in process memory.
	perInstance bool
	// ignoreForwarded keys clients by the peer only, like the service
	// when the peer is not a trusted proxy.
	ignoreForwarded bool
	// signupLimit, when above 0, is how many sign-ups each client may make.
	signupLimit int
	// notReady makes /readyz answer "degraded" with Redis down.
	notReady atomic.Bool

	mu      sync.Mutex
	users   map[string]string // name -> password
	tokens  map[string]string // token -> user
	entries map[string]map[string]*entry
	order   map[string][]string // user -> ids, oldest first
	used    map[string]int      // client -> admitted requests
	signups map[string]int      // client -> sign-ups
	seq     int
	// failAfter requests after the first, the next fail5xx requests are
	// answered 500.
	failAfter, fail5xx int
	// loginUnavailable: the next this many logins are answered 503 with
	// Retry-After, as the service does when login's limiter fails closed.
	loginUnavailable int
}

func newStandin(limit int) *standin {
	return &standin{limit: limit, users: map[string]string{}, tokens: map[string]string{},
		entries: map[string]map[string]*entry{}, order: map[string][]string{}, used: map[string]int{}, signups: map[string]int{}}
}

// serve starts an instance named name; when lag > 0 it answers item reads
// from a copy taken at least lag ago (a cache nobody invalidates).
func (s *standin) serve(tb testing.TB, name string, lag time.Duration) *httptest.Server {
	tb.Helper()
	type cached struct {
		e  entry
		ok bool
		at time.Time
	}
	var cmu sync.Mutex
	cache := map[string]cached{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Instance", name)
		if r.URL.Path == "/readyz" {
			if s.notReady.Load() {
				w.Write([]byte(`{"status":"degraded","checks":{"database":{"status":"up"},"redis":{"status":"down"}}}`))
				return
			}
			w.Write([]byte(`{"status":"ready","checks":{"database":{"status":"up"},"redis":{"status":"up"}}}`))
			return
		}
		var body map[string]string
		if r.Body != nil {
			json.NewDecoder(r.Body).Decode(&body)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.failAfter > 0 {
			s.failAfter--
		} else if s.fail5xx > 0 {
			s.fail5xx--
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		client := r.Header.Get("X-Forwarded-For")
		if client == "" || s.ignoreForwarded {
			client = strings.Split(r.RemoteAddr, ":")[0]
		}
		if s.perInstance {
			client = name + "/" + client
		}
		signup := r.Method == "POST" && r.URL.Path == "/v1/users" && s.signupLimit > 0
		refuse := func(policy string) {
			w.Header().Set("Retry-After", "72")
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprintf(w, `{"title":"Too Many Requests","violated-policies":[%q]}`, policy)
		}
		w.Header().Set("RateLimit-Policy", fmt.Sprintf(`"ip";q=%d;w=3600`, s.limit))
		if signup {
			w.Header().Add("RateLimit-Policy", fmt.Sprintf(`"signup";q=%d;w=3600`, s.signupLimit))
		}
		if s.used[client] >= s.limit {
			w.Header().Set("RateLimit", `"ip";r=0;t=72`)
			refuse("ip")
			return
		}
		if signup && s.signups[client] >= s.signupLimit {
			w.Header().Set("RateLimit", fmt.Sprintf(`"ip";r=%d;t=1, "signup";r=0;t=72`, s.limit-s.used[client]))
			refuse("signup")
			return
		}
		s.used[client]++
		w.Header().Set("RateLimit", fmt.Sprintf(`"ip";r=%d;t=1`, s.limit-s.used[client]))
		if signup {
			s.signups[client]++
			w.Header().Add("RateLimit", fmt.Sprintf(`"signup";r=%d;t=360`, s.signupLimit-s.signups[client]))
		}
		writeJSON := func(code int, v any) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			json.NewEncoder(w).Encode(v)
		}
		switch {
		case r.Method == "POST" && r.URL.Path == "/v1/users":
			s.users[body["username"]] = body["password"]
			writeJSON(201, map[string]string{"id": body["username"], "username": body["username"]})
			return
		case r.Method == "POST" && r.URL.Path == "/v1/tokens" && s.loginUnavailable > 0:
			s.loginUnavailable--
			w.Header().Set("Retry-After", "1")
			writeJSON(503, map[string]string{"title": "Service Unavailable"})
			return
		case r.Method == "POST" && r.URL.Path == "/v1/tokens":
			if pw, ok := s.users[body["username"]]; !ok || pw != body["password"] {
				writeJSON(401, map[string]string{"title": "bad credentials"})
				return
			}
			s.seq++
			tok := fmt.Sprintf("tok%d", s.seq)
			s.tokens[tok] = body["username"]
			writeJSON(201, map[string]string{"token": tok})
			return
		}
		u, ok := s.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
		if !ok {
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeJSON(401, map[string]string{"title": "unauthorized"})
			return
		}
		id := strings.TrimPrefix(r.URL.Path, "/v1/entries/")
		es := s.entries[u]
		if es == nil {
			es = map[string]*entry{}
			s.entries[u] = es
		}
		switch {
		case r.Method == "GET" && r.URL.Path == "/v1/users/me":
			writeJSON(200, map[string]string{"username": u})
		case r.Method == "DELETE" && r.URL.Path == "/v1/tokens/current":
			delete(s.tokens, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
			w.WriteHeader(204)
		case r.Method == "GET" && r.URL.Path == "/v1/entries":
			p := page{Entries: []entry{}}
			ids := s.order[u]
			for i := len(ids) - 1; i >= 0 && len(p.Entries) < 20; i-- {
				p.Entries = append(p.Entries, *es[ids[i]])
			}
			writeJSON(200, p)
		case r.Method == "POST" && r.URL.Path == "/v1/entries":
			s.seq++
			e := &entry{ID: fmt.Sprintf("e%06d", s.seq), Title: body["title"], Body: body["body"], CreatedAt: "t", UpdatedAt: "t"}
			es[e.ID] = e
			s.order[u] = append(s.order[u], e.ID)
			w.Header().Set("Location", "/v1/entries/"+e.ID)
			writeJSON(201, e)
		case r.Method == "GET":
			now := time.Now()
			e, ok := es[id]
			if lag > 0 {
				cmu.Lock()
				c, hit := cache[u+id]
				if hit && now.Sub(c.at) < lag {
					e, ok = &c.e, c.ok
				} else if ok {
					cache[u+id] = cached{*e, true, now}
				}
				cmu.Unlock()
			}
			if !ok {
				writeJSON(404, map[string]string{"title": "not found"})
				return
			}
			writeJSON(200, e)
		case r.Method == "PATCH":
			e, ok := es[id]
			if !ok {
				writeJSON(404, map[string]string{"title": "not found"})
				return
			}
			if t, ok := body["title"]; ok {
				e.Title = t
			}
			if b, ok := body["body"]; ok {
				e.Body = b
			}
			s.seq++
			e.UpdatedAt = fmt.Sprint("t", s.seq)
			writeJSON(200, e)
		case r.Method == "DELETE":
			if _, ok := es[id]; !ok {
				writeJSON(404, map[string]string{"title": "not found"})
				return
			}
			delete(es, id)
			ids := s.order[u]
			for i, x := range ids {
				if x == id {
					s.order[u] = append(ids[:i:i], ids[i+1:]...)
					break
				}
			}
			w.WriteHeader(204)
		default:
			writeJSON(404, map[string]string{"title": "not found"})
		}
	})
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	return srv
}

// balancer is a round-robin reverse proxy over the given servers, like
// nginx in front of the instances.
func balancer(tb testing.TB, backends ...*httptest.Server) *httptest.Server {
	tb.Helper()
	var mu sync.Mutex
	next := 0
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		b := backends[next%len(backends)]
		next++
		mu.Unlock()
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, b.URL+r.URL.RequestURI(), r.Body)
		req.Header = r.Header.Clone()
		resp, err := hc.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		var buf [32 << 10]byte
		for {
			n, err := resp.Body.Read(buf[:])
			w.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}))
	tb.Cleanup(srv.Close)
	return srv
}
