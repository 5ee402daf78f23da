package b2bua

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/cdr"
)

// Call states, as CallInfo.State shows them.
const (
	StateRinging      = "ringing"
	StateAnswered     = "answered"
	StateTransferring = "transferring"
	StateEnded        = "ended"
)

// Hangup parties in CDRs.
const (
	ByCaller   = "caller"
	ByCallee   = "callee"
	BySystem   = "system"
	ByTransfer = "transfer"
	// ByPreemption: the PBX cleared the call to make room for an
	// emergency call (preempt.go), answered or still ringing.
	ByPreemption = "preemption"
)

// LegState is one leg of a call as plain data.
type LegState struct {
	Dialog Dialog `json:"dialog"`
	// Role is ByCaller or ByCallee: who this party is in the current CDR.
	Role string `json:"role"`
	// Number and Name of the extension on this leg.
	Number string `json:"number"`
	Name   string `json:"name,omitempty"`
	// SDP is the last session description received from this leg.
	SDP []byte `json:"sdp,omitempty"`
	// Trunk names the trunk this leg runs over; Number is then the
	// outside party's number, which does not count as a busy extension.
	Trunk string `json:"trunk,omitempty"`
}

// CallState is one call as plain data: enough to restore it elsewhere.
// Legs are indexed by media side (LegA, LegB); the media session id is ID.
type CallState struct {
	ID string `json:"id"`
	// Attempt numbers the current CDR (ID-Attempt); Attempts counts the
	// records this call has allocated (transfers add records).
	Attempt    int          `json:"attempt"`
	Attempts   int          `json:"attempts"`
	Caller     string       `json:"caller"`
	CallerName string       `json:"caller_name,omitempty"`
	Callee     string       `json:"callee"`
	State      string       `json:"state"`
	Start      time.Time    `json:"start"`
	Answer     time.Time    `json:"answer,omitzero"`
	Legs       [2]*LegState `json:"legs"`
	// Trunk is the trunk the call goes out or came in over, for the CDR.
	Trunk string `json:"trunk,omitempty"`
	// Site is the site member the call was forwarded to or from (site.go).
	Site string `json:"site,omitempty"`
	// Emergency marks an emergency call: never cleared to make room for
	// another (preempt.go).
	Emergency bool `json:"emergency,omitempty"`
}

// call is one call in progress; mu guards everything below it.
type call struct {
	b    *B2BUA
	done chan struct{}

	mu    sync.Mutex
	st    CallState
	legs  [2]*LegState
	media MediaSession
	ended bool
	// registered is set once the call is in the B2BUA's tables and counts
	// against its parties' "busy".
	registered bool
	// ringCancel stops the ringing phase (caller CANCEL, shutdown).
	ringCancel context.CancelCauseFunc
	// acks are the 2xx responses we sent that wait for their ACK, by leg
	// Call-ID and CSeq.
	acks map[ackKey]chan struct{}
	// busyOffer is true while a re-INVITE or UPDATE is in progress.
	busyOffer bool
	// lateOffer: the caller's INVITE had no SDP; its answer comes in the
	// ACK of the 200.
	lateOffer bool
	// transfer is the blind transfer in progress, if any.
	transfer *transfer
	// inviteSeq is the CSeq of the caller's INVITE (its ACK has it).
	inviteSeq uint32
	// rel sends the caller's provisional responses reliably; set only
	// when its INVITE requires 100rel (RFC 3262).
	rel *reliable
	// byeReason, per leg, is the Reason header the BYEs of end carry.
	byeReason [2]sip.Header
	// preempted: an emergency call claimed this call to clear it.
	preempted bool

	// saveMu orders the writes of the call's saved record; saved is set
	// while a record exists in Options.Calls.
	saveMu sync.Mutex
	saved  bool
}

type ackKey struct {
	callID string
	seq    uint32
}

func (c *call) state() CallState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stateLocked()
}

// stateLocked copies the call's state; callers hold mu.
func (c *call) stateLocked() CallState {
	s := c.st
	for i, l := range c.legs {
		if l != nil {
			cp := *l
			cp.Dialog.RouteSet = append([]string(nil), l.Dialog.RouteSet...)
			cp.SDP = append([]byte(nil), l.SDP...)
			s.Legs[i] = &cp
		}
	}
	return s
}

// expectAck registers a 2xx sent on leg callID with CSeq seq; the returned
// channel closes when its ACK arrives.
func (c *call) expectAck(callID string, seq uint32) chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan struct{})
	c.acks[ackKey{callID, seq}] = ch
	return ch
}

func (c *call) gotAck(callID string, seq uint32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := ackKey{callID, seq}
	ch, ok := c.acks[k]
	if ok {
		close(ch)
		delete(c.acks, k)
	}
	return ok
}

// sendOK sends a 2xx on a server transaction and, over UDP, retransmits it
// (T1 doubling up to T2) until the ACK arrives (RFC 3261 §13.3.1.4). It
// reports whether the ACK came within 64×T1.
func (c *call) sendOK(ctx context.Context, tx sip.ServerTransaction, res *sip.Response, ack chan struct{}, reliable bool) bool {
	if err := tx.Respond(res); err != nil {
		c.b.log.Warn("sending 2xx", "call", c.st.ID, "err", err)
	}
	deadline := time.NewTimer(64 * sip.T1)
	defer deadline.Stop()
	interval := sip.T1
	retrans := time.NewTimer(interval)
	defer retrans.Stop()
	for {
		select {
		case <-ack:
			return true
		case <-deadline.C:
			return false
		case <-ctx.Done():
			return false
		case <-c.done:
			return false
		case <-retrans.C:
			if !reliable {
				if err := tx.Respond(res); err != nil {
					c.b.log.Debug("retransmitting 2xx", "call", c.st.ID, "err", err)
				}
			}
			interval = min(2*interval, sip.T2)
			retrans.Reset(interval)
		}
	}
}

// end finishes the call once: BYE to the listed legs that have a
// confirmed dialog, media closed, CDR written.
func (c *call) end(disp cdr.Disposition, code int, by string, bye ...Leg) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended = true
	c.st.State = StateEnded
	var byes []*sip.Request
	for _, side := range bye {
		l := c.legs[side]
		if l == nil || l.Dialog.RemoteTag == "" {
			continue
		}
		if c.transfer != nil && c.transfer.gone && c.transfer.from == side {
			continue // the transferor already hung up
		}
		req, err := l.Dialog.newRequest(sip.BYE, c.b.contact(l.Dialog.Transport))
		if err != nil {
			c.b.log.Warn("building BYE", "call", c.st.ID, "err", err)
			continue
		}
		if h := c.byeReason[side]; h != nil {
			req.AppendHeader(h)
		}
		byes = append(byes, req)
	}
	rec := c.record(disp, code, by)
	legs := c.legs
	m := c.media
	registered := c.registered
	c.mu.Unlock()

	c.b.mu.Lock()
	if c.b.calls[c.st.ID] == c {
		delete(c.b.calls, c.st.ID)
	}
	for _, l := range legs {
		if l != nil && registered {
			if c.b.legs[l.Dialog.CallID] == c {
				delete(c.b.legs, l.Dialog.CallID)
			}
			if l.Trunk == "" {
				c.b.release(l.Number)
			} else {
				c.b.releaseChannel(l.Trunk)
			}
		}
	}
	c.b.mu.Unlock()

	c.unpersist()
	c.b.sendAll(byes)
	for _, l := range legs {
		if l != nil && l.Trunk != "" {
			c.b.trunkLegs.Delete(l.Dialog.CallID)
		}
	}
	if m != nil {
		if err := m.Close(); err != nil {
			c.b.log.Warn("closing media session", "call", c.st.ID, "err", err)
		}
	}
	c.b.writeCDR(rec)
	close(c.done)
}

// record builds the CDR of the current attempt; callers hold mu.
func (c *call) record(disp cdr.Disposition, code int, by string) cdr.Record {
	r := cdr.Record{
		ID:         fmt.Sprintf("%s-%d", c.st.ID, c.st.Attempt),
		CallID:     c.st.ID,
		Caller:     c.st.Caller,
		CallerName: c.st.CallerName,
		Callee:     c.st.Callee,
		Start:      c.st.Start,
		Answer:     c.st.Answer,
		End:        c.b.o.Now(),
		Disp:       disp,
		SIPCode:    code,
		Trunk:      c.st.Trunk,
		Site:       c.st.Site,
	}
	if disp == cdr.Answered || by == ByPreemption {
		r.HangupBy = by
	}
	return r
}

func (b *B2BUA) writeCDR(r cdr.Record) {
	if err := b.o.CDR.WriteCDR(r); err != nil {
		b.log.Error("writing CDR", "id", r.ID, "err", err)
	}
}

// release counts one call less for ext; callers hold b.mu.
func (b *B2BUA) release(ext string) {
	if ext == "" {
		return
	}
	if b.active[ext] <= 1 {
		delete(b.active, ext)
		return
	}
	b.active[ext]--
}

// seize takes a channel of trunk name for a call that comes in over it;
// false when every channel is in use. A trunk the manager does not know
// has no limit.
func (b *B2BUA) seize(name string) bool {
	t, ok := b.o.Trunks.Trunk(name)
	return !ok || t.Seize(false)
}

// holdChannel counts a leg over trunk name that already runs (a restored
// call), whatever the trunk's limit.
func (b *B2BUA) holdChannel(name string) {
	if b.o.Trunks == nil {
		return
	}
	if t, ok := b.o.Trunks.Trunk(name); ok {
		t.Hold()
	}
}

// releaseChannel gives back the channel a leg over trunk name held.
func (b *B2BUA) releaseChannel(name string) {
	if name == "" || b.o.Trunks == nil {
		return
	}
	if t, ok := b.o.Trunks.Trunk(name); ok {
		t.Release()
	}
}

// sendAll sends in-dialog requests (BYEs) in parallel and waits for them.
func (b *B2BUA) sendAll(reqs []*sip.Request) {
	var wg sync.WaitGroup
	for _, req := range reqs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 64*sip.T1)
			defer cancel()
			res, err := b.do(ctx, req)
			if err != nil {
				b.log.Info("request to a leg failed", "method", req.Method, "err", err)
				return
			}
			if !res.IsSuccess() {
				b.log.Info("request to a leg refused", "method", req.Method, "code", res.StatusCode)
			}
		})
	}
	wg.Wait()
}

// disposition maps the final code sent to the caller to a CDR
// disposition.
func disposition(code int) cdr.Disposition {
	switch {
	case code >= 200 && code < 300:
		return cdr.Answered
	case code == 486 || code == 600:
		return cdr.Busy
	case code == 480 || code == 408:
		return cdr.NoAnswer
	case code == 487:
		return cdr.Cancelled
	default:
		return cdr.Failed
	}
}

// shutdown ends the call for HangupAll.
func (c *call) shutdown(ctx context.Context) {
	c.mu.Lock()
	rc := c.ringCancel
	answered := c.st.State != StateRinging
	c.mu.Unlock()
	if rc != nil {
		rc(errShutdown)
	}
	if !answered && rc != nil {
		select {
		case <-c.done:
		case <-ctx.Done():
		}
		return
	}
	c.end(cdr.Answered, 200, BySystem, LegA, LegB)
}
