package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// maxBody bounds how much of a response body the tool reads.
const maxBody = 1 << 20

// api sends the journal's HTTP requests. It is safe for concurrent use.
type api struct {
	hc *http.Client
}

// newAPI returns an api whose transport keeps up to conns idle connections
// per host, so a flood reuses connections instead of exhausting ports.
func newAPI(conns int, timeout time.Duration) *api { return newAPIFrom(conns, timeout, nil) }

// newAPIFrom is [newAPI] whose connections leave from the local address
// from (nil: the system's choice). On loopback any 127.0.0.0/8 address
// works, and a balancer that puts the address it saw in X-Forwarded-For
// (cluster.sh's nginx) then tells the instances apart clients that share
// one machine.
func newAPIFrom(conns int, timeout time.Duration, from *net.TCPAddr) *api {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if from != nil {
		d.LocalAddr = from
	}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         d.DialContext,
		MaxIdleConns:        conns * 4,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &api{hc: &http.Client{
		Transport: tr,
		Timeout:   timeout,
		// Redirects are answers to count, not to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// call describes one request.
type call struct {
	Base   string // http://host:port
	Method string
	Path   string
	Token  string // bearer token, "" for none
	Client string // X-Forwarded-For value (a simulated client address), "" for none
	Body   any    // marshalled as JSON when non-nil
	Header http.Header
}

// response is what the tool keeps of an answer.
type response struct {
	At       time.Time
	Latency  time.Duration
	Status   int // 0 when Err is set
	Header   http.Header
	Body     []byte
	Instance string
	Err      error
}

// Do sends c and reads the whole response. A transport error is returned in
// response.Err (Status 0), never as a panic or a nil response.
//
// Writes carry a fresh Idempotency-Key header. The service ignores it, but
// it lets net/http resend a write whose reused keep-alive connection the
// balancer closed before reading it (as nginx does to idle connections on a
// reload), exactly as it does for GET; a write that reached a server is
// never resent.
func (a *api) Do(ctx context.Context, c call) response {
	var body io.Reader
	if c.Body != nil {
		b, err := json.Marshal(c.Body)
		if err != nil {
			return response{At: time.Now(), Err: err}
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, c.Method, strings.TrimRight(c.Base, "/")+c.Path, body)
	if err != nil {
		return response{At: time.Now(), Err: err}
	}
	for k, vs := range c.Header {
		req.Header[k] = vs
	}
	if c.Body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if c.Client != "" {
		req.Header.Set("X-Forwarded-For", c.Client)
	}
	if c.Method != http.MethodGet && c.Method != http.MethodHead {
		req.Header.Set("Idempotency-Key", randHex(12))
	}
	start := time.Now()
	resp, err := a.hc.Do(req)
	if err != nil {
		return response{At: start, Latency: time.Since(start), Err: err}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	r := response{
		At: start, Latency: time.Since(start), Status: resp.StatusCode,
		Header: resp.Header, Body: b, Instance: resp.Header.Get("X-Instance"),
	}
	if err != nil {
		r.Status, r.Err = 0, fmt.Errorf("read body: %w", err)
	}
	return r
}

// result converts r for the recorder.
func (r response) result(failed bool) result {
	return result{At: r.At, Latency: r.Latency, Status: r.Status, Instance: r.Instance, Failed: failed || r.Err != nil}
}

// describe is a short text for error messages.
func (r response) describe() string {
	if r.Err != nil {
		return r.Err.Error()
	}
	b := r.Body
	if len(b) > 200 {
		b = b[:200]
	}
	return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(b))
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// clientPool hands out simulated client addresses from 198.18.0.0/15 (RFC
// 2544, reserved for benchmarks), starting at a random offset so two runs do
// not share a rate-limit key. A service that trusts this tool's address
// (JOURNAL_TRUSTED_PROXIES=127.0.0.1/32 on loopback, as the instances of
// cluster.sh do, reached directly) takes the client from X-Forwarded-For, so
// each address is its own subject. Elsewhere the header is ignored, or
// replaced by a balancer that is the edge (cluster.sh's nginx), and every
// request is the tool's own address. A nil *clientPool hands out "" (no
// header).
type clientPool struct {
	next atomic.Uint32
}

func newClientPool(enabled bool) *clientPool {
	if !enabled {
		return nil
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	p := &clientPool{}
	p.next.Store(binary.BigEndian.Uint32(b[:]))
	return p
}

// New returns the next simulated client address; it is safe for concurrent
// use. The pool wraps around after 131,072 addresses.
func (p *clientPool) New() string {
	if p == nil {
		return ""
	}
	n := p.next.Add(1)
	base := netip.MustParseAddr("198.18.0.0").As4()
	v := binary.BigEndian.Uint32(base[:]) + n%(1<<17)
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b).String()
}

// user is an account of the journal with a valid token.
type user struct {
	Name, Password, Token string
	Client                string // simulated client address used for this user's requests
}

// errSetup marks a failure to prepare a scenario (sign-up, login).
var errSetup = errors.New("setup")

// setupError returns the error of a set-up request what whose answer r was
// not the one wanted: a [*refusedError] for a 429, else an [errSetup].
func setupError(what string, r response) error {
	if r.Status == http.StatusTooManyRequests {
		return &refusedError{What: what, R: r}
	}
	return fmt.Errorf("%w: %s: %s", errSetup, what, r.describe())
}

// newUser signs up a new account on base and logs in. Every request comes
// from the client address cl.
func newUser(ctx context.Context, a *api, base, cl string) (user, error) {
	u := user{Name: "load-" + randHex(6), Password: "pw-" + randHex(8), Client: cl}
	r := a.Do(ctx, call{Base: base, Method: http.MethodPost, Path: "/v1/users", Client: cl,
		Body: map[string]string{"username": u.Name, "password": u.Password}})
	if r.Status != http.StatusCreated {
		return u, setupError("POST /v1/users", r)
	}
	tok, err := login(ctx, a, base, u)
	u.Token = tok
	return u, err
}

// Login retries: the service refuses logins with 503 and Retry-After when
// its rate limiter cannot reach Redis (the login policy fails closed),
// which a loaded Redis causes for a moment; a client retries after the
// advertised delay (capped at loginRetryMax), at most loginAttempts times.
const (
	loginAttempts = 5
	loginRetryMax = time.Second
)

// login returns a new token of u.
func login(ctx context.Context, a *api, base string, u user) (string, error) {
	var r response
	for attempt := 1; ; attempt++ {
		r = a.Do(ctx, call{Base: base, Method: http.MethodPost, Path: "/v1/tokens", Client: u.Client,
			Body: map[string]string{"username": u.Name, "password": u.Password}})
		if r.Status != http.StatusServiceUnavailable || attempt == loginAttempts {
			break
		}
		wait := loginRetryMax
		if n, err := strconv.Atoi(strings.TrimSpace(r.Header.Get("Retry-After"))); err == nil && n >= 0 && time.Duration(n)*time.Second < wait {
			wait = time.Duration(n) * time.Second
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w: POST /v1/tokens: %s", errSetup, r.describe())
		case <-time.After(wait):
		}
	}
	if r.Status != http.StatusCreated {
		return "", setupError("POST /v1/tokens", r)
	}
	var t struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(r.Body, &t); err != nil || t.Token == "" {
		return "", fmt.Errorf("%w: POST /v1/tokens: no token in %q", errSetup, r.Body)
	}
	return t.Token, nil
}

// entry is the API's entry representation.
type entry struct {
	ID        string `json:"id"`
	Title     string `json:"title"`
	Body      string `json:"body"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
}

// page is a list response.
type page struct {
	Entries    []entry `json:"entries"`
	NextCursor *string `json:"next_cursor"`
}
