// Package password hashes and verifies passwords with argon2id (RFC 9106) and
// bounds how many hashes run at once, so a burst of logins or sign-ups cannot
// exhaust the memory or the CPUs of the process.
//
// Hashes are PHC-style strings:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>
//
// with the salt and key in unpadded standard base64. Verification reads the
// parameters from the string, so hashes made with older parameters keep
// verifying after the defaults change.
package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
)

// Errors returned by a Hasher. Check them with errors.Is.
var (
	// ErrBusy reports that the concurrency bound was reached and the caller
	// could not get a hashing slot in time (HTTP 503 with Retry-After).
	ErrBusy = errors.New("password: busy")
	// ErrMalformedHash reports an encoded hash that is not an argon2id PHC
	// string with sane parameters.
	ErrMalformedHash = errors.New("password: malformed hash")
)

// Params are argon2id parameters.
type Params struct {
	Memory      uint32 // KiB
	Iterations  uint32
	Parallelism uint8
	SaltLen     uint32 // bytes
	KeyLen      uint32 // bytes
}

// DefaultParams returns the parameters used when Options.Params is zero:
// 19 MiB (19456 KiB) of memory, 2 iterations, parallelism 1, a 16-byte salt
// and a 32-byte key (the OWASP recommendation for argon2id).
func DefaultParams() Params {
	return Params{Memory: 19 * 1024, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32}
}

// Limits on parameters read from an encoded hash, so a corrupted or hostile
// stored value cannot make one verification allocate gigabytes.
const (
	maxMemory      = 1 << 20 // KiB (1 GiB)
	maxIterations  = 64
	minSaltLen     = 8
	maxSaltLen     = 64
	minKeyLen      = 16
	maxKeyLen      = 128
	defaultWait    = 2 * time.Second
	waitersPerSlot = 16
)

func (p Params) valid() bool {
	return p.Memory >= 8*uint32(p.Parallelism) && p.Memory <= maxMemory &&
		p.Iterations >= 1 && p.Iterations <= maxIterations &&
		p.Parallelism >= 1 &&
		p.SaltLen >= minSaltLen && p.SaltLen <= maxSaltLen &&
		p.KeyLen >= minKeyLen && p.KeyLen <= maxKeyLen
}

// Options configure a Hasher. The zero value is valid and gives the defaults.
type Options struct {
	// Params are the argon2id parameters of new hashes. Zero: DefaultParams.
	Params Params
	// MaxConcurrent is the number of hashes that may run at once.
	// Zero: 2 x runtime.GOMAXPROCS(0).
	MaxConcurrent int
	// MaxWaiters is the number of callers that may wait for a slot; one more
	// gets ErrBusy at once. Zero: 16 x MaxConcurrent. Negative: nobody waits.
	MaxWaiters int
	// MaxWait is the longest a caller waits for a slot before ErrBusy.
	// Zero: 2s.
	MaxWait time.Duration
}

// Hasher hashes and verifies passwords under a concurrency bound. It is safe
// for concurrent use; create it with New.
type Hasher struct {
	params     Params
	sem        chan struct{}
	waiting    atomic.Int64
	maxWaiters int64
	maxWait    time.Duration
	dummySalt  []byte
	dummyKey   []byte
}

// New returns a Hasher. It panics if opts.Params is non-zero and invalid
// (memory below 8 x parallelism or above 1 GiB, iterations outside 1-64,
// salt outside 8-64 bytes, key outside 16-128 bytes): parameters are
// constants chosen by the program, not input.
func New(opts Options) *Hasher {
	p := opts.Params
	if p == (Params{}) {
		p = DefaultParams()
	}
	if !p.valid() {
		panic(fmt.Sprintf("password: invalid params %+v", p))
	}
	n := opts.MaxConcurrent
	if n <= 0 {
		n = 2 * runtime.GOMAXPROCS(0)
	}
	w := int64(opts.MaxWaiters)
	switch {
	case w == 0:
		w = int64(waitersPerSlot * n)
	case w < 0:
		w = 0
	}
	wait := opts.MaxWait
	if wait <= 0 {
		wait = defaultWait
	}
	h := &Hasher{
		params:     p,
		sem:        make(chan struct{}, n),
		maxWaiters: w,
		maxWait:    wait,
		dummySalt:  make([]byte, p.SaltLen),
	}
	_, _ = rand.Read(h.dummySalt) // crypto/rand.Read never returns an error.
	h.dummyKey = make([]byte, p.KeyLen)
	_, _ = rand.Read(h.dummyKey)
	return h
}

// Reserve takes one of the hashing slots for work the caller runs under the
// same bound (Hash and Verify take one each). When every slot is taken it
// waits up to MaxWait, unless MaxWaiters callers already wait, and returns
// ErrBusy; it returns ctx.Err() when ctx ends first. On success the caller
// must call release exactly once.
func (h *Hasher) Reserve(ctx context.Context) (release func(), err error) {
	if err := h.acquire(ctx); err != nil {
		return nil, err
	}
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			<-h.sem
		}
	}, nil
}

func (h *Hasher) acquire(ctx context.Context) error {
	select {
	case h.sem <- struct{}{}:
		return nil
	default:
	}
	if h.waiting.Add(1) > h.maxWaiters {
		h.waiting.Add(-1)
		return ErrBusy
	}
	defer h.waiting.Add(-1)
	t := time.NewTimer(h.maxWait)
	defer t.Stop()
	select {
	case h.sem <- struct{}{}:
		return nil
	case <-t.C:
		return ErrBusy
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *Hasher) release() { <-h.sem }

// Hash returns the encoded argon2id hash of password with a new random salt.
// It returns ErrBusy or ctx.Err() when no slot was obtained.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	p := h.params
	salt := make([]byte, p.SaltLen)
	_, _ = rand.Read(salt)
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, p.Iterations, p.Memory, p.Parallelism, p.KeyLen)
	h.release()
	return encode(p, salt, key), nil
}

// Verify reports whether password matches encoded, comparing in constant
// time. It returns ErrMalformedHash for an encoded value it cannot read, and
// ErrBusy or ctx.Err() when no slot was obtained.
func (h *Hasher) Verify(ctx context.Context, encoded, password string) (bool, error) {
	p, salt, key, err := decode(encoded)
	if err != nil {
		return false, err
	}
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), salt, p.Iterations, p.Memory, p.Parallelism, p.KeyLen)
	h.release()
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// DummyVerify does the work of a Verify of password against a hash made with
// the current parameters and matches nothing. Call it when the user does not
// exist so that answer costs the same time as a wrong password. It returns
// ErrBusy or ctx.Err() when no slot was obtained, nil otherwise.
func (h *Hasher) DummyVerify(ctx context.Context, password string) error {
	p := h.params
	if err := h.acquire(ctx); err != nil {
		return err
	}
	got := argon2.IDKey([]byte(password), h.dummySalt, p.Iterations, p.Memory, p.Parallelism, p.KeyLen)
	h.release()
	_ = subtle.ConstantTimeCompare(got, h.dummyKey)
	return nil
}

var b64 = base64.RawStdEncoding

func encode(p Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Iterations, p.Parallelism, b64.EncodeToString(salt), b64.EncodeToString(key))
}

func decode(s string) (p Params, salt, key []byte, err error) {
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" || f[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, ErrMalformedHash
	}
	var m, t, par uint64
	kv := strings.Split(f[3], ",")
	if len(kv) != 3 {
		return p, nil, nil, ErrMalformedHash
	}
	for i, name := range []string{"m=", "t=", "p="} {
		v, ok := strings.CutPrefix(kv[i], name)
		if !ok {
			return p, nil, nil, ErrMalformedHash
		}
		n, perr := strconv.ParseUint(v, 10, 32)
		if perr != nil {
			return p, nil, nil, ErrMalformedHash
		}
		switch i {
		case 0:
			m = n
		case 1:
			t = n
		case 2:
			par = n
		}
	}
	if par > 255 {
		return p, nil, nil, ErrMalformedHash
	}
	salt, err1 := b64.DecodeString(f[4])
	key, err2 := b64.DecodeString(f[5])
	if err1 != nil || err2 != nil {
		return p, nil, nil, ErrMalformedHash
	}
	p = Params{Memory: uint32(m), Iterations: uint32(t), Parallelism: uint8(par), SaltLen: uint32(len(salt)), KeyLen: uint32(len(key))}
	if !p.valid() {
		return Params{}, nil, nil, ErrMalformedHash
	}
	return p, salt, key, nil
}
