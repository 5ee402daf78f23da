package b2bua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/cdr"
)

// transfer is a transfer in progress (RFC 3515): blind, or attended
// while the calls are joined.
type transfer struct {
	// from is the transferor's side; the transferee is on other(from).
	from Leg
	// gone is set when the transferor hung up during the transfer.
	gone bool
}

// referTarget returns the extension number named by a Refer-To header
// value; a Replaces parameter (attended transfer) is read by
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
// transferee) is connected to the Refer-To extension, the transferor is
// released. Progress is reported by NOTIFY in the REFER's dialog.
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
	code, reason := b.transfer(ctx, c, side, transferee, target, start, log)
	if code == 200 {
		c.persist()
		return
	}
	log.Info("transfer failed", "code", code)
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
		Start: start, End: b.o.Now(), Disp: disposition(code), SIPCode: code,
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
	b.notify(c, side, code, reason, true)
}

// transfer rings target for the transferee and, on answer, swaps it in
// for the transferor. It returns the final code for the NOTIFY.
func (b *B2BUA) transfer(ctx context.Context, c *call, side Leg, transferee LegState, target string, start time.Time, log *slog.Logger) (int, string) {
	ext, ok := b.o.Directory.Extension(target)
	if !ok {
		return 404, "Not Found"
	}
	bindings := b.o.Locator.Lookup(target)
	if len(bindings) == 0 {
		return 480, "Temporarily Unavailable"
	}
	b.mu.Lock()
	if b.active[target] > 0 {
		b.mu.Unlock()
		return 486, "Busy Here"
	}
	b.active[target]++
	b.mu.Unlock()
	reserved := true
	defer func() {
		if reserved {
			b.mu.Lock()
			b.release(target)
			b.mu.Unlock()
		}
	}()
	c.mu.Lock()
	m := c.media
	c.mu.Unlock()
	offer, err := m.Rewrite(other(side), transferee.SDP)
	if err != nil {
		log.Info("transferee's SDP refused", "err", err)
		return 488, "Not Acceptable Here"
	}
	r := b.ring(ctx, ringSpec{
		callee: target, fromNumber: transferee.Number, fromName: transferee.Name,
		bindings: bindings, offer: offer, log: log,
	})
	if r.winner == nil {
		switch {
		case errors.Is(r.cause, errRingTimeout):
			return 480, "Temporarily Unavailable"
		case r.cause != nil:
			return 487, "Request Terminated"
		}
		return r.code, r.reason
	}
	f := r.winner
	hangupWinner := func() {
		if bye, err := f.d.newRequest(sip.BYE, b.contact(f.d.Transport)); err == nil {
			b.sendAll([]*sip.Request{bye})
		}
	}
	if _, err := m.Rewrite(side, r.answer.Body()); err != nil {
		log.Info("transfer target's SDP refused", "err", err)
		hangupWinner()
		return 488, "Not Acceptable Here"
	}
	c.mu.Lock()
	gone := c.transfer == nil || c.transfer.gone
	ended := c.ended
	c.mu.Unlock()
	if ended {
		hangupWinner()
		return 487, "Request Terminated"
	}
	if !gone {
		b.notify(c, side, 200, "OK", true)
	}

	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		hangupWinner()
		return 487, "Request Terminated"
	}
	first := c.record(cdr.Answered, 200, ByTransfer)
	old := c.legs[side]
	var bye *sip.Request
	if !c.transfer.gone {
		bye, err = old.Dialog.newRequest(sip.BYE, b.contact(old.Dialog.Transport))
		if err != nil {
			log.Warn("building BYE for the transferor", "err", err)
		}
	}
	c.legs[side] = &LegState{Dialog: f.d, Role: ByCallee, Number: target, Name: ext.Name, SDP: r.answer.Body()}
	c.legs[other(side)].Role = ByCaller
	c.st.Attempts++
	c.st.Attempt = c.st.Attempts
	c.st.Caller, c.st.CallerName, c.st.Callee = transferee.Number, transferee.Name, target
	c.st.Start, c.st.Answer = start, b.o.Now()
	c.st.State = StateAnswered
	c.transfer = nil
	c.ringCancel = nil
	c.mu.Unlock()

	b.mu.Lock()
	b.legs[f.d.CallID] = c
	if b.legs[old.Dialog.CallID] == c {
		delete(b.legs, old.Dialog.CallID)
	}
	b.release(old.Number)
	b.mu.Unlock()
	reserved = false
	b.writeCDR(first)
	if bye != nil {
		b.sendAll([]*sip.Request{bye})
	}
	log.Info("call transferred")
	return 200, "OK"
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
