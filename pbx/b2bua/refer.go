package b2bua

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/dialplan"
	"github.com/twinpbx/twinpbx/pbx/sdp"
)

// transfer is a transfer in progress (RFC 3515): blind, or attended
// while the calls are joined.
type transfer struct {
	// from is the transferor's side; the transferee is on other(from).
	from Leg
	// gone is set when the transferor hung up during the transfer.
	gone bool
}

// referTarget returns the number (an extension, or an outside number as
// the transferor would dial it) named by a Refer-To header value; a Replaces parameter (attended transfer) is read by
// referReplaces.
func referTarget(value string) (string, error) {
	var u sip.Uri
	params := sip.NewParams()
	if strings.TrimSpace(value) == "" {
		return "", errors.New("empty Refer-To")
	}
	if _, err := sip.ParseAddressValue(value, &u, &params); err != nil {
		return "", fmt.Errorf("parsing Refer-To %q: %w", value, err)
	}
	if u.Scheme != "sip" && u.Scheme != "sips" {
		return "", fmt.Errorf("Refer-To %q: not a SIP URI", value)
	}
	if u.User == "" {
		return "", fmt.Errorf("Refer-To %q: no number", value)
	}
	return u.User, nil
}

func sipfrag(code int, reason string) []byte {
	return []byte(fmt.Sprintf("SIP/2.0 %d %s\r\n", code, reason))
}

// serveRefer performs a blind transfer: the party on the other leg (the
// transferee) is connected to the Refer-To target, an extension or an
// outside number that goes out over the trunks of its route as the
// transferor's own call would, and the transferor is released. Progress
// is reported by NOTIFY in the REFER's dialog: 100 Trying, 180 Ringing
// when the target rings, then the outcome. An SRTP call is transferred
// too: the target is offered the transferee's keys and, once it answers,
// the transferee gets a re-INVITE with the target's (rekey); a target
// that answers with another protection (plain RTP for SRTP, SDES for
// DTLS) is hung up and the transferor hears 488.
func (b *B2BUA) serveRefer(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to == nil || !to.Params.Has("tag") {
		respond(tx, req, 481, "Call/Transaction Does Not Exist", b.log)
		return
	}
	c, side, ok := b.inDialog(req, tx)
	if !ok {
		return
	}
	h := req.GetHeader("Refer-To")
	if h == nil {
		respond(tx, req, 400, "Bad Request", b.log)
		return
	}
	target, err := referTarget(h.Value())
	rep, attended, rerr := referReplaces(h.Value())
	if err == nil {
		err = rerr
	}
	if err != nil {
		b.log.Info("REFER refused", "call", c.st.ID, "err", err)
		respond(tx, req, 400, "Bad Request", b.log)
		return
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	c.mu.Lock()
	if c.ended || c.st.State != StateAnswered || c.busyOffer || c.transfer != nil {
		c.mu.Unlock()
		respond(tx, req, 491, "Request Pending", b.log)
		return
	}
	c.transfer = &transfer{from: side}
	c.st.State = StateTransferring
	transferee := *c.legs[other(side)]
	if !attended {
		c.ringCancel = cancel
	}
	c.mu.Unlock()
	log := b.log.With("call", c.st.ID, "transferee", transferee.Number, "target", target)
	respond(tx, req, 202, "Accepted", b.log)
	b.notify(c, side, 100, "Trying", false)
	if attended {
		b.attendedTransfer(c, side, rep, log.With("replaces", rep.CallID))
		return
	}

	start := b.o.Now()
	progress := &referProgress{}
	out := b.transfer(ctx, c, side, transferee, target, start, progress, log)
	if out.code == 200 {
		c.persist()
		return
	}
	log.Info("transfer failed", "code", out.code)
	progress.wait()
	c.mu.Lock()
	gone := c.transfer != nil && c.transfer.gone
	c.transfer = nil
	c.ringCancel = nil
	ended := c.ended
	if !ended {
		c.st.State = StateAnswered
	}
	c.st.Attempts++
	rec := cdr.Record{
		ID: fmt.Sprintf("%s-%d", c.st.ID, c.st.Attempts), CallID: c.st.ID,
		Caller: transferee.Number, CallerName: transferee.Name, Callee: target,
		Start: start, End: b.o.Now(), Disp: disposition(out.code), SIPCode: out.code,
		Trunk: cmp.Or(out.trunk, transferee.Trunk),
	}
	c.mu.Unlock()
	b.writeCDR(rec)
	if ended {
		return
	}
	if gone {
		c.end(cdr.Answered, 200, ByCaller, other(side))
		return
	}
	// The CDR counter moved on: save it, so the twin numbers on from it.
	c.persist()
	b.notify(c, side, out.code, out.reason, true)
}

// transferOutcome is how a blind transfer ended: the code and reason for
// the final NOTIFY, and the trunk the target was called over (or tried
// last), for the CDR.
type transferOutcome struct {
	code   int
	reason string
	trunk  string
}

// referProgress sends the transferor one NOTIFY with "180 Ringing" when
// the target first rings, in the background so that ringing goes on, and
// lets the final NOTIFY wait for it: NOTIFYs must arrive in CSeq order.
type referProgress struct {
	mu   sync.Mutex
	done chan struct{}
}

// ringing is the early callback of the target's ringing.
func (p *referProgress) ringing(b *B2BUA, c *call, side Leg) func(*sip.Response) {
	return func(*sip.Response) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.done != nil {
			return
		}
		p.done = make(chan struct{})
		done := p.done
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer close(done)
			c.mu.Lock()
			gone := c.transfer == nil || c.transfer.gone || c.ended
			c.mu.Unlock()
			if !gone {
				b.notify(c, side, 180, "Ringing", false)
			}
		}()
	}
}

// wait returns once the ringing NOTIFY, if one was sent, is answered.
func (p *referProgress) wait() {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done != nil {
		<-done
	}
}

// referDecision says where a transfer target goes. The transferor's
// rights apply: a number it could dial itself goes where its own call
// would (an extension, or out over the trunks of its route, emergency
// calls first), while a party that is on a trunk may only transfer to
// extensions: an outside caller must not dial out through the PBX.
func (b *B2BUA) referDecision(target string, transferor LegState) (dialplan.Decision, int, string) {
	if b.o.Dialplan == nil {
		return dialplan.Decision{Kind: dialplan.Extension, Extension: target}, 0, ""
	}
	dec := b.o.Dialplan().Decide(target)
	switch dec.Kind {
	case dialplan.Incomplete:
		return dec, 484, "Address Incomplete"
	case dialplan.NotFound:
		// The directory may know an extension the plan does not yet.
		return dialplan.Decision{Kind: dialplan.Extension, Extension: target}, 0, ""
	case dialplan.Outbound, dialplan.Emergency:
		if transferor.Trunk != "" {
			return dec, 403, "Forbidden"
		}
	}
	return dec, 0, ""
}

// transfer rings target for the transferee (an extension, or an outside
// number over the trunks of its route) and, on answer, swaps it in for
// the transferor. It returns the outcome for the final NOTIFY.
func (b *B2BUA) transfer(ctx context.Context, c *call, side Leg, transferee LegState, target string, start time.Time, progress *referProgress, log *slog.Logger) transferOutcome {
	c.mu.Lock()
	m := c.media
	transferor := *c.legs[side]
	c.mu.Unlock()
	dec, code, reason := b.referDecision(target, transferor)
	if code != 0 {
		log.Info("transfer target refused", "kind", dec.Kind.String(), "code", code)
		return transferOutcome{code: code, reason: reason}
	}
	var (
		r       ringResult
		newLeg  LegState
		release func()
	)
	if dec.Kind == dialplan.Outbound || dec.Kind == dialplan.Emergency {
		offer, err := m.Rewrite(other(side), transferee.SDP)
		if err != nil {
			log.Info("transferee's SDP refused", "err", err)
			return transferOutcome{code: 488, reason: "Not Acceptable Here"}
		}
		// The call goes out on behalf of the transferee; an outside
		// transferee is not ours to present, so the transferor is.
		from, fromName := transferee.Number, transferee.Name
		if transferee.Trunk != "" {
			from, fromName = transferor.Number, transferor.Name
		}
		r = b.dialOut(ctx, outSpec{dec: dec, fromNumber: from, fromName: fromName, offer: offer,
			early: progress.ringing(b, c, side), log: log.With("number", dec.Number)})
		if r.winner != nil {
			newLeg = LegState{Role: ByCallee, Number: dec.Number, Trunk: r.trunk}
			release = func() {
				b.releaseChannel(r.trunk)
				b.trunkLegs.Delete(r.winner.d.CallID)
			}
		}
	} else {
		ext, ok := b.o.Directory.Extension(target)
		if !ok {
			return transferOutcome{code: 404, reason: "Not Found"}
		}
		bindings := b.o.Locator.Lookup(target)
		if len(bindings) == 0 {
			return transferOutcome{code: 480, reason: "Temporarily Unavailable"}
		}
		b.mu.Lock()
		if b.active[target] > 0 {
			b.mu.Unlock()
			return transferOutcome{code: 486, reason: "Busy Here"}
		}
		b.active[target]++
		b.mu.Unlock()
		release = func() {
			b.mu.Lock()
			b.release(target)
			b.mu.Unlock()
		}
		offer, err := m.Rewrite(other(side), transferee.SDP)
		if err != nil {
			release()
			log.Info("transferee's SDP refused", "err", err)
			return transferOutcome{code: 488, reason: "Not Acceptable Here"}
		}
		r = b.ring(ctx, ringSpec{
			callee: target, fromNumber: transferee.Number, fromName: transferee.Name,
			bindings: bindings, offer: offer, early: progress.ringing(b, c, side), log: log,
		})
		if r.winner == nil {
			release()
		}
		newLeg = LegState{Role: ByCallee, Number: target, Name: ext.Name}
	}
	if r.winner == nil {
		switch {
		case errors.Is(r.cause, errRingTimeout):
			return transferOutcome{code: 480, reason: "Temporarily Unavailable", trunk: r.trunk}
		case r.cause != nil:
			return transferOutcome{code: 487, reason: "Request Terminated", trunk: r.trunk}
		}
		return transferOutcome{code: r.code, reason: r.reason, trunk: r.trunk}
	}
	f := r.winner
	fail := func(code int, reason string) transferOutcome {
		if bye, err := f.d.newRequest(sip.BYE, b.contact(f.d.Transport)); err == nil {
			b.sendAll([]*sip.Request{bye})
		}
		release()
		return transferOutcome{code: code, reason: reason, trunk: r.trunk}
	}
	if err := joinable(transferee.SDP, r.answer.Body()); err != nil {
		log.Info("transfer target's SDP refused", "err", err)
		return fail(488, "Not Acceptable Here")
	}
	if _, err := m.Rewrite(side, r.answer.Body()); err != nil {
		log.Info("transfer target's SDP refused", "err", err)
		return fail(488, "Not Acceptable Here")
	}
	secure := sdp.SecurityOf(transferee.SDP) != sdp.Plain
	c.mu.Lock()
	gone := c.transfer == nil || c.transfer.gone
	ended := c.ended
	c.mu.Unlock()
	if ended {
		return fail(487, "Request Terminated")
	}
	if !gone {
		progress.wait()
		b.notify(c, side, 200, "OK", true)
	}

	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return fail(487, "Request Terminated")
	}
	first := c.record(cdr.Answered, 200, ByTransfer)
	old := c.legs[side]
	var bye *sip.Request
	if !c.transfer.gone {
		var err error
		bye, err = old.Dialog.newRequest(sip.BYE, b.contact(old.Dialog.Transport))
		if err != nil {
			log.Warn("building BYE for the transferor", "err", err)
		}
	}
	newLeg.Dialog, newLeg.SDP = f.d, r.answer.Body()
	c.legs[side] = &newLeg
	c.legs[other(side)].Role = ByCaller
	c.st.Attempts++
	c.st.Attempt = c.st.Attempts
	c.st.Caller, c.st.CallerName, c.st.Callee = transferee.Number, transferee.Name, target
	c.st.Trunk = cmp.Or(newLeg.Trunk, transferee.Trunk)
	c.st.Start, c.st.Answer = start, b.o.Now()
	c.st.State = StateAnswered
	// A call transferred to an emergency number is an emergency call
	// now (never cleared for another); one transferred away from it is
	// not.
	c.st.Emergency = dec.Kind == dialplan.Emergency
	c.transfer = nil
	c.ringCancel = nil
	// An SRTP call's keys are exchanged below: no offer may cross it.
	c.busyOffer = secure
	c.mu.Unlock()

	b.mu.Lock()
	b.legs[f.d.CallID] = c
	if b.legs[old.Dialog.CallID] == c {
		delete(b.legs, old.Dialog.CallID)
	}
	if old.Trunk == "" {
		b.release(old.Number)
	} else {
		b.releaseChannel(old.Trunk)
	}
	b.mu.Unlock()
	b.writeCDR(first)
	if bye != nil {
		b.sendAll([]*sip.Request{bye})
	}
	if old.Trunk != "" {
		// Only after its BYE: a provider that challenges it is answered
		// with the trunk's credentials.
		b.trunkLegs.Delete(old.Dialog.CallID)
	}
	if secure {
		// The target was offered the transferee's keys; the transferee
		// still holds the transferor's and gets the target's now.
		var given [2][]string
		given[side], given[other(side)] = sdp.Keys(transferee.SDP), sdp.Keys(old.SDP)
		b.rekey(c, given, log)
		c.mu.Lock()
		c.busyOffer = false
		c.mu.Unlock()
	}
	log.Info("call transferred", "trunk", newLeg.Trunk)
	return transferOutcome{code: 200, reason: "OK", trunk: newLeg.Trunk}
}

// notify reports transfer progress to the transferor.
func (b *B2BUA) notify(c *call, side Leg, code int, reason string, final bool) {
	state := "active;expires=60"
	if final {
		state = "terminated;reason=noresource"
	}
	hdrs := []sip.Header{
		sip.NewHeader("Event", "refer"),
		sip.NewHeader("Subscription-State", state),
		sip.NewHeader("Content-Type", "message/sipfrag;version=2.0"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 64*sip.T1)
	defer cancel()
	res, err := b.forward(ctx, c, side, sip.NOTIFY, sipfrag(code, reason), hdrs)
	if err != nil {
		b.log.Info("NOTIFY to the transferor", "call", c.st.ID, "err", err)
		return
	}
	if !res.IsSuccess() {
		b.log.Info("NOTIFY refused by the transferor", "call", c.st.ID, "code", res.StatusCode)
	}
}
