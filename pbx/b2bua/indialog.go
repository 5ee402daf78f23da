package b2bua

import (
	"context"
	"errors"
	"fmt"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/sipdo"
)

// inDialog finds the call of an in-dialog request and checks its CSeq (RFC
// 3261 §12.2.2); on failure it has answered the request.
func (b *B2BUA) inDialog(req *sip.Request, tx sip.ServerTransaction) (*call, Leg, bool) {
	c, side, err := b.lookup(req)
	if err != nil {
		respond(tx, req, 481, "Call/Transaction Does Not Exist", b.log)
		return nil, 0, false
	}
	cs := req.CSeq()
	if cs == nil {
		respond(tx, req, 400, "Bad Request", b.log)
		return nil, 0, false
	}
	c.mu.Lock()
	l := c.legs[side]
	if cs.SeqNo <= l.Dialog.RemoteSeq && l.Dialog.RemoteSeq != 0 {
		c.mu.Unlock()
		respond(tx, req, 500, "Server Internal Error", b.log)
		return nil, 0, false
	}
	l.Dialog.RemoteSeq = cs.SeqNo
	c.mu.Unlock()
	return c, side, true
}

func (b *B2BUA) serveAck(req *sip.Request, _ sip.ServerTransaction) {
	c, side, err := b.lookup(req)
	if err != nil {
		b.log.Debug("ACK for no dialog", "call_id", req.CallID().Value())
		return
	}
	cs := req.CSeq()
	if cs == nil {
		return
	}
	c.mu.Lock()
	cid := c.legs[side].Dialog.CallID
	late := c.lateOffer && side == LegA && cs.SeqNo == c.inviteSeq
	m := c.media
	c.mu.Unlock()
	if late {
		b.lateAnswer(c, m, req.Body())
	}
	if !c.gotAck(cid, cs.SeqNo) {
		b.log.Debug("ACK not awaited (retransmission?)", "call", c.st.ID, "cseq", cs.SeqNo)
	}
}

// lateAnswer takes the caller's answer from the ACK of a late-offer call:
// the relay learns the caller's address from it. The callee already has
// its answer (its own terms, which the caller's answer can only narrow),
// so nothing goes on to it. An ACK without SDP breaks RFC 3264; the relay
// then waits for the caller's first packets.
func (b *B2BUA) lateAnswer(c *call, m MediaSession, body []byte) {
	c.mu.Lock()
	if !c.lateOffer || m == nil { // a retransmitted ACK
		c.mu.Unlock()
		return
	}
	c.lateOffer = false
	c.mu.Unlock()
	if len(body) == 0 {
		b.log.Warn("late-offer call: the caller's ACK has no SDP answer; media waits for its first packets", "call", c.st.ID)
		return
	}
	if _, err := m.Rewrite(LegA, body); err != nil {
		b.log.Warn("late-offer call: the caller's answer in the ACK is unusable; media waits for its first packets", "call", c.st.ID, "err", err)
		return
	}
	c.mu.Lock()
	c.legs[LegA].SDP = body
	c.mu.Unlock()
}

// serveCancel sees only CANCELs that match no INVITE transaction: sipgo
// answers the others itself (200, then 487 to the INVITE).
func (b *B2BUA) serveCancel(req *sip.Request, tx sip.ServerTransaction) {
	respond(tx, req, 481, "Call/Transaction Does Not Exist", b.log)
}

func (b *B2BUA) serveBye(req *sip.Request, tx sip.ServerTransaction) {
	c, side, ok := b.inDialog(req, tx)
	if !ok {
		return
	}
	respond(tx, req, 200, "OK", b.log)
	c.mu.Lock()
	state := c.st.State
	rc := c.ringCancel
	role := c.legs[side].Role
	if t := c.transfer; t != nil && t.from == side {
		// The transferor leaves; the transfer goes on without it.
		t.gone = true
		c.mu.Unlock()
		b.unbindLeg(req.CallID().Value(), c)
		return
	}
	c.mu.Unlock()
	if rc != nil {
		rc(errCallerCancel)
	}
	if state == StateRinging {
		return
	}
	c.end(cdr.Answered, 200, role, other(side))
}

// serveUpdate handles UPDATE like a re-INVITE (RFC 3311), without ACK.
func (b *B2BUA) serveUpdate(req *sip.Request, tx sip.ServerTransaction) {
	b.serveReoffer(req, tx)
}

// serveReoffer relays a re-INVITE or UPDATE (hold, resume, codec change)
// to the other leg through the media session, and its answer back.
func (b *B2BUA) serveReoffer(req *sip.Request, tx sip.ServerTransaction) {
	c, side, ok := b.inDialog(req, tx)
	if !ok {
		return
	}
	c.mu.Lock()
	switch {
	case c.ended:
		c.mu.Unlock()
		respond(tx, req, 481, "Call/Transaction Does Not Exist", b.log)
		return
	case c.busyOffer || c.transfer != nil || c.st.State != StateAnswered:
		c.mu.Unlock()
		respond(tx, req, 491, "Request Pending", b.log)
		return
	case len(req.Body()) == 0:
		c.mu.Unlock()
		b.log.Info("re-offer without SDP is not supported", "call", c.st.ID, "method", req.Method)
		respond(tx, req, 488, "Not Acceptable Here", b.log)
		return
	}
	c.busyOffer = true
	if ct := req.Contact(); ct != nil && req.IsInvite() {
		c.legs[side].Dialog.RemoteTarget = ct.Address.String()
	}
	c.mu.Unlock()
	code, reason, answer := b.reoffer(c, side, req)
	// The offer/answer exchange is over once the answer is sent; the ACK
	// need not be waited for before the next offer.
	c.mu.Lock()
	c.busyOffer = false
	c.mu.Unlock()
	if code != 200 {
		respond(tx, req, code, reason, b.log)
		return
	}
	ok200 := sip.NewResponseFromRequest(req, 200, "OK", nil)
	ok200.AppendHeader(&sip.ContactHeader{Address: b.contact(req.Transport())})
	ok200.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	ok200.SetBody(answer)
	if !req.IsInvite() {
		if err := tx.Respond(ok200); err != nil {
			b.log.Debug("answering UPDATE", "err", err)
		}
		c.persist()
		return
	}
	ack := c.expectAck(req.CallID().Value(), req.CSeq().SeqNo)
	if !c.sendOK(context.Background(), tx, ok200, ack, sip.IsReliable(req.Transport())) {
		b.log.Info("re-INVITE answer not acknowledged", "call", c.st.ID)
	}
	c.persist()
}

// reoffer runs one offer/answer exchange from leg side through the relay
// to the other leg and returns the code and answer for the offerer.
func (b *B2BUA) reoffer(c *call, side Leg, req *sip.Request) (int, string, []byte) {
	c.mu.Lock()
	m := c.media
	c.mu.Unlock()
	out, err := m.Rewrite(side, req.Body())
	if err != nil {
		b.log.Info("re-offer SDP refused", "call", c.st.ID, "err", err)
		return 488, "Not Acceptable Here", nil
	}
	c.mu.Lock()
	c.legs[side].SDP = req.Body()
	c.mu.Unlock()
	res, err := b.forward(context.Background(), c, other(side), req.Method, out, nil)
	if err != nil {
		b.log.Info("relaying a re-offer", "call", c.st.ID, "err", err)
		return 500, "Server Internal Error", nil
	}
	if !res.IsSuccess() {
		return res.StatusCode, res.Reason, nil
	}
	c.mu.Lock()
	c.legs[other(side)].SDP = res.Body()
	c.mu.Unlock()
	answer, err := m.Rewrite(other(side), res.Body())
	if err != nil {
		b.log.Info("re-answer SDP refused", "call", c.st.ID, "err", err)
		return 488, "Not Acceptable Here", nil
	}
	return 200, "OK", answer
}

// forward sends a request on leg `to` of c, with body (typed as SDP unless
// hdrs carries a Content-Type), and returns its final response. A 2xx to
// an INVITE is acknowledged here.
func (b *B2BUA) forward(ctx context.Context, c *call, to Leg, method sip.RequestMethod, body []byte, hdrs []sip.Header) (*sip.Response, error) {
	c.mu.Lock()
	l := c.legs[to]
	if l == nil || l.Dialog.RemoteTag == "" {
		c.mu.Unlock()
		return nil, errNoDialog
	}
	req, err := l.Dialog.newRequest(method, b.contact(l.Dialog.Transport))
	d := l.Dialog
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	typed := false
	for _, h := range hdrs {
		if h.Name() == "Content-Type" {
			typed = true
		}
		req.AppendHeader(sip.HeaderClone(h))
	}
	if len(body) > 0 && !typed {
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	req.SetBody(body)
	if method != sip.INVITE {
		return b.do(ctx, req)
	}
	if err := b.prepare(req); err != nil {
		return nil, fmt.Errorf("sending re-INVITE: %w", err)
	}
	tx, err := b.o.Client.TransactionRequest(ctx, req, sipdo.Unchanged)
	if err != nil {
		return nil, fmt.Errorf("sending re-INVITE: %w", err)
	}
	challenged := false
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			if (res.StatusCode == 401 || res.StatusCode == 407) && !challenged && b.authorizeForTrunk(req, res) {
				// A provider asks credentials: the same re-INVITE
				// again with them, in a new transaction.
				challenged = true
				if tx, err = b.o.Client.TransactionRequest(ctx, req, sipdo.Unchanged); err != nil {
					return nil, fmt.Errorf("sending re-INVITE with credentials: %w", err)
				}
				continue
			}
			if !res.IsSuccess() {
				// sipgo acknowledges non-2xx finals itself.
				return res, nil
			}
			if ct := res.Contact(); ct != nil {
				c.mu.Lock()
				c.legs[to].Dialog.RemoteTarget = ct.Address.String()
				d.RemoteTarget = ct.Address.String()
				c.mu.Unlock()
			}
			seq := req.CSeq().SeqNo
			sendAck := func() {
				ack, err := d.ack(seq, b.contact(d.Transport), nil)
				if err == nil {
					err = b.write(ack)
				}
				if err != nil {
					b.log.Info("ACK of a re-INVITE", "call", c.st.ID, "err", err)
				}
			}
			sendAck()
			// The transaction absorbs 2xx retransmissions until Timer M;
			// each gets the ACK again.
			tx.OnRetransmission(func(*sip.Response) { sendAck() })
			return res, nil
		case <-tx.Done():
			return nil, fmt.Errorf("re-INVITE: %w", tx.Err())
		case <-ctx.Done():
			tx.Terminate()
			return nil, ctx.Err()
		}
	}
}

// passHeaders are copied from a passed-through request to its copy.
var passHeaders = []string{"Content-Type", "Event", "Subscription-State", "Info-Package", "Recv-Info"}

// servePassThrough relays INFO (e.g. DTMF), NOTIFY and MESSAGE inside a
// call to the other leg and the answer back.
func (b *B2BUA) servePassThrough(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to == nil || !to.Params.Has("tag") {
		if req.Method == sip.MESSAGE {
			respond(tx, req, 405, "Method Not Allowed", b.log)
			return
		}
		respond(tx, req, 481, "Call/Transaction Does Not Exist", b.log)
		return
	}
	c, side, ok := b.inDialog(req, tx)
	if !ok {
		return
	}
	var hdrs []sip.Header
	for _, name := range passHeaders {
		hdrs = append(hdrs, req.GetHeaders(name)...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 64*sip.T1)
	defer cancel()
	res, err := b.forward(ctx, c, other(side), req.Method, req.Body(), hdrs)
	if errors.Is(err, errNoDialog) {
		respond(tx, req, 481, "Call/Transaction Does Not Exist", b.log)
		return
	}
	if err != nil {
		b.log.Info("passing a request through", "call", c.st.ID, "method", req.Method, "err", err)
		respond(tx, req, 408, "Request Timeout", b.log)
		return
	}
	out := sip.NewResponseFromRequest(req, res.StatusCode, res.Reason, nil)
	if ct := res.GetHeader("Content-Type"); ct != nil && len(res.Body()) > 0 {
		out.AppendHeader(sip.HeaderClone(ct))
		out.SetBody(res.Body())
	}
	if err := tx.Respond(out); err != nil {
		b.log.Debug("answering a passed-through request", "err", err)
	}
}
