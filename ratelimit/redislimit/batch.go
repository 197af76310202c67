package redislimit

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// Batching. Concurrent decisions share script calls: a decision joins the
// queue, and when fewer than maxFlights script calls are in flight it starts
// one with everything queued (up to maxBatch decisions); a flight that ends
// takes what queued meanwhile. So an idle limiter sends each decision at
// once, alone, and a busy one sends batches that grow with the load, without
// a timer. Each decision is still one round trip and all-or-nothing; a batch
// runs atomically at one Redis TIME. What it saves is per call: in Redis the
// command dispatch and script entry, and in the client the system calls. A
// batch sends each distinct policy once, and a one-policy decision costs
// Redis its key and one argument (decide.lua). On Redis Cluster the keys of
// one script must share a slot, so there every decision is its own call
// through the client.
//
// On standalone Redis each flight runs its call on a connection of its own
// (see dedicated), reused by the next flight.
//
// A caller waits for its result, its context or the limiter's Timeout,
// whichever comes first: rueidis holds callers during a (re)connection's dial
// for as long as the dial takes, not for their deadline, and the flight is the
// one that waits. The flight itself waits for the reply up to
// max(Timeout, FlightTimeout), and only its outcome feeds the breaker: a
// caller that stopped waiting tells nothing about Redis.
const (
	maxBatch   = 128
	maxFlights = 4
)

// call is one decision in a batch: whether it peeks, and per policy its key
// and spec. Calls are pooled (with their slices): done has room for the
// one signal the flight sends, and a call returns to the pool only when its
// caller received that signal (an abandoned call is left to the garbage
// collector, the flight may still write to it).
type call struct {
	ctx    context.Context
	peek   bool
	keys   []string
	specs  []spec
	lease  *ask                   // a lease decision: what it asks per policy; nil otherwise
	div    int64                  // the divisor of the remaining quota that bounds the grants
	res    []rueidis.RedisMessage // this decision's part of the reply
	err    error
	done   chan struct{}
	gone   atomic.Bool   // the caller stopped waiting: not sent if not yet
	flight atomic.Uint64 // the sequence number of the flight that sent it, 0 before
}

// spec is what the script needs of one policy of a decision. A batch sends
// each distinct spec once, and its decisions refer to it by index.
type spec struct {
	policyArgs
	cost   string
	shadow bool
}

func newCall() *call {
	c := calls.Get().(*call)
	c.keys, c.specs, c.lease = c.keys[:0], c.specs[:0], nil
	return c
}

// perPolicy returns the number of values the script returns per policy of
// c: four, seven for a lease decision.
func (c *call) perPolicy() int {
	if c.lease != nil {
		return 7
	}
	return 4
}

// replyLen returns the length of c's part of a batch reply that starts at
// msgs[off]: perPolicy values per policy, and when the decision denies (a
// policy that is not shadow did not admit), the time and each key's stored
// value.
func (c *call) replyLen(msgs []rueidis.RedisMessage, off int) (int, error) {
	pp := c.perPolicy()
	n := pp * len(c.keys)
	if off+n > len(msgs) {
		return 0, errBatchReply
	}
	for i, s := range c.specs {
		if ok, err := msgs[off+pp*i].AsInt64(); err != nil {
			return 0, err
		} else if ok == 0 && !s.shadow {
			n += 1 + len(c.keys)
			break
		}
	}
	if off+n > len(msgs) {
		return 0, errBatchReply
	}
	return n, nil
}

var (
	calls  = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}
	timers = sync.Pool{New: func() any {
		t := time.NewTimer(time.Hour)
		t.Stop()
		return t
	}}
)

var errBatchReply = errors.New("redislimit: script reply does not match the batch")

type batcher struct {
	l       *Limiter
	cluster bool
	sha     string // of decideSrc

	sent     atomic.Uint64 // flights sent so far: the last one's sequence number
	answered atomic.Uint64 // the highest sequence number of a flight Redis answered

	mu      sync.Mutex
	queue   []*call
	flights int
	closed  bool
	idle    []dedicated // connections of flights that ended, at most maxFlights
}

// dedicated is a connection of its own for one flight at a time (standalone
// Redis). rueidis runs a command on a connection nobody else uses in the
// calling goroutine, with the context's deadline as the socket's: no hand-off
// to its writer and reader goroutines and back, and a hung server costs the
// flight its deadline. A connection that failed is released, and rueidis
// closes it.
type dedicated struct {
	c       rueidis.DedicatedClient
	release func()
}

func newBatcher(l *Limiter) *batcher {
	h := sha1.Sum([]byte(decideSrc))
	return &batcher{l: l, cluster: l.client.Mode() == rueidis.ClientModeCluster, sha: hex.EncodeToString(h[:])}
}

// close releases the idle connections; flights that end later release theirs.
func (b *batcher) close() {
	b.mu.Lock()
	idle := b.idle
	b.idle, b.closed = nil, true
	b.mu.Unlock()
	for _, d := range idle {
		d.release()
	}
}

// exec runs the script once: on Cluster through the client (it routes by
// slot), otherwise on a dedicated connection.
func (b *batcher) exec(ctx context.Context, keys, args []string) ([]rueidis.RedisMessage, error) {
	l := b.l
	if b.cluster {
		return l.decide.Exec(ctx, l.client, keys, args).ToArray()
	}
	b.mu.Lock()
	var d dedicated
	if n := len(b.idle); n > 0 {
		d = b.idle[n-1]
		b.idle = b.idle[:n-1]
	}
	b.mu.Unlock()
	if d.c == nil {
		d.c, d.release = l.client.Dedicate()
	}
	c := d.c
	msgs, err := c.Do(ctx, c.B().Evalsha().Sha1(b.sha).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()).ToArray()
	if rerr, ok := rueidis.IsRedisErr(err); ok && rerr.IsNoScript() {
		msgs, err = c.Do(ctx, c.B().Eval().Script(decideSrc).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()).ToArray()
	}
	if _, ok := rueidis.IsRedisErr(err); err != nil && !ok {
		d.release() // the connection failed: rueidis discards it
		return msgs, err
	}
	b.mu.Lock()
	if !b.closed && len(b.idle) < maxFlights {
		b.idle = append(b.idle, d)
		d.c = nil
	}
	b.mu.Unlock()
	if d.c != nil {
		d.release()
	}
	return msgs, err
}

// do sends the decision c (from newCall) with others and returns its part
// of the reply, waiting at most until ctx ends or timeout has passed. c
// belongs to the batcher from then on.
func (b *batcher) do(ctx context.Context, timeout time.Duration, c *call) ([]rueidis.RedisMessage, error) {
	start, queuedAfter := time.Now(), b.answered.Load()
	c.ctx = ctx
	if b.cluster {
		go b.send([]*call{c})
	} else {
		b.mu.Lock()
		b.queue = append(b.queue, c)
		var batch []*call
		if b.flights < maxFlights {
			b.flights++
			batch = b.take()
		}
		b.mu.Unlock()
		if batch != nil {
			go b.fly(batch)
		}
	}
	t := timers.Get().(*time.Timer)
	t.Reset(timeout)
	defer func() {
		t.Stop()
		timers.Put(t)
	}()
	var err error
	select {
	case <-c.done:
		return c.result()
	case <-ctx.Done():
		err = ctx.Err()
	case <-t.C:
		err = context.DeadlineExceeded
	}
	// A reply that arrived together with the deadline wins: on a saturated
	// process both become ready long before this goroutine runs again.
	select {
	case <-c.done:
		return c.result()
	default:
	}
	// Redis answering a flight sent after this call's, or (if this call is
	// still queued) any flight since this call queued, shows that Redis is
	// answering and the delay is this process's: its goroutines did not
	// run, or flights queued behind a busy CPU. The caller then waits for
	// its call, at most until the flight's own deadline, so a saturated
	// process keeps deciding in Redis instead of by fail mode (which could
	// grant quota Redis is granting too). A Redis that answers nothing, or
	// answers everyone late, gets no such wait.
	if err != context.Canceled {
		f, answered := c.flight.Load(), b.answered.Load()
		if (f != 0 && answered > f) || (f == 0 && answered > queuedAfter) {
			g := timers.Get().(*time.Timer)
			g.Reset(time.Until(start.Add(max(timeout, FlightTimeout))))
			defer func() {
				g.Stop()
				timers.Put(g)
			}()
			select {
			case <-c.done:
				b.l.stats.late.Add(1)
				return c.result()
			case <-g.C:
			}
		}
	}
	c.gone.Store(true)
	b.l.stats.abandoned.Add(1)
	return nil, err
}

// result returns c's reply and puts c back in the pool.
func (c *call) result() ([]rueidis.RedisMessage, error) {
	res, err := c.res, c.err
	clear(c.keys)
	*c = call{done: c.done, keys: c.keys, specs: c.specs}
	calls.Put(c)
	return res, err
}

// take removes up to maxBatch calls from the queue, dropping those whose
// caller has gone (nothing of theirs is sent). b.mu is held.
func (b *batcher) take() []*call {
	n := 0
	batch := make([]*call, 0, min(len(b.queue), maxBatch))
	for _, c := range b.queue {
		n++
		if c.gone.Load() || c.ctx.Err() != nil {
			continue
		}
		batch = append(batch, c)
		if len(batch) == maxBatch {
			break
		}
	}
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	return batch
}

// fly sends batch, then whatever queued meanwhile, until the queue is empty.
func (b *batcher) fly(batch []*call) {
	for {
		if len(batch) > 0 {
			b.send(batch)
		}
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.flights--
			b.mu.Unlock()
			return
		}
		batch = b.take()
		b.mu.Unlock()
	}
}

// send runs the script once for batch and hands each call its reply.
func (b *batcher) send(batch []*call) {
	l := b.l
	nkeys := 0
	for _, c := range batch {
		nkeys += len(c.keys)
	}
	keys := make([]string, 0, nkeys)
	idx := make([]int, 0, nkeys) // the spec index of each key
	var uniq []spec
	for _, c := range batch {
		keys = append(keys, c.keys...)
		for _, s := range c.specs {
			i := slices.Index(uniq, s)
			if i < 0 {
				i = len(uniq)
				uniq = append(uniq, s)
			}
			idx = append(idx, i+1)
		}
	}
	args := make([]string, 3, 3+5*len(uniq)+2*len(batch)+4*nkeys)
	if l.scriptNow != nil {
		args[0] = strconv.FormatInt(l.scriptNow().UnixMicro(), 10)
	}
	args[1] = strconv.Itoa(len(batch))
	args[2] = strconv.Itoa(len(uniq))
	for _, s := range uniq {
		shadow := "0"
		if s.shadow {
			shadow = "1"
		}
		args = append(args, s.alg, s.a, s.b, s.cost, shadow)
	}
	for _, c := range batch {
		// The header: one policy is its spec index, negative to peek;
		// n policies are "d<n>" or "p<n>" and n indexes; a lease decision
		// is "l<n>", the divisor and n (index, wanted, back, ref).
		n := len(c.keys)
		if a := c.lease; a != nil {
			args = append(args, "l"+strconv.Itoa(n), strconv.FormatInt(c.div, 10))
			for j, i := range idx[:n] {
				args = append(args, strconv.Itoa(i), strconv.FormatInt(a.want[j], 10),
					strconv.FormatInt(a.back[j], 10), strconv.FormatInt(a.ref[j], 10))
			}
		} else if n == 1 {
			h := idx[0]
			if c.peek {
				h = -h
			}
			args = append(args, strconv.Itoa(h))
		} else {
			mode := "d"
			if c.peek {
				mode = "p"
			}
			args = append(args, mode+strconv.Itoa(n))
			for _, i := range idx[:n] {
				args = append(args, strconv.Itoa(i))
			}
		}
		idx = idx[n:]
	}
	seq := b.sent.Add(1)
	for _, c := range batch {
		c.flight.Store(seq)
	}
	// The flight waits longer than its callers (see FlightTimeout), and its
	// outcome alone feeds the breaker.
	ctx, cancel := context.WithTimeout(context.Background(), max(l.opts.Timeout, FlightTimeout))
	start := time.Now()
	msgs, err := b.exec(ctx, keys, args)
	cancel()
	l.stats.call(time.Since(start), err)
	if err != nil {
		l.brk.failure(err)
	} else {
		l.brk.success()
		for a := b.answered.Load(); a < seq && !b.answered.CompareAndSwap(a, seq); a = b.answered.Load() {
		}
	}
	if err == nil {
		off := 0
		for _, c := range batch {
			var n int
			if n, err = c.replyLen(msgs, off); err != nil {
				break
			}
			c.res = msgs[off : off+n : off+n]
			off += n
		}
		if err == nil && off != len(msgs) {
			err = errBatchReply
		}
	}
	for _, c := range batch {
		if err != nil {
			c.res, c.err = nil, err
		}
		c.done <- struct{}{} // never blocks: one signal per call, room for one
	}
}
