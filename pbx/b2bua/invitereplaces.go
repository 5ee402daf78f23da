package b2bua

import (
	"context"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/cdr"
)

// serveReplacingInvite takes an INVITE with a Replaces header (RFC 3891):
// the calling phone takes the place of the party on the leg it names, in
// an answered call. The party that stays gets a re-INVITE with the new
// phone's offer through the relay, and its answer goes back in the 200;
// the replaced party gets BYE. Its CDR ends with hangup_by transfer and
// the call goes on under a new record. Answers: 481 when no answered call
// has that dialog (early dialogs are not replaced), 486 for early-only,
// 491 while the call is busy with another offer or a transfer, 488 for an
// INVITE without SDP, 403 from a trunk or for a From that is not the
// authenticated extension.
func (b *B2BUA) serveReplacingInvite(req *sip.Request, tx sip.ServerTransaction, h sip.Header) {
	from, cs := req.From(), req.CSeq()
	if from == nil || cs == nil || req.Contact() == nil || req.CallID() == nil {
		respond(tx, req, 400, "Bad Request", b.log)
		return
	}
	rep, err := parseReplaces(h.Value())
	if err != nil {
		b.log.Info("INVITE with Replaces refused", "err", err)
		respond(tx, req, 400, "Bad Request", b.log)
		return
	}
	if _, _, trunk := b.fromTrunk(req); trunk {
		b.log.Info("INVITE with Replaces from a trunk refused")
		respond(tx, req, 403, "Forbidden", b.log)
		return
	}
	user, ok := b.o.Auth.Authenticate(req, tx, true)
	if !ok {
		return
	}
	if user != from.Address.User {
		respond(tx, req, 403, "Forbidden", b.log)
		return
	}
	c, side, err := b.findReplaced(rep)
	if err != nil {
		b.log.Info("INVITE with Replaces for no known dialog", "user", user, "replaces", rep.CallID)
		respond(tx, req, 481, "Call/Transaction Does Not Exist", b.log)
		return
	}
	if len(req.Body()) == 0 {
		respond(tx, req, 488, "Not Acceptable Here", b.log)
		return
	}
	log := b.log.With("call", c.st.ID, "user", user)
	c.mu.Lock()
	var code int
	var reason string
	switch {
	case c.ended:
		code, reason = 481, "Call/Transaction Does Not Exist"
	case c.st.State != StateAnswered && c.st.State != StateTransferring:
		code, reason = 481, "Call/Transaction Does Not Exist"
	case rep.EarlyOnly:
		code, reason = 486, "Busy Here"
	case c.busyOffer || c.transfer != nil:
		code, reason = 491, "Request Pending"
	}
	if code != 0 {
		c.mu.Unlock()
		respond(tx, req, code, reason, b.log)
		return
	}
	c.busyOffer = true
	m := c.media
	old := *c.legs[side]
	c.mu.Unlock()
	if err := tx.Respond(sip.NewResponseFromRequest(req, 100, "Trying", nil)); err != nil {
		log.Debug("sending 100 Trying", "err", err)
	}
	idle := func() {
		c.mu.Lock()
		c.busyOffer = false
		c.mu.Unlock()
	}
	d, err := uasDialog(req, sip.GenerateTagN(16))
	if err != nil {
		idle()
		respond(tx, req, 400, "Bad Request", b.log)
		return
	}
	// The party that stays is offered the new phone's media; on any
	// failure the relay goes back to the replaced party's.
	undo := func() {
		if len(old.SDP) > 0 {
			_, _ = m.Rewrite(side, old.SDP)
		}
		idle()
	}
	offer, err := m.Rewrite(side, req.Body())
	if err != nil {
		log.Info("replacing phone's SDP refused", "err", err)
		idle()
		respond(tx, req, 488, "Not Acceptable Here", b.log)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 64*sip.T1)
	defer cancel()
	res, err := b.forward(ctx, c, other(side), sip.INVITE, offer, nil)
	if err != nil || !res.IsSuccess() {
		undo()
		if err != nil {
			log.Info("re-INVITE for a replacing phone", "err", err)
			respond(tx, req, 500, "Server Internal Error", b.log)
			return
		}
		respond(tx, req, res.StatusCode, res.Reason, b.log)
		return
	}
	answer, err := m.Rewrite(other(side), res.Body())
	if err != nil {
		log.Info("answer for a replacing phone refused", "err", err)
		undo()
		respond(tx, req, 488, "Not Acceptable Here", b.log)
		return
	}
	name := from.DisplayName
	if ext, ok := b.o.Directory.Extension(user); ok && name == "" {
		name = ext.Name
	}

	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		respond(tx, req, 481, "Call/Transaction Does Not Exist", b.log)
		return
	}
	rec := c.record(cdr.Answered, 200, ByTransfer)
	bye, err := c.legs[side].Dialog.newRequest(sip.BYE, b.contact(old.Dialog.Transport))
	if err != nil {
		log.Warn("building BYE for the replaced party", "err", err)
	}
	c.legs[side] = &LegState{Dialog: d, Role: old.Role, Number: user, Name: name, SDP: req.Body()}
	c.legs[other(side)].SDP = res.Body()
	c.st.Attempts++
	c.st.Attempt = c.st.Attempts
	if old.Role == ByCaller {
		c.st.Caller, c.st.CallerName = user, name
	} else {
		c.st.Callee = user
	}
	if old.Trunk != "" && c.st.Trunk == old.Trunk {
		c.st.Trunk = c.legs[other(side)].Trunk
	}
	c.st.Start, c.st.Answer = b.o.Now(), b.o.Now()
	c.mu.Unlock()

	b.mu.Lock()
	b.legs[d.CallID] = c
	if b.legs[old.Dialog.CallID] == c {
		delete(b.legs, old.Dialog.CallID)
	}
	if old.Trunk == "" {
		b.release(old.Number)
	} else {
		b.releaseChannel(old.Trunk)
	}
	b.active[user]++
	b.mu.Unlock()
	b.writeCDR(rec)
	log.Info("a phone replaced a party of the call", "replaced", old.Number)

	ok200 := sip.NewResponseFromRequest(req, 200, "OK", nil)
	ok200.To().Params.Add("tag", d.LocalTag)
	ok200.AppendHeader(&sip.ContactHeader{Address: b.contact(req.Transport())})
	ok200.AppendHeader(sip.NewHeader("Allow", allow))
	ok200.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	ok200.SetBody(answer)
	ack := c.expectAck(d.CallID, cs.SeqNo)
	acked := c.sendOK(context.Background(), tx, ok200, ack, sip.IsReliable(req.Transport()))
	if bye != nil {
		b.sendAll([]*sip.Request{bye})
	}
	// Only now: a provider that challenges the BYE is answered with the
	// trunk's credentials (see authorizeForTrunk).
	b.trunkLegs.Delete(old.Dialog.CallID)
	idle()
	if !acked {
		log.Warn("the replacing phone never acknowledged the answer; hanging up")
		c.end(cdr.Answered, 200, BySystem, LegA, LegB)
		return
	}
	c.persist()
}
