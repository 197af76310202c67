package redislimit

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/journalsvc/journal/internal/tick"
	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/internal/backend"
	"github.com/journalsvc/journal/ratelimit/internal/shardmap"
)

// Leased quotas. With Options.Lease > 0, a decision whose policies all have
// Policy.Lease may take units ahead for each of them in its own script call
// (decide.lua, "l" decisions): Redis charges them exactly as admitted
// requests, and this instance spends them locally, without a round trip,
// until they run out or lapse. Every local admission is backed by a unit
// Redis granted, so the bounds of exact decisions hold; what leases cost is
// under-admission elsewhere, at most the units outstanding, for at most the
// lease duration.
//
// A lease lapses at the earliest of:
//   - the lease duration after the grant;
//   - for the window algorithms, the end of the window its units count in
//     (spent later, they would count in no window);
//   - for GCRA, unit by unit: only as many units as still lie ahead of now in
//     the TAT the grant left may be spent, floor((TAT - now) / T). A unit
//     whose place in the TAT has passed is quota that time has already given
//     back to everyone; spending it too could exceed the burst.
//
// Local times are measured from when the decision was sent, which is before
// Redis ran it, so a lease always lapses early rather than late, whatever the
// clocks.
//
// The units wanted ahead: none for a subject seen once or rarely (no second
// decision within a lease duration). For the windows, about what the subject
// spends in one lease duration on this instance, at most doubling from one
// grant to the next. For GCRA, what the rate returns in one lease duration:
// the units a lease needs to last that long at all (see lapse above), and
// those that lapse unspent are back with time about a lease duration after
// the grant. The script caps them at the remaining quota divided by twice the
// live instances, so the last units before a limit are decided exactly, one
// round trip each.
//
// Unspent units are given back (decide.lua's giveback): those of the
// previous lease in the same call as the next grant, and those of a lapsed
// lease by the sweeper. Windows take them back while the lease's window
// counts. GCRA takes them back only while nothing was charged after the
// lease (moving the TAT back under another instance's lease would move that
// lease's units too); otherwise time returns them. So once every lease has
// lapsed, a subject has exactly its remaining quota with one instance, and
// with several, never more.
type leases struct {
	l       *Limiter
	sending sync.WaitGroup // background give-backs
	dur     int64          // µs
	max     int            // entries per shard
	table   shardmap.Table[*lease]
}

// lease is the state of one (subject, policy) on this instance: the units it
// holds, and what the adaptation of the next grant needs.
type lease struct {
	subject string
	policy  ratelimit.Policy

	units    int64 // units left to spend
	lapse    int64 // local µs after which none may be spent
	tatAt    int64 // GCRA: local µs of the TAT the grant left (units usable: (tatAt-now)/emission)
	emission int64 // GCRA: the emission interval in µs
	ref      int64 // for the give-back: GCRA: the TAT the grant left, in Redis µs; windows: the window's index
	seen     int64 // the remaining quota exact mode showed at the grant
	spent    int64 // units spent from this lease
	reset    time.Duration
	resetAt  int64 // local µs: windows: the window's end

	decidedAt int64 // local µs of the last grant (or of the first decision)
	decided   int64 // units decided (in Redis or locally) since decidedAt
	granted   int64 // units of the last grant
	// asking: a decision of this instance is asking Redis for units ahead.
	// Only one at a time: the grant of each replaces the lease, and units
	// of a concurrent grant overwritten here would stay charged in Redis,
	// spent by no one, until their window ends.
	asking bool
}

func (ls *leases) init(l *Limiter, dur time.Duration, maxEntries int) {
	ls.l = l
	ls.dur = dur.Microseconds()
	ls.max = max(1, maxEntries/shardmap.N)
	ls.table.Init()
}

// leased reports whether items may be decided from leases: every policy has
// Lease set and is not shadow.
func leased(items []ratelimit.Item) bool {
	for i := range items {
		if p := &items[i].Policy; !p.Lease || p.Shadow {
			return false
		}
	}
	return true
}

// ahead drops the units of e whose place has passed at now, and returns the
// rest, whatever the lapse time. For GCRA the drop is for good: a unit whose
// place in the TAT has passed was given back to everyone by time, and a unit
// spent later must come from one still ahead, or the units held plus the
// quota Redis shows could exceed the burst. Window units keep their place
// until the window ends (the lapse time).
func (e *lease) ahead(now int64) int64 {
	if e.units > 0 && e.emission > 0 {
		e.units = min(e.units, max((e.tatAt-now)/e.emission, 0))
	}
	return max(e.units, 0)
}

// usable returns the units of e that may be spent at now (see ahead).
func (e *lease) usable(now int64) int64 {
	if now >= e.lapse {
		return 0
	}
	return e.ahead(now)
}

// take decides items from this instance's leases, writing the results into
// results (len(items)), if every item's lease has its cost usable; it
// reports whether it did. A peek consumes nothing.
func (ls *leases) take(subject string, items []ratelimit.Item, results []ratelimit.Result, peek bool, now int64) bool {
	s, h := ls.table.Shard(subject)
	s.Mu.Lock()
	defer s.Mu.Unlock()
	var buf [4]*lease
	es := buf[:0]
	for i := range items {
		it := &items[i]
		e := s.M[shardmap.Key(h, it.Policy.Name)]
		if e == nil || e.subject != subject || e.policy != it.Policy || e.usable(now) < backend.Cost(it) {
			return false
		}
		if !peek && !e.asking && ls.due(e, now, backend.Cost(it)) {
			return false // this decision renews the lease in Redis
		}
		es = append(es, e)
	}
	for i, e := range es {
		c := backend.Cost(&items[i])
		if !peek {
			e.units -= c
			e.spent += c
			e.decided += c
		}
		r := &results[i]
		*r = ratelimit.Result{Allowed: true, Remaining: max(e.seen-e.spent, 0), ResetAfter: e.reset}
		if e.emission == 0 { // windows: the time to the window's end
			r.ResetAfter = time.Duration(max(e.resetAt-now, 0)) * time.Microsecond
		}
	}
	return true
}

// due reports whether e, still able to pay cost at now, should be renewed:
// in the last quarter of its time, or with less than a quarter of its units
// left after cost. One decision then asks Redis for the next lease while the
// others keep spending this one, so a hot subject never waits without a
// lease: were it renewed only once spent or lapsed, every decision made
// while the renewal is in flight would go to Redis, one round trip each.
func (ls *leases) due(e *lease, now, cost int64) bool {
	return now >= e.lapse-ls.dur/4 || e.ahead(now)-cost < e.granted/4
}

// ask is what a decision in Redis asks of each item's lease: the units
// wanted ahead, and the units of the previous lease given back with its ref.
type ask struct {
	want, back, ref []int64
}

// prepare returns what to ask for items, or false when they are not all
// leased. It takes the previous leases' units out (they go back in the same
// call) and records the decision for the rate estimate.
func (ls *leases) prepare(subject string, items []ratelimit.Item, now int64) (ask, bool) {
	if !leased(items) {
		return ask{}, false
	}
	s, h := ls.table.Shard(subject)
	s.Mu.Lock()
	defer s.Mu.Unlock()
	a := ask{make([]int64, len(items)), make([]int64, len(items)), make([]int64, len(items))}
	for i := range items {
		it := &items[i]
		k := shardmap.Key(h, it.Policy.Name)
		e := s.M[k]
		if e == nil || e.subject != subject || e.policy != it.Policy {
			if len(s.M) >= ls.max && !ls.evict(s, now) {
				continue // full: decide exactly
			}
			s.M[k] = &lease{subject: subject, policy: it.Policy, decidedAt: now, decided: backend.Cost(it)}
			continue // seen once: no evidence of a rate yet
		}
		switch u := e.ahead(now); {
		case e.asking:
			// Another decision renews the lease; its grant gives back
			// what is left, and until then the units stay spendable.
		case u >= backend.Cost(it) && now < e.lapse:
			// Renewing early (see due): the lease stays spendable by
			// concurrent decisions until the grant replaces it.
		default:
			if u > 0 { // too few for this decision: back in the same call
				g := e.give(u)
				a.back[i], a.ref[i] = g.units, g.ref
			}
			e.units = 0
		}
		e.decided += backend.Cost(it)
		if e.asking {
			continue // another decision asks: this one is decided exactly
		}
		elapsed := now - e.decidedAt
		if elapsed > ls.dur {
			e.decidedAt, e.decided, e.granted = now, backend.Cost(it), 0
			continue // a rare subject: exact decisions cost it nothing
		}
		if p := &it.Policy; p.Algorithm == ratelimit.GCRA {
			// What the rate returns in a lease duration. Fewer would
			// not last the duration at any rate: k units hold their
			// place in the TAT for k emission intervals only, so a
			// smaller lease lapses by time, unspent, and the subject
			// comes back to Redis sooner. More would outlast it. The
			// units it does not spend cost nobody for longer than the
			// lease: time gives them back.
			a.want[i] = ls.dur / p.EmissionInterval().Microseconds()
		} else {
			// What it spent per lease duration since the last grant,
			// at most twice the last grant plus a little: a window's
			// units keep their place until the window ends, so unspent
			// ones are lost to everyone until then or a give-back.
			rate := (e.decided*ls.dur + max(elapsed, 1) - 1) / max(elapsed, 1)
			a.want[i] = min(rate, 2*e.granted+2)
		}
		e.asking = a.want[i] > 0
	}
	return a, true
}

// unask ends the asking of a decision that asked (a) and got no answer:
// whatever Redis may have granted it lapses unspent.
func (ls *leases) unask(subject string, items []ratelimit.Item, a *ask) {
	s, h := ls.table.Shard(subject)
	s.Mu.Lock()
	defer s.Mu.Unlock()
	for i := range items {
		if a.want[i] == 0 {
			continue
		}
		if e := s.M[shardmap.Key(h, items[i].Policy.Name)]; e != nil && e.subject == subject && e.policy == items[i].Policy {
			e.asking = false
		}
	}
}

// granted records the leases a decision in Redis that asked (a) was
// granted: g holds, per item, the units granted, where they stand and Redis'
// time (see decide.lua); sent is the local time the decision was sent. It
// sets each admitted result's Remaining to what exact mode would have shown.
// An item the decision did not ask for leaves its lease alone. It returns
// the units of a lease the grant replaces, to give back (none while only
// one decision asks at a time).
func (ls *leases) granted(subject string, items []ratelimit.Item, results []ratelimit.Result, a *ask, g grants, sent int64) []give {
	s, h := ls.table.Shard(subject)
	s.Mu.Lock()
	defer s.Mu.Unlock()
	var back []give
	for i := range items {
		it := &items[i]
		e := s.M[shardmap.Key(h, it.Policy.Name)]
		if a.want[i] == 0 || e == nil || e.subject != subject || e.policy != it.Policy {
			continue
		}
		e.asking = false
		e.decidedAt, e.decided, e.granted = sent, 0, g.units[i]
		if u := e.ahead(sent); u > 0 {
			back = append(back, e.give(u))
		}
		e.units, e.spent = 0, 0
		r := &results[i]
		if g.units[i] <= 0 || !r.Allowed {
			continue
		}
		p := &it.Policy
		e.units = g.units[i]
		e.lapse = sent + ls.dur
		e.seen = r.Remaining + g.units[i]
		e.reset = r.ResetAfter
		e.emission, e.tatAt, e.ref = 0, 0, g.at[i]
		if p.Algorithm == ratelimit.GCRA {
			// Measured from when the decision was sent, before Redis
			// ran it: the units pass early here, never late.
			e.emission = p.EmissionInterval().Microseconds()
			e.tatAt = sent + g.at[i] - g.now[i]
		} else {
			e.resetAt = sent + r.ResetAfter.Microseconds()
			e.lapse = min(e.lapse, e.resetAt)
		}
		r.Remaining = e.seen // what exact mode would have shown
	}
	return back
}

// give takes u units out of e for a giveback.
func (e *lease) give(u int64) give {
	e.units -= u
	return give{subject: e.subject, policy: e.policy, units: u, ref: e.ref}
}

// give is units to give back to one policy of one subject, with the lease's
// ref (see lease).
type give struct {
	subject string
	policy  ratelimit.Policy
	units   int64
	ref     int64
}

// evict drops the entries of s that hold no usable unit and made no decision
// in Redis for a lease duration, and reports whether there is room. s.Mu is
// held.
func (ls *leases) evict(s *shardmap.Shard[*lease], now int64) bool {
	for k, e := range s.M {
		if e.usable(now) == 0 && now-e.decidedAt > ls.dur {
			delete(s.M, k)
		}
	}
	return len(s.M) < ls.max
}

// lapsed collects, to give back, what lapsed leases still hold ahead, and
// forgets idle entries.
func (ls *leases) lapsed(now int64) []give {
	var back []give
	for i := range shardmap.N {
		s := ls.table.At(i)
		s.Mu.Lock()
		for k, e := range s.M {
			if e.units > 0 && now >= e.lapse {
				if u := e.ahead(now); u > 0 {
					back = append(back, e.give(u))
				}
				e.units = 0
			}
			if e.units <= 0 && now-e.decidedAt > 4*ls.dur {
				delete(s.M, k)
			}
		}
		s.Mu.Unlock()
	}
	return back
}

// drop forgets the leases of subject (all its policies): its state was reset.
func (ls *leases) drop(subject string) {
	s, _ := ls.table.Shard(subject)
	s.Mu.Lock()
	for k, e := range s.M {
		if e.subject == subject {
			delete(s.M, k)
		}
	}
	s.Mu.Unlock()
}

// closeAll gives back every usable unit and waits for the give-backs under
// way (at Close).
func (ls *leases) closeAll(now int64) {
	var back []give
	for i := range shardmap.N {
		s := ls.table.At(i)
		s.Mu.Lock()
		for _, e := range s.M {
			if u := e.usable(now); u > 0 {
				back = append(back, e.give(u))
			}
		}
		s.Mu.Unlock()
	}
	ls.sendWait(back)
	ls.sending.Wait()
}

// send gives back units in the background (best effort: units that fail to
// go back lapse with time, as the algorithms allow).
func (ls *leases) send(back []give) {
	if len(back) == 0 {
		return
	}
	ls.sending.Add(1)
	go func() {
		defer ls.sending.Done()
		ls.sendWait(back)
	}()
}

func (ls *leases) sendWait(back []give) {
	if len(back) == 0 {
		return
	}
	l := ls.l
	ctx, cancel := context.WithTimeout(context.Background(), max(l.opts.Timeout, FlightTimeout))
	defer cancel()
	now := ""
	if l.scriptNow != nil {
		now = strconv.FormatInt(l.scriptNow().UnixMicro(), 10)
	}
	execs := make([]rueidis.LuaExec, len(back))
	for i, g := range back {
		pa := l.policyArgs(g.policy)
		execs[i] = rueidis.LuaExec{
			Keys: []string{ratelimit.Key(l.prefix, g.subject, g.policy.Name)},
			Args: []string{now, "1", "1", pa.alg, pa.a, pa.b, "1", "0", "r", "1", strconv.FormatInt(g.units, 10), strconv.FormatInt(g.ref, 10)},
		}
	}
	// Cached denials of the subjects, here and on every instance, may no
	// longer hold: tell them, after the units are back.
	var notes rueidis.Commands
	for i, r := range l.decide.ExecMulti(ctx, l.client, execs...) {
		vals, err := r.ToArray()
		if err != nil || len(vals) != 1 {
			continue
		}
		if changed, _ := vals[0].AsInt64(); changed == 1 {
			l.stats.givenBack.Add(1)
			if l.deny != nil {
				l.deny.clear(back[i].subject)
			}
			notes = append(notes, l.client.B().Publish().Channel(l.givebackCh).Message(back[i].subject).Build())
		}
	}
	if len(notes) > 0 {
		l.client.DoMulti(ctx, notes...)
	}
}

// sweeper gives back what lapsed leases hold every quarter of a lease
// duration (at most 250ms), until the limiter closes.
func (ls *leases) sweeper() {
	l := ls.l
	defer l.wg.Done()
	tick.Every(l.ctx.Done(), min(time.Duration(ls.dur)*time.Microsecond/4, 250*time.Millisecond), func() bool {
		ls.send(ls.lapsed(l.localNow().UnixMicro()))
		return true
	})
}
