package b2bua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/google/uuid"

	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/dialplan"
	"github.com/twinpbx/twinpbx/pbx/location"
	"github.com/twinpbx/twinpbx/pbx/phoneflow"
	"github.com/twinpbx/twinpbx/pbx/sipdo"
	"github.com/twinpbx/twinpbx/pbx/sipreason"
)

var (
	errCallerCancel = errors.New("the caller cancelled")
	errRingTimeout  = errors.New("nobody answered in time")
	errShutdown     = errors.New("the PBX is shutting down")
	errCallerGone   = errors.New("the caller's transaction ended")
)

const allow = "INVITE, ACK, CANCEL, BYE, REFER, NOTIFY, INFO, UPDATE, MESSAGE, OPTIONS, PRACK"

// serveInvite handles a new call, or a re-INVITE when To has a tag.
func (b *B2BUA) serveInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		b.serveReoffer(req, tx)
		return
	}
	if h := req.GetHeader("Replaces"); h != nil {
		b.serveReplacingInvite(req, tx, h)
		return
	}
	from, cid, cs := req.From(), req.CallID(), req.CSeq()
	if from == nil || req.To() == nil || cid == nil || cs == nil || req.Contact() == nil {
		respond(tx, req, 400, "Bad Request", b.log)
		return
	}
	// A call from a trunk needs no password: its source address says
	// which trunk it is, and its called number which extension rings.
	var user, callee, inTrunk, fromSite string
	var dec dialplan.Decision
	if t, called, ok := b.fromTrunk(req); ok {
		inTrunk, user, callee = t, from.Address.User, called
		if ext, ok := b.o.Dialplan().Inbound(t, called); ok {
			callee = ext
			dec = dialplan.Decision{Kind: dialplan.Extension, Extension: ext}
		}
	} else if member, forwarded, ok := b.fromSite(req, tx); forwarded {
		// Forwarded by the box that took the call (site.go): the caller
		// authenticated there.
		if !ok {
			return
		}
		user, callee, fromSite = from.Address.User, req.Recipient.User, member
		dec = dialplan.Decision{Kind: dialplan.Extension, Extension: callee}
	} else {
		var ok bool
		user, ok = b.o.Auth.Authenticate(req, tx, true)
		if !ok {
			return
		}
		if user != from.Address.User {
			b.log.Info("INVITE refused: From is not the authenticated user", "user", user, "from", from.Address.User)
			respond(tx, req, 403, "Forbidden", b.log)
			return
		}
		callee = req.Recipient.User
		if b.o.Dialplan != nil {
			dec = b.o.Dialplan().Decide(callee)
		}
	}
	out := dec.Kind == dialplan.Outbound || dec.Kind == dialplan.Emergency
	if err := tx.Respond(sip.NewResponseFromRequest(req, 100, "Trying", nil)); err != nil {
		b.log.Debug("sending 100 Trying", "err", err)
	}

	name := from.DisplayName
	if name == "" && inTrunk == "" {
		if ext, ok := b.o.Directory.Extension(user); ok {
			name = ext.Name
		}
	}
	c := &call{
		b:    b,
		done: make(chan struct{}),
		acks: map[ackKey]chan struct{}{},
		st: CallState{
			ID: cid.Value(), Attempt: 1, Attempts: 1, Caller: user, CallerName: name, Callee: callee,
			State: StateRinging, Start: b.o.Now(), Trunk: inTrunk, Site: fromSite,
		},
	}
	a, err := uasDialog(req, sip.GenerateTagN(16))
	if err != nil {
		b.log.Info("INVITE refused", "call", c.st.ID, "err", err)
		respond(tx, req, 400, "Bad Request", b.log)
		return
	}
	c.legs[LegA] = &LegState{Dialog: a, Role: ByCaller, Number: user, Name: name, SDP: req.Body(), Trunk: inTrunk}
	c.inviteSeq = cs.SeqNo
	if hasOption(req, "Require", "100rel") {
		c.rel = newReliable(c, tx, req)
	}
	log := b.log.With("call", c.st.ID, "caller", user, "callee", callee)
	if inTrunk != "" {
		log = log.With("trunk", inTrunk)
	}
	if fromSite != "" {
		log = log.With("forwarded_by", fromSite)
	}

	fail := func(code int, reason string, hdrs ...sip.Header) {
		c.respondA(tx, req, code, reason, nil, hdrs...)
		c.end(disposition(code), code, "")
	}
	if dec.Kind == dialplan.Incomplete {
		log.Info("the number is incomplete")
		fail(484, "Address Incomplete")
		return
	}
	if inTrunk != "" && dec.Kind != dialplan.Extension {
		log.Info("no extension for the called number of a trunk call")
		fail(404, "Not Found")
		return
	}
	var bindings []location.Binding
	calleeCalls := 1 // calls the callee may be in at once (call waiting: 2)
	if !out {
		ext, ok := b.o.Directory.Extension(callee)
		if !ok || callee == "" {
			log.Info("call to an unknown number")
			fail(404, "Not Found")
			return
		}
		calleeCalls = ext.Calls()
		bindings = b.o.Locator.Lookup(callee)
		if fromSite != "" {
			bindings = ownBindings(bindings)
		}
		if len(bindings) == 0 {
			log.Info("callee not registered")
			if b.divert(req, tx, c, divertUnavailable, fromSite) {
				return
			}
			fail(480, "Temporarily Unavailable")
			return
		}
	}

	b.mu.Lock()
	switch {
	case b.calls[c.st.ID] != nil:
		b.mu.Unlock()
		log.Info("a second INVITE for a call in progress")
		respond(tx, req, 482, "Loop Detected", b.log)
		return
	case !out && b.active[callee] >= calleeCalls:
		b.mu.Unlock()
		log.Info("callee is in a call", "calls", b.active[callee])
		if b.divert(req, tx, c, divertBusy, fromSite) {
			return
		}
		fail(486, "Busy Here")
		return
	case inTrunk != "" && !b.seize(inTrunk):
		// Last: a channel taken here belongs to the call from now on.
		b.mu.Unlock()
		log.Info("every channel of the trunk is in use: inbound call refused")
		fail(503, "Service Unavailable", reasonHeader(causeNoChannel))
		return
	}
	// The ring context exists before the call is listed, so that a
	// shutdown always finds a ringing call cancellable.
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	b.calls[c.st.ID] = c
	b.legs[c.st.ID] = c
	if inTrunk == "" {
		b.active[user]++
	} else {
		b.trunkLegs.Store(a.CallID, inTrunk)
	}
	if !out {
		b.active[callee]++
	}
	c.mu.Lock()
	c.registered = true
	c.ringCancel = cancel
	c.legs[LegB] = &LegState{Role: ByCallee, Number: callee}
	if out {
		c.legs[LegB].Number = dec.Number
		c.st.Emergency = dec.Kind == dialplan.Emergency
	}
	c.mu.Unlock()
	b.mu.Unlock()

	m, err := b.o.Media.Open(c.st.ID)
	if err != nil {
		log.Error("opening a media session", "err", err)
		fail(503, "Service Unavailable")
		return
	}
	c.mu.Lock()
	c.media = m
	c.mu.Unlock()
	var offer []byte
	if len(req.Body()) == 0 {
		// Late offer: the callee gets ours; the caller gets the callee's
		// terms in the 200 and answers in its ACK (serveAck).
		c.mu.Lock()
		c.lateOffer = true
		c.mu.Unlock()
		offer, err = m.LateOffer(LegA)
	} else {
		offer, err = m.Rewrite(LegA, req.Body())
	}
	if err != nil {
		log.Info("caller's SDP refused", "err", err)
		fail(488, "Not Acceptable Here")
		return
	}

	if !tx.OnCancel(func(*sip.Request) { cancel(errCallerCancel) }) {
		cancel(errCallerCancel)
	}
	go func() {
		select {
		case <-tx.Done():
			cancel(errCallerGone)
		case <-ctx.Done():
		}
	}()

	early := func(res *sip.Response) {
		body := res.Body()
		c.mu.Lock()
		late := c.lateOffer
		c.mu.Unlock()
		if len(body) > 0 && !(late && c.rel != nil) {
			// With a late offer, SDP in a reliable 183 would be an offer
			// answered in the PRACK; the caller gets plain ringing.
			out, err := m.Rewrite(LegB, body)
			if err == nil {
				c.provisional(tx, req, res.StatusCode, res.Reason, out)
				return
			}
			log.Info("early media SDP refused", "err", err)
		}
		c.provisional(tx, req, 180, "Ringing", nil)
	}
	var r ringResult
	if out {
		r = b.dialOut(ctx, outSpec{dec: dec, fromNumber: user, fromName: name, offer: offer, early: early, log: log,
			tried: func(trunk string) {
				c.mu.Lock()
				c.st.Trunk = trunk
				c.mu.Unlock()
			}})
		if r.winner != nil {
			c.mu.Lock()
			c.legs[LegB].Trunk = r.trunk
			c.mu.Unlock()
		}
	} else {
		ringFor, ok := b.divertible(callee, fromSite)
		if !ok {
			ringFor = 0 // no mailbox: the ring timeout
		}
		r = b.ring(ctx, ringSpec{
			callee: callee, fromNumber: user, fromName: name,
			bindings: bindings, offer: offer, early: early, log: log,
			timeout: ringFor,
		})
	}
	if r.site != "" {
		c.mu.Lock()
		c.st.Site = r.site
		c.mu.Unlock()
	}
	if r.winner == nil {
		switch cause := context.Cause(ctx); {
		case errors.Is(cause, errCallerCancel), errors.Is(cause, errCallerGone):
			log.Info("caller hung up before answer")
			c.end(cdr.Cancelled, 487, "")
		case errors.Is(cause, errShutdown):
			fail(503, "Service Unavailable")
		case errors.Is(cause, errPreempted):
			c.respondA(tx, req, 503, "Service Unavailable", nil, preemptionReason(inTrunk != ""))
			c.end(cdr.Failed, 503, ByPreemption)
		case errors.Is(r.cause, errRingTimeout):
			log.Info("no answer")
			if !out && b.divertAfter(req, tx, c, divertNoAnswer, fromSite) {
				return
			}
			fail(480, "Temporarily Unavailable")
		default:
			log.Info("callee refused", "code", r.code)
			if why, ok := divertCode(r.code); ok && !out && b.divertAfter(req, tx, c, why, fromSite) {
				return
			}
			if h := reasonHeader(r.q850); h != nil {
				fail(r.code, r.reason, h)
			} else {
				fail(r.code, r.reason)
			}
		}
		return
	}
	b.connect(ctx, c, tx, req, r, log)
}

// connect completes an answered call: the winning fork becomes leg B, the
// caller gets 200 with the relay's SDP, and we wait for its ACK.
func (b *B2BUA) connect(ctx context.Context, c *call, tx sip.ServerTransaction, req *sip.Request, r ringResult, log *slog.Logger) {
	f := r.winner
	c.mu.Lock()
	lb := c.legs[LegB]
	lb.Dialog = f.d
	lb.SDP = r.answer.Body()
	m := c.media
	c.mu.Unlock()
	b.bindLeg(f.d.CallID, c)

	if cause := context.Cause(ctx); errors.Is(cause, errCallerCancel) || errors.Is(cause, errCallerGone) {
		log.Info("caller cancelled as the callee answered")
		c.end(cdr.Cancelled, 487, "", LegB)
		return
	}
	if errors.Is(context.Cause(ctx), errPreempted) {
		// Cleared for an emergency call as the callee answered.
		c.respondA(tx, req, 503, "Service Unavailable", nil, preemptionReason(c.inTrunk() != ""))
		c.end(cdr.Failed, 503, ByPreemption, LegB)
		return
	}
	answer, err := m.Rewrite(LegB, r.answer.Body())
	if err != nil {
		log.Info("callee's SDP refused", "err", err)
		c.respondA(tx, req, 488, "Not Acceptable Here", nil)
		c.end(cdr.Failed, 488, "", LegB)
		return
	}
	c.mu.Lock()
	c.st.State = StateAnswered
	c.st.Answer = b.o.Now()
	c.ringCancel = nil
	seq := c.inviteSeq
	rel := c.rel
	c.mu.Unlock()
	if rel != nil {
		settle, cancel := context.WithTimeout(ctx, 64*sip.T1)
		rel.settle(settle)
		cancel()
	}
	ack := c.expectAck(c.st.ID, seq)
	res := c.responseA(req, 200, "OK", answer)
	reliable := sip.IsReliable(req.Transport())
	if !c.sendOK(context.Background(), tx, res, ack, reliable) {
		select {
		case <-c.done:
			return
		default:
		}
		log.Warn("the caller never acknowledged the answer; hanging up")
		c.end(cdr.Answered, 200, BySystem, LegA, LegB)
		return
	}
	c.persist()
	log.Info("call answered")
}

// responseA builds a response on the caller's leg, with our tag and, for
// 1xx and 2xx, our Contact.
func (c *call) responseA(req *sip.Request, code int, reason string, body []byte) *sip.Response {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	c.mu.Lock()
	tag := c.legs[LegA].Dialog.LocalTag
	c.mu.Unlock()
	if to := res.To(); to != nil && code != 100 {
		to.Params.Add("tag", tag)
	}
	if code > 100 && code < 300 {
		res.AppendHeader(&sip.ContactHeader{Address: c.b.contact(req.Transport())})
		res.AppendHeader(sip.NewHeader("Allow", allow))
	}
	if body != nil {
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	res.SetBody(body)
	return res
}

// provisional sends a 180/183 to the caller: reliably when its INVITE
// requires 100rel.
func (c *call) provisional(tx sip.ServerTransaction, req *sip.Request, code int, reason string, body []byte) {
	if c.rel == nil {
		c.respondA(tx, req, code, reason, body)
		return
	}
	c.rel.send(c.responseA(req, code, reason, body))
}

func (c *call) respondA(tx sip.ServerTransaction, req *sip.Request, code int, reason string, body []byte, hdrs ...sip.Header) {
	res := c.responseA(req, code, reason, body)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if err := tx.Respond(res); err != nil {
		c.b.log.Debug("responding to the caller", "call", c.st.ID, "code", code, "err", err)
	}
}

// ringSpec says whom to ring on whose behalf.
type ringSpec struct {
	callee     string
	fromNumber string
	fromName   string
	bindings   []location.Binding
	offer      []byte
	// early relays a 180/183 to the party waiting; nil to drop them.
	early func(*sip.Response)
	log   *slog.Logger
	// timeout, if set, replaces Options.RingTimeout (the mailbox's time).
	timeout time.Duration
}

type ringResult struct {
	winner *fork
	answer *sip.Response
	code   int
	reason string
	cause  error
	// trunk is the trunk of an outbound call's winner (which holds one
	// of its channels), or the trunk tried last when none answered.
	trunk string
	// q850 is the Q.850 cause of a failure, when known: sent in a Reason
	// header with the code (causeNoChannel: every channel was busy).
	q850 int
	// site is the site member the call was forwarded to: the winner's
	// (empty when it was rung directly), or when none answered, the
	// first one tried.
	site string
}

// fork is one INVITE to one device of the callee.
type fork struct {
	owner *B2BUA
	inv   *sip.Request
	tx    sip.ClientTransaction
	d     Dialog

	mu          sync.Mutex
	provisional bool
	final       bool // a final response arrived: nothing left to CANCEL
	cancelWant  bool
	cancelSent  bool
	// cancelReason, if set, is the Reason header of the CANCEL.
	cancelReason sip.Header
	// racked is the last RSeq acknowledged with PRACK, by the To tag of
	// the early dialog; only run uses it.
	racked map[string]uint32
	// site is the site member the INVITE was forwarded to (site.go).
	site string
	// fallback names, in siteFallback.behind, the phones to ring
	// directly should this fork stay silent or fail: the site member's
	// (site), or the phone behind the twin's forwarder (forwarder.go).
	fallback string
}

type forkEvent struct {
	f   *fork
	res *sip.Response
}

// ring sends the offer to every binding in parallel and returns the first
// 2xx, or the best final response (RFC 3261 §16.7) when nobody answered,
// or the ring timeout / ctx cause. Forks that are still ringing are
// cancelled; a later 2xx is acknowledged and hung up.
func (b *B2BUA) ring(ctx context.Context, s ringSpec) ringResult {
	events := make(chan forkEvent, 8)
	var forks []*fork
	var codes []int
	var res ringResult
	routes, behind := b.siteRoutes(s.bindings, s.callee)
	behind = b.forwarderFallbacks(routes, behind)
	fb := newSiteFallback(behind)
	defer fb.stop()
	for _, bd := range routes {
		f, err := b.startFork(s, bd)
		if err != nil {
			s.log.Info("cannot ring a device", "contact", bd.Contact, "err", err)
			codes = append(codes, 480)
			if k := b.forwarderKey(bd); k != "" {
				// The forwarder cannot even be sent to: the phone directly.
				more := b.direct(s, fb, &fork{fallback: k}, events)
				forks = append(forks, more...)
			}
			continue
		}
		if k := b.forwarderKey(bd); k != "" {
			f.fallback = k
		}
		forks = append(forks, f)
		if res.site == "" {
			res.site = f.site
		}
		go f.run(events)
	}
	if len(forks) == 0 {
		return ringResult{code: 480, reason: "Temporarily Unavailable"}
	}
	ringFor := b.o.RingTimeout
	if s.timeout > 0 {
		ringFor = min(ringFor, s.timeout)
	}
	timer := time.NewTimer(ringFor)
	defer timer.Stop()
	pending := len(forks)
	var reasons = map[int]string{}
loop:
	for pending > 0 {
		select {
		case ev := <-events:
			if ev.res == nil {
				pending--
				codes = append(codes, 408)
				more := b.direct(s, fb, ev.f, events)
				forks, pending = append(forks, more...), pending+len(more)
				continue
			}
			code := ev.res.StatusCode
			switch {
			case code < 200:
				if (code == 180 || code == 183) && s.early != nil {
					s.early(ev.res)
				}
			case code < 300:
				pending--
				ev.f.d.confirm(ev.res)
				res.winner, res.answer = ev.f, ev.res
				res.site = ev.f.site // empty: answered directly
				b.ackFork(ev.f, ev.res)
				break loop
			default:
				pending--
				if code < 400 {
					// We do not follow redirects; without its Contact a
					// 3xx means nothing to the caller.
					code = 480
				}
				codes = append(codes, code)
				reasons[code] = ev.res.Reason
				if code >= 600 {
					break loop
				}
				if siteFailed(ev.res) {
					more := b.direct(s, fb, ev.f, events)
					forks, pending = append(forks, more...), pending+len(more)
				}
			}
		case <-fb.expired():
			for _, f := range forks {
				if f.fallback != "" && !f.answered() {
					more := b.direct(s, fb, f, events)
					forks, pending = append(forks, more...), pending+len(more)
				}
			}
		case <-ctx.Done():
			res.cause = context.Cause(ctx)
			break loop
		case <-timer.C:
			res.cause = errRingTimeout
			break loop
		}
	}
	for _, f := range forks {
		if f != res.winner {
			b.cancelFork(f, cancelReason(res.cause, false))
		}
	}
	b.drain(events, pending)
	if res.winner == nil {
		res.code = bestFinal(codes)
		res.reason = reasons[res.code]
		if res.reason == "" {
			res.reason = reasonPhrase(res.code)
		}
	}
	return res
}

// startFork sends one INVITE.
func (b *B2BUA) startFork(s ringSpec, bd location.Binding) (*fork, error) {
	tp, peer, err := location.ParseSource(bd.Source)
	if err != nil {
		return nil, err
	}
	us := b.contact(tp)
	id, err := uuid.NewRandom()
	if err != nil {
		return nil, fmt.Errorf("making a Call-ID: %w", err)
	}
	f := &fork{owner: b, d: Dialog{
		CallID:       id.String(),
		LocalTag:     sip.GenerateTagN(16),
		LocalURI:     (&sip.Uri{Scheme: "sip", User: s.fromNumber, Host: us.Host}).String(),
		LocalName:    s.fromName,
		RemoteURI:    (&sip.Uri{Scheme: "sip", User: s.callee, Host: us.Host}).String(),
		RemoteTarget: bd.Contact,
		Transport:    tp,
		Peer:         peer,
		LocalSeq:     1,
	}}
	inv, err := f.d.buildRequest(sip.INVITE, 1, us)
	if err != nil {
		return nil, err
	}
	inv.AppendHeader(sip.NewHeader("Allow", allow))
	inv.AppendHeader(sip.NewHeader("Supported", "100rel"))
	inv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	inv.SetBody(s.offer)
	if bd.Holder == "" {
		moved, err := b.reconnect(inv)
		if err != nil {
			return nil, err
		}
		if moved {
			// The phone's connection is closed: its Contact, over a new
			// one, for this INVITE and the rest of the dialog.
			f.d.Transport, f.d.Peer = inv.Transport(), inv.Destination()
		}
	}
	if err := b.prepare(inv); err != nil {
		return nil, err
	}
	if bd.Holder != "" {
		// siteRoutes made bd the box that holds the callee's binding.
		f.site, f.fallback = bd.Holder, bd.Holder
		b.o.Site.Sign(inv)
	}
	f.inv = inv
	// The context bounds only opening a connection, should one be needed.
	ctx, cancel := context.WithTimeout(context.Background(), phoneflow.ConnectTimeout)
	defer cancel()
	tx, err := b.o.Client.TransactionRequest(ctx, inv, sipdo.Unchanged)
	if err != nil {
		return nil, fmt.Errorf("sending INVITE to %s: %w", inv.Destination(), err)
	}
	f.tx = tx
	return f, nil
}

// run passes the fork's responses on until its final one; exactly one
// terminal event (a final response or nil) is sent.
func (f *fork) run(events chan<- forkEvent) {
	for {
		select {
		case res := <-f.tx.Responses():
			if res.IsProvisional() && !f.prackFork(res) {
				continue // a repeat of a reliable response acknowledged already
			}
			if res.IsProvisional() {
				f.mu.Lock()
				f.provisional = true
				send := f.cancelWant && !f.final && !f.cancelSent
				f.cancelSent = f.cancelSent || send
				f.mu.Unlock()
				if send {
					f.owner.wg.Add(1)
					go f.sendCancel()
				}
			}
			if !res.IsProvisional() {
				// Mark before the event is seen, so the ring loop never
				// CANCELs a request that already has its final answer
				// (RFC 3261 §9.1).
				f.mu.Lock()
				f.final = true
				f.mu.Unlock()
				events <- forkEvent{f, res}
				return
			}
			events <- forkEvent{f, res}
		case <-f.tx.Done():
			events <- forkEvent{f, nil}
			return
		}
	}
}

// cancelFork CANCELs a fork that has not answered; per RFC 3261 §9.1 the
// CANCEL waits for a provisional response. reason, if set, is the
// CANCEL's Reason header.
func (b *B2BUA) cancelFork(f *fork, reason sip.Header) {
	f.mu.Lock()
	f.cancelWant = true
	if reason != nil {
		f.cancelReason = reason
	}
	send := f.provisional && !f.final && !f.cancelSent
	f.cancelSent = f.cancelSent || send
	f.mu.Unlock()
	if send {
		f.owner.wg.Add(1)
		go f.sendCancel()
	}
}

func (f *fork) sendCancel() {
	b := f.owner
	defer b.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 64*sip.T1)
	defer cancel()
	req := cancelFor(f.inv)
	f.mu.Lock()
	if f.cancelReason != nil {
		req.AppendHeader(f.cancelReason)
	}
	f.mu.Unlock()
	if _, err := b.do(ctx, req); err != nil {
		b.log.Debug("CANCEL of a fork", "err", err)
	}
}

// ackFork acknowledges a 2xx on a fork, and its retransmissions.
func (b *B2BUA) ackFork(f *fork, res *sip.Response) {
	seq := uint32(1)
	if cs := res.CSeq(); cs != nil {
		seq = cs.SeqNo
	}
	d := f.d
	send := func() {
		ack, err := d.ack(seq, b.contact(d.Transport), nil)
		if err != nil {
			b.log.Warn("building ACK", "err", err)
			return
		}
		if err := b.write(ack); err != nil {
			b.log.Info("ACK to callee", "err", err)
		}
	}
	send()
	f.tx.OnRetransmission(func(*sip.Response) { send() })
}

// drain handles, in the background, the forks still pending after a
// decision: a late 2xx is acknowledged and hung up at once.
func (b *B2BUA) drain(events <-chan forkEvent, pending int) {
	if pending == 0 {
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for pending > 0 {
			ev := <-events
			if ev.res == nil {
				pending--
				continue
			}
			if ev.res.IsProvisional() {
				continue
			}
			pending--
			if ev.res.IsSuccess() {
				ev.f.d.confirm(ev.res)
				b.ackFork(ev.f, ev.res)
				bye, err := ev.f.d.newRequest(sip.BYE, b.contact(ev.f.d.Transport))
				if err != nil {
					b.log.Warn("building BYE", "err", err)
					continue
				}
				b.sendAll([]*sip.Request{bye})
			}
		}
	}()
}

// bestFinal picks the response to forward when no fork answered (RFC 3261
// §16.7): a 6xx wins; 486 when every device was busy; otherwise the lowest
// class, preferring the first code received in it. 503 becomes 500 so the
// caller does not take the PBX for overloaded.
func bestFinal(codes []int) int {
	if len(codes) == 0 {
		return 480
	}
	allBusy := true
	lowest := 0
	for _, c := range codes {
		if c >= 600 {
			return c
		}
		if c != 486 {
			allBusy = false
		}
		if lowest == 0 || c/100 < lowest/100 || (c/100 == lowest/100 && lowest == 486 && c != 486) {
			lowest = c
		}
	}
	switch {
	case allBusy:
		return 486
	case lowest == 503:
		return 500
	case lowest < 300 || lowest >= 700:
		return 500
	}
	return lowest
}

// reasonPhrase is the reason phrase of code, "Status N" for a code
// without one.
func reasonPhrase(code int) string {
	if p := sipreason.Phrase(code); p != "" {
		return p
	}
	return fmt.Sprintf("Status %d", code)
}
