package b2bua

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/media"
	"github.com/twinpbx/twinpbx/pbx/sdp"
)

// sessionJoiner is a media session that can be joined with another (see
// media.Relay.Join); *media.Session is handled directly.
type sessionJoiner interface {
	JoinSession(id string, l Leg, with MediaSession, wl Leg) (MediaSession, error)
}

var errNoJoin = errors.New("the media sessions cannot be joined")

// joinMedia makes one session, named id, of leg l1 of m1 and leg l2 of m2:
// l1's party becomes the new session's leg A, l2's its leg B.
func joinMedia(id string, m1 MediaSession, l1 Leg, m2 MediaSession, l2 Leg) (MediaSession, error) {
	if s1, ok := m1.(*media.Session); ok {
		s2, ok := m2.(*media.Session)
		if !ok {
			return nil, errNoJoin
		}
		s, err := s1.Join(id, l1, s2, l2)
		if s == nil {
			return nil, err
		}
		return s, err
	}
	if j, ok := m1.(sessionJoiner); ok {
		return j.JoinSession(id, l1, m2, l2)
	}
	return nil, errNoJoin
}

// attendedTransfer handles a REFER whose Refer-To names, with Replaces,
// another call of the same phone (RFC 3891, RFC 5589 §7): the REFER's
// call c (the phone is on side) and the named call both end for the
// transferor, and the two parties left are joined in one call without a
// new INVITE: the relay connects the ports they already send to. A party
// that was put on hold (or whose codec the other does not take) gets one
// re-INVITE, offering the other's media, so that it talks again. In an
// SRTP call each party holds the transferor's keys, so both get a
// re-INVITE carrying the other's (rekey); parties whose protection
// differs (plain, SDES, DTLS) cannot be joined and the transfer fails
// with 488. The REFER has been answered 202; the outcome goes to the
// transferor by NOTIFY.
func (b *B2BUA) attendedTransfer(c *call, side Leg, rep replaces, log *slog.Logger) {
	code, reason, j := b.join(c, side, rep, log)
	if code != 200 {
		log.Info("attended transfer failed", "code", code)
		c.mu.Lock()
		gone := c.transfer != nil && c.transfer.gone
		c.transfer = nil
		ended := c.ended
		if !ended {
			c.st.State = StateAnswered
		}
		c.mu.Unlock()
		switch {
		case ended:
		case gone:
			c.end(cdr.Answered, 200, ByCaller, other(side))
		default:
			b.notify(c, side, code, reason, true)
		}
		return
	}
	// The transferor hears how it went on the REFER's dialog, then both
	// its legs are hung up.
	if !j.gone {
		b.notifyOn(c.st.ID, &j.referLeg, 200, "OK")
	}
	var byes []*sip.Request
	for i, d := range []*Dialog{&j.referLeg, &j.replacedLeg} {
		if i == 0 && j.gone {
			continue
		}
		if bye, err := d.newRequest(sip.BYE, b.contact(d.Transport)); err == nil {
			byes = append(byes, bye)
		}
	}
	b.sendAll(byes)
	c.mu.Lock()
	secure := sdp.SecurityOf(c.legs[LegA].SDP) != sdp.Plain
	c.mu.Unlock()
	if secure {
		// Each party holds the transferor's keys: both are given the
		// other's, which also takes them off hold.
		b.rekey(c, [2][]string{sdp.Keys(j.heldBy[LegA]), sdp.Keys(j.heldBy[LegB])}, log)
	} else {
		b.resume(c, j, log)
	}
	c.mu.Lock()
	c.busyOffer = false
	c.mu.Unlock()
	c.persist()
	log.Info("attended transfer done", "caller", j.caller, "callee", j.callee)
}

// joined is what join hands back: the transferor's two dialogs (to notify
// and hang up) and what resume needs.
type joined struct {
	referLeg, replacedLeg Dialog
	gone                  bool
	// heldBy[l] is the last SDP the transferor sent to the party now on
	// media leg l of the joined call.
	heldBy         [2][]byte
	caller, callee string
}

// join ends the transferor's part of call x (on side sx) and of the call
// rep names, and makes x the call between the two parties left. It returns
// 200 on success, else the code to report. On success x is left with
// busyOffer set, so that nothing crosses resume.
func (b *B2BUA) join(x *call, sx Leg, rep replaces, log *slog.Logger) (int, string, joined) {
	y, sy, err := b.findReplaced(rep)
	if err != nil {
		return 481, "Call/Transaction Does Not Exist", joined{}
	}
	if y == x {
		return 400, "Bad Request", joined{}
	}
	first, second := x, y
	if y.st.ID < x.st.ID {
		first, second = y, x
	}
	first.mu.Lock()
	second.mu.Lock()
	unlock := func() {
		second.mu.Unlock()
		first.mu.Unlock()
	}
	switch {
	case x.ended || x.transfer == nil:
		unlock()
		return 487, "Request Terminated", joined{}
	case y.ended:
		unlock()
		return 481, "Call/Transaction Does Not Exist", joined{}
	case y.st.State != StateAnswered || y.busyOffer || y.transfer != nil:
		unlock()
		return 491, "Request Pending", joined{}
	}
	ax, ay := x.legs[sx], y.legs[sy]
	px, py := x.legs[other(sx)], y.legs[other(sy)]
	if px != nil && py != nil {
		if err := joinable(px.SDP, py.SDP); err != nil {
			// The relay passes media untouched: it cannot turn one
			// party's SRTP into the other's plain RTP.
			unlock()
			log.Info("attended transfer refused", "replaced", y.st.ID, "err", err)
			return 488, "Not Acceptable Here", joined{}
		}
	}
	if ax.Number != ay.Number || ax.Trunk != "" || ay.Trunk != "" {
		unlock()
		log.Info("Replaces names a call of another party", "replaced", ay.Number)
		return 403, "Forbidden", joined{}
	}
	if px == nil || py == nil || px.Dialog.RemoteTag == "" || py.Dialog.RemoteTag == "" {
		unlock()
		return 481, "Call/Transaction Does Not Exist", joined{}
	}
	m, err := joinMedia(x.st.ID, x.media, other(sx), y.media, other(sy))
	if m == nil {
		unlock()
		log.Warn("joining the media of two calls", "err", err)
		return 500, "Server Internal Error", joined{}
	}
	if err != nil {
		log.Warn("joining the media of two calls", "err", err)
	}
	j := joined{
		referLeg: ax.Dialog, replacedLeg: ay.Dialog, gone: x.transfer.gone,
		heldBy: [2][]byte{ax.SDP, ay.SDP}, caller: px.Number, callee: py.Number,
	}
	recX := x.record(cdr.Answered, 200, ByTransfer)
	recY := y.record(cdr.Answered, 200, ByTransfer)
	y.ended, y.st.State, y.media = true, StateEnded, nil
	now := b.o.Now()
	px.Role, py.Role = ByCaller, ByCallee
	x.legs = [2]*LegState{LegA: px, LegB: py}
	x.media = m
	x.st.Attempts++
	x.st.Attempt = x.st.Attempts
	x.st.Caller, x.st.CallerName, x.st.Callee = px.Number, px.Name, py.Number
	x.st.Start, x.st.Answer = now, now
	x.st.Trunk = px.Trunk
	if x.st.Trunk == "" {
		x.st.Trunk = py.Trunk
	}
	x.st.State = StateAnswered
	x.transfer = nil
	x.busyOffer = true
	unlock()

	b.mu.Lock()
	if b.calls[y.st.ID] == y {
		delete(b.calls, y.st.ID)
	}
	b.legs[py.Dialog.CallID] = x
	if b.legs[ax.Dialog.CallID] == x {
		delete(b.legs, ax.Dialog.CallID)
	}
	if b.legs[ay.Dialog.CallID] == y {
		delete(b.legs, ay.Dialog.CallID)
	}
	// The transferor counted once in each call.
	b.release(ax.Number)
	b.release(ax.Number)
	b.mu.Unlock()

	y.unpersist()
	close(y.done)
	x.persist()
	b.writeCDR(recX)
	b.writeCDR(recY)
	return 200, "OK", j
}

// resume takes the joined parties off hold: a party the transferor held
// (or that holds itself), or whose codec the other did not offer, gets a
// re-INVITE offering the other party's media through the relay. Parties
// that already talk are left alone.
func (b *B2BUA) resume(c *call, j joined, log *slog.Logger) {
	c.mu.Lock()
	sdpA, sdpB := c.legs[LegA].SDP, c.legs[LegB].SDP
	c.mu.Unlock()
	heldA := onHold(j.heldBy[LegA]) || onHold(sdpA)
	heldB := onHold(j.heldBy[LegB]) || onHold(sdpB)
	if heldA || !codecsMatch(sdpA, sdpB) {
		b.reinvite(c, LegA, log)
	}
	if heldB {
		b.reinvite(c, LegB, log)
	}
}

// reinvite offers leg to the media of the other leg, sending both ways.
// It returns 200 when the leg's answer was taken, else the leg's final
// status (0 when there was none, or the answer was unusable).
func (b *B2BUA) reinvite(c *call, to Leg, log *slog.Logger) int {
	c.mu.Lock()
	m := c.media
	from := append([]byte(nil), c.legs[other(to)].SDP...)
	c.mu.Unlock()
	offer, err := m.Rewrite(other(to), sendRecv(from))
	if err != nil {
		log.Info("joined call: no offer of the other party's media", "leg", to, "err", err)
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 64*sip.T1)
	defer cancel()
	res, err := b.forward(ctx, c, to, sip.INVITE, offer, nil)
	if err != nil || !res.IsSuccess() {
		code := 0
		if res != nil {
			code = res.StatusCode
		}
		log.Info("joined call: re-INVITE offering the other party's media failed", "leg", to, "code", code, "err", err)
		return code
	}
	if _, err := m.Rewrite(to, res.Body()); err != nil {
		log.Info("joined call: the answer to the re-INVITE is unusable", "leg", to, "err", err)
		return 0
	}
	c.mu.Lock()
	c.legs[to].SDP = res.Body()
	c.mu.Unlock()
	return 200
}

// onHold reports whether the first audio stream of body does not send
// both ways (sendonly, recvonly, inactive or c=0.0.0.0).
func onHold(body []byte) bool {
	st, ok := audio(body)
	return ok && (st.Hold || st.Direction != sdp.SendRecv)
}

// codecsMatch reports whether each side's preferred audio format is one
// the other side listed: then what one sends, the other can decode.
// Dynamic payload types are compared by number only. Bodies without an
// audio stream match (there is nothing to re-negotiate).
func codecsMatch(x, y []byte) bool {
	sx, okx := audio(x)
	sy, oky := audio(y)
	if !okx || !oky {
		return okx == oky
	}
	return len(sx.PayloadTypes) > 0 && len(sy.PayloadTypes) > 0 &&
		slices.Contains(sy.PayloadTypes, sx.PayloadTypes[0]) && slices.Contains(sx.PayloadTypes, sy.PayloadTypes[0])
}

// audio returns the first active audio stream of body.
func audio(body []byte) (sdp.Stream, bool) {
	sts, err := sdp.Parse(body)
	if err != nil {
		return sdp.Stream{}, false
	}
	if i := sdp.FirstAudio(sts); i >= 0 {
		return sts[i], true
	}
	return sdp.Stream{}, false
}

// sendRecv turns every direction attribute of body into sendrecv.
func sendRecv(body []byte) []byte {
	s := string(body)
	for _, d := range []string{"a=sendonly", "a=recvonly", "a=inactive"} {
		s = strings.ReplaceAll(s, d, "a=sendrecv")
	}
	return []byte(s)
}

// notifyOn sends the final NOTIFY of a transfer on a dialog that is no
// longer part of a call.
func (b *B2BUA) notifyOn(id string, d *Dialog, code int, reason string) {
	req, err := d.newRequest(sip.NOTIFY, b.contact(d.Transport))
	if err != nil {
		b.log.Warn("building NOTIFY", "call", id, "err", err)
		return
	}
	req.AppendHeader(sip.NewHeader("Event", "refer"))
	req.AppendHeader(sip.NewHeader("Subscription-State", "terminated;reason=noresource"))
	req.AppendHeader(sip.NewHeader("Content-Type", "message/sipfrag;version=2.0"))
	req.SetBody(sipfrag(code, reason))
	ctx, cancel := context.WithTimeout(context.Background(), 64*sip.T1)
	defer cancel()
	res, err := b.do(ctx, req)
	switch {
	case err != nil:
		b.log.Info("NOTIFY to the transferor", "call", id, "err", err)
	case !res.IsSuccess():
		b.log.Info("NOTIFY refused by the transferor", "call", id, "code", res.StatusCode)
	}
}
