package dispatch

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// pending remembers the requests forwarded to a backend, by the branch the
// dispatcher derived from the caller's Via: the backend a retransmission,
// CANCEL or ACK of the same transaction must go to, and whether the
// backend answered. An initial INVITE from a phone also keeps what it
// takes to send the call on to the next backend when this one fails.
type pending struct {
	server string // Server header of the dispatcher's own answers
	mu     sync.Mutex
	m      map[string]*entry
}

type entry struct {
	backend  int
	method   string
	sent     time.Time
	answered bool      // any response yet from the backend tried now
	final    time.Time // when the final response passed (zero: not yet)
	// finalFrom is the attempt whose final answer passed (a non-INVITE).
	finalFrom int
	// attempt counts the backends tried before this one; the branch on
	// the wire carries it (attemptBranch), so a late answer of a backend
	// given up on is told from the current one's.
	attempt  int
	canceled bool
	retry    *retry        // nil: this request is not sent on to another backend
	raw      []byte        // retry.raw, kept for the ACKs of late errors
	local    *sip.Response // the final answer the dispatcher gave itself
}

// retry is what sending an initial INVITE on to the next backend takes,
// and repeating it to the backend tried now: the phone, answered 100 by
// the dispatcher, no longer repeats it itself.
type retry struct {
	// raw is the request as it went to the first backend: bytes rather
	// than a parsed copy, which would cost every call; it is parsed
	// again (parseRequest) only to be sent again or answered.
	raw  []byte
	sock *sock // towards the backends
	// in is the socket the INVITE came on, inConn the phone's
	// connection (nil: UDP): the dispatcher's own answer goes there, and
	// the Record-Route names them.
	in     *sock
	inConn *streamConn
	key    string
	tried  []int
	max    int // backends to try at most
	// rrs is how many Record-Route entries of the dispatcher raw carries
	// on top: 0 (a method not Record-Routed), 1, or 2 when it changed
	// transport towards the first backend.
	rrs int
	// lastTx is when it last went to the backend tried now, rto how long
	// to wait for an answer before sending it again (RFC 3261 Timer A).
	lastTx time.Time
	rto    time.Duration
}

// Timer A of RFC 3261 §17.1.1.2: the first repetition after T1, doubling,
// here at most T2 apart.
const (
	timerT1 = 500 * time.Millisecond
	timerT2 = 4 * time.Second
)

// How long INVITE entries stay: after the final response, for the ACK of
// an error (sent at once, and again for each retransmitted error, which a
// backend stops after its ACK arrives); without one, a ringing INVITE for
// as long as Timer C lets it ring. Other requests leave with their final
// response.
const (
	lingerAfterFinal  = 5 * time.Second
	lingerProvisional = 3 * time.Minute
)

func newPending() *pending { return &pending{m: make(map[string]*entry)} }

// attemptBranch is the branch of the n-th backend tried for a request
// whose first backend got base.
func attemptBranch(base string, n int) string {
	if n == 0 {
		return base
	}
	return base + "." + strconv.Itoa(n)
}

// splitBranch undoes attemptBranch.
func splitBranch(b string) (base string, n int) {
	i := strings.LastIndexByte(b, '.')
	if i < 0 {
		return b, 0
	}
	n, err := strconv.Atoi(b[i+1:])
	if err != nil || n <= 0 {
		return b, 0
	}
	return b[:i], n
}

// add records a request sent to backend and tells whether it is new; an
// entry already there (a retransmission) is kept. rt, if not nil, lets the
// request go on to other backends.
func (p *pending) add(branch string, backend int, method string, now time.Time, rt *retry) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.m[branch]; ok {
		return false
	}
	e := &entry{backend: backend, method: method, sent: now, retry: rt}
	if rt != nil {
		e.raw = rt.raw
		rt.lastTx, rt.rto = now, timerT1
	}
	p.m[branch] = e
	return true
}

// found is what the table knows of a transaction.
type found struct {
	backend     int    // -1: not in the table
	branch      string // the branch of the backend's transaction now
	provisional bool   // answered only provisionally so far
	local       *sip.Response
}

// find looks branch up; cancel records that the caller cancelled it, so
// it goes to no further backend.
func (p *pending) find(branch string, cancel bool) found {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.m[branch]
	if !ok {
		return found{backend: -1}
	}
	if cancel {
		e.canceled = true
	}
	return found{backend: e.backend, branch: attemptBranch(branch, e.attempt), provisional: e.answered && e.final.IsZero(), local: e.local}
}

// What to do with a response of a backend.
type verdict int

const (
	forward  verdict = iota // pass it on to the caller
	drop                    // a late provisional answer of a backend given up on
	ackDrop                 // a final error the caller must not see: ACK it here
	failover                // ACK it here and send the request on (outcome.next)
	resend                  // a non-INVITE: send it on (outcome.next), nothing to ACK
)

// next is where a failed initial INVITE goes now.
type next struct {
	backend int
	branch  string
	raw     []byte // retry.raw
	sock    *sock
	in      *sock // retry.in
	inConn  *streamConn
	// rrs is retry.rrs.
	rrs int
}

// outcome is what the table says about a response.
type outcome struct {
	verdict verdict
	next    next
	// failed is the backend that refused an initial INVITE with a status
	// that says the box cannot serve (retryStatus), -1 if none.
	failed int
	// raw is the INVITE, for the ACK of an absorbed error (nil: not kept).
	raw []byte
}

// pickFunc chooses the next backend for key among those ok allows (-1:
// none).
type pickFunc func(key string, ok func(int) bool) int

// response records a response to attempt n of base's request (method from
// CSeq) and says what to do with it. pick, when not nil, chooses the
// backend a failed initial INVITE goes on to.
func (p *pending) response(base string, n int, method string, status int, now time.Time, pick pickFunc) outcome {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := outcome{verdict: forward, failed: -1}
	e, ok := p.m[base]
	if !ok || e.method != method {
		return out
	}
	out.raw = e.raw
	if method != "INVITE" {
		return p.nonInvite(e, base, n, status, now, pick)
	}
	if n != e.attempt {
		// A backend given up on: its 2xx still goes to the caller
		// (RFC 3261 §16.7: a proxy forwards every 2xx), the rest not.
		switch {
		case status < 200:
			out.verdict = drop
		case status >= 300:
			out.verdict = ackDrop
		}
		return out
	}
	e.answered = true
	switch {
	case status < 200:
		if status > 100 {
			// The callee is being reached: this backend has the
			// call, no failover any more.
			e.retry, e.raw = nil, nil
		}
		return out
	case !e.final.IsZero() || e.local != nil:
		return out // a retransmitted final answer
	}
	if retryStatus(status) && e.retry != nil {
		out.failed = e.backend
		if pick != nil {
			if nx, ok := e.moveOn(base, pick, now); ok {
				out.verdict, out.next = failover, nx
				return out
			}
		}
	}
	e.final = now
	e.retry, e.raw = nil, nil // no more failover: free the copy early
	return out
}

// nonInvite is response for a request other than INVITE (REGISTER,
// OPTIONS, MESSAGE, SUBSCRIBE, …). Without failover (no retry) its entry
// leaves at the final answer: no ACK or CANCEL follows. With failover, a
// 500 or 503 of the backend tried now sends it on to the next backend
// (resend: no ACK for a non-INVITE), as long as the phone has had no final
// answer; after the first final answer the phone gets, the entry stays a
// few seconds so that its retransmissions still reach that backend and a
// late final of a backend given up on is dropped (its 2xx passes when the
// phone has none yet).
func (p *pending) nonInvite(e *entry, base string, n, status int, now time.Time, pick pickFunc) outcome {
	out := outcome{verdict: forward, failed: -1}
	done := !e.final.IsZero() || e.local != nil
	if done {
		// Only the backend whose final answer the phone got may repeat
		// it (its transaction answering a retransmission).
		if e.local != nil || n != e.finalFrom {
			out.verdict = drop
		}
		return out
	}
	if n != e.attempt {
		if status >= 200 && status < 300 {
			e.final, e.finalFrom, e.answered = now, n, true
			e.retry, e.raw = nil, nil
			return out
		}
		out.verdict = drop
		return out
	}
	e.answered = true
	if status < 200 {
		return out
	}
	if e.retry == nil && e.attempt == 0 {
		// Never could go on: forget it now, as before failover.
		delete(p.m, base)
		return out
	}
	if retryStatus(status) && e.retry != nil {
		out.failed = e.backend
		if pick != nil {
			if nx, ok := e.moveOn(base, pick, now); ok {
				out.verdict, out.next = resend, nx
				return out
			}
		}
	}
	e.final, e.finalFrom = now, n
	e.retry, e.raw = nil, nil
	return out
}

// retryStatus tells the final answers of a backend to an INVITE after
// which the call is tried on the next backend: 503 (the box cannot take
// calls: overloaded, shutting down, no channel) and 500 (it broke on this
// request). Not 408 or 480 (the callee did not answer: trying another box
// would ring the phone again), not 502/504 (a gateway further on failed,
// which the next box would reach just the same), not any 4xx or 6xx (the
// callee's answer).
func retryStatus(status int) bool {
	return status == 500 || status == 503
}

// moveOn sends e on to the next backend, if it may go on and one is left.
// Caller holds the lock.
func (e *entry) moveOn(base string, pick pickFunc, now time.Time) (next, bool) {
	rt := e.retry
	if rt == nil || e.canceled || len(rt.tried) >= rt.max {
		return next{}, false
	}
	b := pick(rt.key, func(i int) bool { return !slices.Contains(rt.tried, i) })
	if b < 0 {
		return next{}, false
	}
	rt.tried = append(rt.tried, b)
	e.attempt++
	e.backend = b
	e.sent = now
	e.answered = false
	rt.lastTx, rt.rto = now, timerT1
	return next{backend: b, branch: attemptBranch(base, e.attempt), raw: rt.raw, sock: rt.sock, in: rt.in, inConn: rt.inConn, rrs: rt.rrs}, true
}

// timedOut is a request a backend left unanswered.
type timedOut struct {
	backend int
	method  string
}

// gaveUp is an initial INVITE that no backend took, and the final answer
// the dispatcher gives it itself.
type gaveUp struct {
	res  *sip.Response
	sock *sock
}

// sweepResult is what a sweep found.
type sweepResult struct {
	timedOut []timedOut
	moved    []next   // INVITEs sent on to another backend
	repeat   []next   // INVITEs to send again to the same backend
	gaveUp   []gaveUp // INVITEs no backend took
}

// sweep drops old entries and returns the requests unanswered for longer
// than timeout; an initial INVITE among them goes on to the next backend
// pick chooses (pick nil: none) or, with none left, is given up.
func (p *pending) sweep(now time.Time, timeout time.Duration, pick pickFunc) sweepResult {
	var out sweepResult
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, e := range p.m {
		switch {
		case !e.answered && e.local == nil && now.Sub(e.sent) > timeout:
			out.timedOut = append(out.timedOut, timedOut{e.backend, e.method})
			if e.retry == nil {
				delete(p.m, k)
				break
			}
			if pick != nil {
				if nx, ok := e.moveOn(k, pick, now); ok {
					out.moved = append(out.moved, nx)
					break
				}
			}
			// The entry stays for the caller's ACK of this answer and
			// its retransmissions of the INVITE.
			if req, err := parseRequest(e.retry.raw, e.retry.rrs); err == nil {
				e.local = localFinal(req, k, e.canceled, p.server)
				in := e.retry.in
				if in == nil {
					in = e.retry.sock
				}
				out.gaveUp = append(out.gaveUp, gaveUp{res: e.local, sock: in})
			}
			e.retry = nil
			e.final = now
			e.answered = true // it is over: not timed out again
		case !e.answered && e.retry != nil && (e.method == "INVITE" || e.retry.inConn != nil) && now.Sub(e.retry.lastTx) >= e.retry.rto:
			// INVITEs, which the phone stops repeating at the
			// dispatcher's 100 Trying, and other requests of a phone
			// over TCP or TLS, which it sends once (RFC 3261 §17.1.2.2);
			// a phone over UDP repeats those itself until their final
			// answer. Not to a backend over TCP or TLS (Dispatcher.sweep
			// leaves those out).
			rt := e.retry
			rt.lastTx, rt.rto = now, min(2*rt.rto, timerT2)
			out.repeat = append(out.repeat, next{backend: e.backend, branch: attemptBranch(k, e.attempt), raw: rt.raw, sock: rt.sock, in: rt.in, inConn: rt.inConn, rrs: rt.rrs})
		case !e.final.IsZero() && now.Sub(e.final) > lingerAfterFinal,
			e.final.IsZero() && now.Sub(e.sent) > lingerProvisional:
			delete(p.m, k)
		}
	}
	return out
}

// sweepLoop marks down backends that leave requests unanswered, and sends
// the initial INVITEs they left on to the next backend.
func (d *Dispatcher) sweepLoop(ctx context.Context) {
	every := max(min(d.cfg.TxTimeout/4, timerT1/2), 10*time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if !d.serving() {
				// Answers to what was sent while serving are dropped
				// now: forget the requests without marking backends
				// down or sending a call on (the twin serves it).
				d.pend.sweep(now, d.cfg.TxTimeout, nil)
				continue
			}
			d.sweep(now)
		}
	}
}
