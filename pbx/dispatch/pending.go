package dispatch

import (
	"context"
	"sync"
	"time"
)

// pending remembers the requests forwarded to a backend, by the branch of
// the dispatcher's Via: the backend a retransmission, CANCEL or ACK of the
// same transaction must go to, and whether the backend answered.
type pending struct {
	mu sync.Mutex
	m  map[string]*entry
}

type entry struct {
	backend  int
	method   string
	sent     time.Time
	answered bool      // any response yet
	final    time.Time // when the final response passed (zero: not yet)
}

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

// add records a request sent to backend and tells whether it is new; an
// entry already there (a retransmission) is kept.
func (p *pending) add(branch string, backend int, method string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.m[branch]; ok {
		return false
	}
	p.m[branch] = &entry{backend: backend, method: method, sent: now}
	return true
}

// backend returns the backend of branch, or -1.
func (p *pending) backend(branch string) int {
	b, _ := p.lookup(branch)
	return b
}

// lookup returns the backend of branch (-1: none) and whether it has
// answered the request only provisionally so far.
func (p *pending) lookup(branch string) (backend int, provisional bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.m[branch]; ok {
		return e.backend, e.answered && e.final.IsZero()
	}
	return -1, false
}

// answered records a response to branch's request (method from CSeq).
func (p *pending) answered(branch, method string, status int, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.m[branch]
	if !ok || e.method != method {
		return
	}
	e.answered = true
	switch {
	case status < 200:
	case method != "INVITE":
		// Nothing else of the transaction will pass: no ACK, no CANCEL.
		delete(p.m, branch)
	case e.final.IsZero():
		e.final = now
	}
}

// timedOut is a request a backend left unanswered.
type timedOut struct {
	backend int
	method  string
}

// sweep drops old entries and returns the requests unanswered for longer
// than timeout.
func (p *pending) sweep(now time.Time, timeout time.Duration) []timedOut {
	var out []timedOut
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, e := range p.m {
		switch {
		case !e.answered && now.Sub(e.sent) > timeout:
			out = append(out, timedOut{e.backend, e.method})
			delete(p.m, k)
		case !e.final.IsZero() && now.Sub(e.final) > lingerAfterFinal,
			e.final.IsZero() && now.Sub(e.sent) > lingerProvisional:
			delete(p.m, k)
		}
	}
	return out
}

// sweepLoop marks down backends that leave requests unanswered.
func (d *Dispatcher) sweepLoop(ctx context.Context) {
	every := max(d.cfg.TxTimeout/4, 10*time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			for _, t := range d.pend.sweep(now, d.cfg.TxTimeout) {
				d.health.timedOut(t.backend, t.method)
			}
		}
	}
}
