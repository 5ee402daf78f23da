package b2bua

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/cdr"
)

func hasLine(body []byte, line string) bool {
	return strings.Contains(string(body), line)
}

func TestBasicCall(t *testing.T) {
	tests := []struct {
		name     string
		hangupBy string
	}{
		{"caller hangs up", ByCaller},
		{"callee hangs up", ByCallee},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			alice := newPhone(t, e, "100", "answer")
			bob := newPhone(t, e, "200", "answer")
			e.loc.add("200", bob)

			oc := alice.dial("200", nil)
			res := oc.result()
			if res.StatusCode != 200 {
				t.Fatalf("call answered with %d", res.StatusCode)
			}
			// Media anchored both ways: the callee got the caller's SDP
			// through the relay, and the caller the callee's.
			inv := bob.wait(sip.INVITE, 1)
			if !hasLine(inv.Body(), "o=100 ") || !hasLine(inv.Body(), "a=relayed-from:A") {
				t.Errorf("callee got offer %q", inv.Body())
			}
			if !hasLine(res.Body(), "o=200 ") || !hasLine(res.Body(), "a=relayed-from:B") {
				t.Errorf("caller got answer %q", res.Body())
			}
			if got := inv.From().Address.User; got != "100" {
				t.Errorf("callee sees caller %q", got)
			}
			if got := inv.From().DisplayName; got != "Phone 100" {
				t.Errorf("callee sees caller name %q", got)
			}
			if inv.CallID().Value() == oc.d.CallID {
				t.Error("B-leg reuses the caller's Call-ID")
			}
			bob.wait(sip.ACK, 1)
			eventually(t, "call listed as answered", func() bool {
				cs := e.b.Calls()
				return len(cs) == 1 && cs[0].State == StateAnswered
			})

			var other *phone
			if tt.hangupBy == ByCaller {
				if r := alice.request(sip.BYE, nil); r.StatusCode != 200 {
					t.Fatalf("BYE answered %d", r.StatusCode)
				}
				other = bob
			} else {
				if r := bob.request(sip.BYE, nil); r.StatusCode != 200 {
					t.Fatalf("BYE answered %d", r.StatusCode)
				}
				other = alice
			}
			other.wait(sip.BYE, 1)
			recs := e.cdrs.wait(t, 1)
			r := recs[0]
			if r.Disp != cdr.Answered || r.SIPCode != 200 || r.HangupBy != tt.hangupBy ||
				r.Caller != "100" || r.CallerName != "Phone 100" || r.Callee != "200" ||
				r.Answer.IsZero() || r.End.Before(r.Answer) || r.Start.After(r.Answer) {
				t.Errorf("CDR %+v", r)
			}
			eventually(t, "media closed", func() bool { return e.media.sessions() == 0 })
			if n := len(e.b.Calls()); n != 0 {
				t.Errorf("%d calls left", n)
			}
		})
	}
}

func TestCallRefused(t *testing.T) {
	tests := []struct {
		name      string
		dial      string
		bobMode   string
		bobSDP    string
		offer     []byte
		wantCode  int
		wantDisp  cdr.Disposition
		wantBobs  int // INVITEs bob must have received
		wantByeTo int // BYEs bob must have received
	}{
		{name: "unknown number", dial: "999", bobMode: "answer", wantCode: 404, wantDisp: cdr.Failed},
		{name: "not registered", dial: "300", bobMode: "answer", wantCode: 480, wantDisp: cdr.NoAnswer},
		{name: "busy", dial: "200", bobMode: "486", wantCode: 486, wantDisp: cdr.Busy, wantBobs: 1},
		{name: "busy everywhere", dial: "200", bobMode: "600", wantCode: 600, wantDisp: cdr.Busy, wantBobs: 1},
		{name: "declined", dial: "200", bobMode: "603", wantCode: 603, wantDisp: cdr.Failed, wantBobs: 1},
		{name: "caller SDP refused", dial: "200", bobMode: "answer", offer: []byte("v=0\r\ns=bad\r\n"), wantCode: 488, wantDisp: cdr.Failed},
		{name: "callee SDP refused", dial: "200", bobMode: "answer", bobSDP: "v=0\r\ns=bad\r\n", wantCode: 488, wantDisp: cdr.Failed, wantBobs: 1, wantByeTo: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			alice := newPhone(t, e, "100", "answer")
			bob := newPhone(t, e, "200", tt.bobMode)
			if tt.bobSDP != "" {
				bob.setSDP(tt.bobSDP)
			}
			e.loc.add("200", bob)
			res := alice.dial(tt.dial, tt.offer).result()
			if res.StatusCode != tt.wantCode {
				t.Fatalf("caller got %d, want %d", res.StatusCode, tt.wantCode)
			}
			r := e.cdrs.wait(t, 1)[0]
			if r.Disp != tt.wantDisp || r.SIPCode != tt.wantCode || r.Callee != tt.dial || !r.Answer.IsZero() || r.HangupBy != "" {
				t.Errorf("CDR %+v", r)
			}
			if tt.wantByeTo > 0 {
				bob.wait(sip.BYE, tt.wantByeTo)
			}
			if n := bob.count(sip.INVITE); n != tt.wantBobs {
				t.Errorf("callee got %d INVITEs, want %d", n, tt.wantBobs)
			}
			eventually(t, "media closed", func() bool { return e.media.sessions() == 0 })
			if n := len(e.b.Calls()); n != 0 {
				t.Errorf("%d calls left", n)
			}
			// HangupAll waits for every goroutine the call started, CANCEL
			// senders included: after it, a CANCEL would have arrived.
			e.hangupAll()
			if n := bob.onWire(sip.CANCEL); n != 0 {
				t.Errorf("callee got %d CANCELs after its final answer (RFC 3261 §9.1 forbids)", n)
			}
		})
	}
}

func TestBusyInCall(t *testing.T) {
	e := newEnv(t)
	alice := newPhone(t, e, "100", "answer")
	bob := newPhone(t, e, "200", "answer")
	carol := newPhone(t, e, "300", "answer")
	e.loc.add("200", bob)
	if res := alice.dial("200", nil).result(); res.StatusCode != 200 {
		t.Fatalf("first call: %d", res.StatusCode)
	}
	if res := carol.dial("200", nil).result(); res.StatusCode != 486 {
		t.Fatalf("second call to a busy extension: %d, want 486", res.StatusCode)
	}
	if n := bob.count(sip.INVITE); n != 1 {
		t.Errorf("busy callee was rung %d times", n)
	}
	r := e.cdrs.wait(t, 1)[0]
	if r.Caller != "300" || r.Disp != cdr.Busy || r.SIPCode != 486 {
		t.Errorf("CDR %+v", r)
	}
	// A failed second call of a busy party does not free it.
	e.loc.add("100", alice)
	if res := alice.dial("999", nil).result(); res.StatusCode != 404 {
		t.Fatalf("call to an unknown number: %d", res.StatusCode)
	}
	if res := carol.dial("100", nil).result(); res.StatusCode != 486 {
		t.Fatalf("call to the busy caller: %d, want 486", res.StatusCode)
	}
	alice.request(sip.BYE, nil)
	e.cdrs.wait(t, 4)
	// Once free, the extension can be called again.
	if res := carol.dial("200", nil).result(); res.StatusCode != 200 {
		t.Fatalf("call after hang-up: %d", res.StatusCode)
	}
}

// TestCallWaiting: with call waiting (the default), a second call to an
// extension in a call rings its phone, which may take it; a third gets
// 486 without ringing; once a call ends, a new one rings again.
func TestCallWaiting(t *testing.T) {
	e := newEnv(t)
	alice := newPhone(t, e, "100", "answer")
	carol := newPhone(t, e, "300", "answer")
	dave := newPhone(t, e, "400", "answer")
	erin := newPhone(t, e, "500", "answer")
	e.loc.add("500", erin)
	if res := alice.dial("500", nil).result(); res.StatusCode != 200 {
		t.Fatalf("first call: %d", res.StatusCode)
	}
	if res := carol.dial("500", nil).result(); res.StatusCode != 200 {
		t.Fatalf("second call to an extension with call waiting: %d, want 200 (answered by the phone)", res.StatusCode)
	}
	if n := erin.count(sip.INVITE); n != 2 {
		t.Errorf("the phone with call waiting was rung %d times, want 2", n)
	}
	if res := dave.dial("500", nil).result(); res.StatusCode != 486 {
		t.Fatalf("third call: %d, want 486", res.StatusCode)
	}
	if n := erin.count(sip.INVITE); n != 2 {
		t.Errorf("the third call rang the phone (%d INVITEs)", n)
	}
	r := e.cdrs.wait(t, 1)[0]
	if r.Caller != "400" || r.Disp != cdr.Busy || r.SIPCode != 486 {
		t.Errorf("CDR of the third call %+v", r)
	}
	alice.request(sip.BYE, nil)
	e.cdrs.wait(t, 2)
	if res := dave.dial("500", nil).result(); res.StatusCode != 200 {
		t.Fatalf("a call while one call is in progress again: %d, want 200", res.StatusCode)
	}
}

// TestLateOffer: an INVITE without SDP. The callee gets the PBX's own
// offer, the caller gets the callee's terms in the 200 and answers in its
// ACK, which the relay learns from; the call then behaves as any other.
func TestLateOffer(t *testing.T) {
	e := newEnv(t)
	alice := newPhone(t, e, "100", "answer")
	bob := newPhone(t, e, "200", "answer")
	e.loc.add("200", bob)
	res := alice.dial("200", []byte{}).result()
	if res.StatusCode != 200 {
		t.Fatalf("late-offer call: %d, want 200", res.StatusCode)
	}
	inv := bob.wait(sip.INVITE, 1)
	if !strings.Contains(string(inv.Body()), "late offer of the PBX") {
		t.Errorf("the callee's INVITE carries %q, want the PBX's late offer", inv.Body())
	}
	if body := string(res.Body()); !strings.Contains(body, "a=relayed-from:B") {
		t.Errorf("the caller's 200 carries %q, want the callee's terms through the relay", body)
	}
	eventually(t, "the caller's answer from its ACK to reach the relay", func() bool {
		e.media.mu.Lock()
		defer e.media.mu.Unlock()
		return slices.Contains(e.media.answers, alice.sdp)
	})
	e.media.mu.Lock()
	if e.media.lateOffers != 1 {
		t.Errorf("%d late offers made, want 1", e.media.lateOffers)
	}
	e.media.mu.Unlock()
	if res := alice.request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("BYE: %d", res.StatusCode)
	}
	if r := e.cdrs.wait(t, 1)[0]; r.Disp != cdr.Answered {
		t.Errorf("CDR %+v", r)
	}
}

func TestCancelBeforeAnswer(t *testing.T) {
	e := newEnv(t)
	alice := newPhone(t, e, "100", "answer")
	bob := newPhone(t, e, "200", "ring")
	e.loc.add("200", bob)
	oc := alice.dial("200", nil)
	oc.waitProvisional(180)
	if res := oc.cancel(); res.StatusCode != 200 {
		t.Fatalf("CANCEL answered %d", res.StatusCode)
	}
	if res := oc.result(); res.StatusCode != 487 {
		t.Fatalf("INVITE ended with %d, want 487", res.StatusCode)
	}
	bob.wait(sip.CANCEL, 1)
	r := e.cdrs.wait(t, 1)[0]
	if r.Disp != cdr.Cancelled || r.SIPCode != 487 {
		t.Errorf("CDR %+v", r)
	}
	eventually(t, "media closed", func() bool { return e.media.sessions() == 0 })
}

func TestRingTimeout(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.RingTimeout = 300 * time.Millisecond })
	alice := newPhone(t, e, "100", "answer")
	bob := newPhone(t, e, "200", "ring")
	e.loc.add("200", bob)
	if res := alice.dial("200", nil).result(); res.StatusCode != 480 {
		t.Fatalf("unanswered call ended with %d, want 480", res.StatusCode)
	}
	bob.wait(sip.CANCEL, 1)
	r := e.cdrs.wait(t, 1)[0]
	if r.Disp != cdr.NoAnswer || r.SIPCode != 480 {
		t.Errorf("CDR %+v", r)
	}
}

func TestForking(t *testing.T) {
	e := newEnv(t)
	alice := newPhone(t, e, "100", "answer")
	desk := newPhone(t, e, "200", "ring")
	mobile := newPhone(t, e, "200", "answer")
	e.loc.add("200", desk)
	e.loc.add("200", mobile)
	res := alice.dial("200", nil).result()
	if res.StatusCode != 200 {
		t.Fatalf("forked call: %d", res.StatusCode)
	}
	desk.wait(sip.CANCEL, 1)
	mobile.wait(sip.ACK, 1)
	if a, b := desk.wait(sip.INVITE, 1), mobile.wait(sip.INVITE, 1); a.CallID().Value() == b.CallID().Value() {
		t.Error("forks share a Call-ID")
	}
	alice.request(sip.BYE, nil)
	mobile.wait(sip.BYE, 1)
	if r := e.cdrs.wait(t, 1)[0]; r.Disp != cdr.Answered {
		t.Errorf("CDR %+v", r)
	}
	if n := desk.count(sip.BYE); n != 0 {
		t.Errorf("cancelled fork got %d BYEs", n)
	}
}

// answered sets up an answered call from alice (100) to bob (200).
func answered(t *testing.T, e *env) (alice, bob *phone) {
	t.Helper()
	alice = newPhone(t, e, "100", "answer")
	bob = newPhone(t, e, "200", "answer")
	e.loc.add("200", bob)
	if res := alice.dial("200", nil).result(); res.StatusCode != 200 {
		t.Fatalf("call: %d", res.StatusCode)
	}
	bob.wait(sip.ACK, 1)
	return alice, bob
}

func TestReoffer(t *testing.T) {
	tests := []struct {
		name   string
		method sip.RequestMethod
		fromA  bool
	}{
		{"hold from caller", sip.INVITE, true},
		{"hold from callee", sip.INVITE, false},
		{"update from caller", sip.UPDATE, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			alice, bob := answered(t, e)
			from, to, fromLeg, toLeg := alice, bob, "A", "B"
			if !tt.fromA {
				from, to, fromLeg, toLeg = bob, alice, "B", "A"
			}
			for i, dir := range []string{"sendonly", "sendrecv"} {
				offer := []byte(from.sdp + "a=" + dir + "\r\n")
				res := from.request(tt.method, offer)
				if res.StatusCode != 200 {
					t.Fatalf("%s answered %d", dir, res.StatusCode)
				}
				base := 1
				if tt.method == sip.INVITE && tt.fromA {
					base = 2 // the callee also got the initial INVITE
				}
				got := to.wait(tt.method, base+i)
				if !hasLine(got.Body(), "a="+dir) || !hasLine(got.Body(), "a=relayed-from:"+fromLeg) {
					t.Errorf("other leg got %q", got.Body())
				}
				if !hasLine(res.Body(), "a=reanswer") || !hasLine(res.Body(), "a=relayed-from:"+toLeg) {
					t.Errorf("answer %q", res.Body())
				}
			}
			if tt.method == sip.INVITE {
				// Our own re-INVITEs are acknowledged.
				want := 2
				if to == bob {
					want = 3 // plus the ACK of the initial INVITE
				}
				to.wait(sip.ACK, want)
			}
			if n := len(e.b.Calls()); n != 1 {
				t.Errorf("%d calls", n)
			}
		})
	}
}

func TestReofferBadSDP(t *testing.T) {
	e := newEnv(t)
	alice, bob := answered(t, e)
	if res := alice.request(sip.INVITE, []byte("v=0\r\ns=bad\r\n")); res.StatusCode != 488 {
		t.Fatalf("bad re-INVITE answered %d", res.StatusCode)
	}
	if n := bob.count(sip.INVITE); n != 1 {
		t.Errorf("callee got %d INVITEs", n)
	}
	// The call survives.
	if res := alice.request(sip.INVITE, []byte(alice.sdp)); res.StatusCode != 200 {
		t.Fatalf("good re-INVITE answered %d", res.StatusCode)
	}
}

func TestPassThrough(t *testing.T) {
	e := newEnv(t)
	alice, bob := answered(t, e)
	res := alice.request(sip.INFO, []byte("Signal=5\r\nDuration=160\r\n"), sip.NewHeader("Content-Type", "application/dtmf-relay"))
	if res.StatusCode != 200 {
		t.Fatalf("INFO answered %d", res.StatusCode)
	}
	info := bob.wait(sip.INFO, 1)
	if !hasLine(info.Body(), "Signal=5") || info.GetHeader("Content-Type").Value() != "application/dtmf-relay" {
		t.Errorf("callee got INFO %q", info.String())
	}
}

func TestUnknownDialog(t *testing.T) {
	e := newEnv(t)
	alice, _ := answered(t, e)
	for _, m := range []sip.RequestMethod{sip.BYE, sip.INVITE, sip.INFO, sip.REFER} {
		alice.mu.Lock()
		d := *alice.d
		alice.d.CallID = "no-such-call"
		alice.mu.Unlock()
		res := alice.request(m, []byte(alice.sdp), sip.NewHeader("Refer-To", "<sip:300@127.0.0.1>"))
		alice.mu.Lock()
		d.LocalSeq = alice.d.LocalSeq
		*alice.d = d
		alice.mu.Unlock()
		if res.StatusCode != 481 {
			t.Errorf("%s in an unknown dialog answered %d, want 481", m, res.StatusCode)
		}
	}
	if n := len(e.b.Calls()); n != 1 {
		t.Errorf("%d calls", n)
	}
}

func TestAuthChallenge(t *testing.T) {
	fa := &fakeAuth{challenge: true}
	e := newEnv(t, func(o *Options) { o.Auth = fa })
	alice, _ := answered(t, e)
	fa.mu.Lock()
	asked := fa.asked
	fa.mu.Unlock()
	if asked != 1 {
		t.Errorf("challenged %d times", asked)
	}
	alice.request(sip.BYE, nil)
	e.cdrs.wait(t, 1)
}

func TestForbiddenFrom(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Auth = authAs("300") })
	alice := newPhone(t, e, "100", "answer")
	bob := newPhone(t, e, "200", "answer")
	e.loc.add("200", bob)
	if res := alice.dial("200", nil).result(); res.StatusCode != 403 {
		t.Fatalf("spoofed From answered %d, want 403", res.StatusCode)
	}
	if n := bob.count(sip.INVITE); n != 0 {
		t.Errorf("callee rung %d times", n)
	}
}

type authAs string

func (a authAs) Authenticate(*sip.Request, sip.ServerTransaction, bool) (string, bool) {
	return string(a), true
}

func TestNoAckTearsDown(t *testing.T) {
	e := newEnv(t)
	alice := newPhone(t, e, "100", "answer")
	bob := newPhone(t, e, "200", "answer")
	e.loc.add("200", bob)
	oc := alice.dial("200", nil)
	// Swallow the 200 without ACK: take over the transaction's responses.
	oc.tx.Terminate()
	bob.wait(sip.BYE, 1)
	r := e.cdrs.wait(t, 1)[0]
	if r.HangupBy != BySystem || r.Disp != cdr.Answered {
		t.Errorf("CDR %+v", r)
	}
}

func TestHangupAll(t *testing.T) {
	e := newEnv(t)
	alice, bob := answered(t, e)
	carol := newPhone(t, e, "300", "answer")
	dave := newPhone(t, e, "400", "ring")
	e.loc.add("400", dave)
	oc := carol.dial("400", nil)
	oc.waitProvisional(180)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	e.b.HangupAll(ctx)
	alice.wait(sip.BYE, 1)
	bob.wait(sip.BYE, 1)
	dave.wait(sip.CANCEL, 1)
	if res := oc.result(); res.StatusCode != 503 {
		t.Errorf("ringing call ended with %d", res.StatusCode)
	}
	recs := e.cdrs.wait(t, 2)
	if len(recs) != 2 {
		t.Errorf("%d CDRs", len(recs))
	}
	if n := len(e.b.Calls()); n != 0 {
		t.Errorf("%d calls left", n)
	}
}

func TestBlindTransfer(t *testing.T) {
	tests := []struct {
		name       string
		transferor string // "caller" or "callee"
		carolMode  string
		wantNotify string
	}{
		{"callee transfers", "callee", "answer", "SIP/2.0 200 OK"},
		{"caller transfers", "caller", "answer", "SIP/2.0 200 OK"},
		{"target busy", "callee", "486", "SIP/2.0 486"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			alice, bob := answered(t, e)
			carol := newPhone(t, e, "300", tt.carolMode)
			e.loc.add("300", carol)
			transferor, transferee := bob, alice
			if tt.transferor == "caller" {
				transferor, transferee = alice, bob
			}
			res := transferor.request(sip.REFER, nil, sip.NewHeader("Refer-To", "<sip:300@127.0.0.1>"))
			if res.StatusCode != 202 {
				t.Fatalf("REFER answered %d", res.StatusCode)
			}
			n1 := transferor.wait(sip.NOTIFY, 1)
			if !hasLine(n1.Body(), "SIP/2.0 100 Trying") || n1.GetHeader("Event").Value() != "refer" {
				t.Errorf("first NOTIFY %q", n1.String())
			}
			// 180 Ringing when the target rings (a phone that answers at
			// once may have its 180 folded into the 200), then the outcome.
			ns := transferor.notifies(t)
			if last := ns[len(ns)-1]; !hasLine(last.Body(), tt.wantNotify) {
				t.Fatalf("final NOTIFY %q", last.String())
			}
			if tt.carolMode != "answer" && (len(ns) != 3 || !hasLine(ns[1].Body(), "SIP/2.0 180 Ringing")) {
				t.Errorf("%d NOTIFYs, want 100, 180 and the outcome", len(ns))
			}
			if tt.carolMode != "answer" {
				// The original call goes on.
				recs := e.cdrs.wait(t, 1)
				if r := recs[0]; r.Callee != "300" || r.Disp != cdr.Busy {
					t.Errorf("failed transfer CDR %+v", r)
				}
				if res := transferor.request(sip.BYE, nil); res.StatusCode != 200 {
					t.Fatalf("BYE after failed transfer: %d", res.StatusCode)
				}
				transferee.wait(sip.BYE, 1)
				return
			}
			inv := carol.wait(sip.INVITE, 1)
			// The target is called on behalf of the transferee, with the
			// transferee's media through the relay.
			if u := inv.From().Address.User; u != transferee.number {
				t.Errorf("target sees caller %q", u)
			}
			if !hasLine(inv.Body(), "o="+transferee.number+" ") {
				t.Errorf("target got offer %q", inv.Body())
			}
			transferor.wait(sip.BYE, 1)
			recs := e.cdrs.wait(t, 1)
			if r := recs[0]; r.Disp != cdr.Answered || r.HangupBy != ByTransfer || r.Callee != "200" {
				t.Errorf("first CDR %+v", r)
			}
			// The transferee and the target talk; either can hang up.
			if res := carol.request(sip.BYE, nil); res.StatusCode != 200 {
				t.Fatalf("target's BYE: %d", res.StatusCode)
			}
			transferee.wait(sip.BYE, 1)
			recs = e.cdrs.wait(t, 2)
			if r := recs[1]; r.Disp != cdr.Answered || r.Caller != transferee.number || r.Callee != "300" || r.HangupBy != ByCallee || r.ID == recs[0].ID {
				t.Errorf("transferred call CDR %+v", r)
			}
			eventually(t, "media closed", func() bool { return e.media.sessions() == 0 })
			if n := len(e.b.Calls()); n != 0 {
				t.Errorf("%d calls left", n)
			}
		})
	}
}

func TestTransferorLeavesEarly(t *testing.T) {
	e := newEnv(t)
	alice, bob := answered(t, e)
	carol := newPhone(t, e, "300", "ring")
	e.loc.add("300", carol)
	if res := bob.request(sip.REFER, nil, sip.NewHeader("Refer-To", "sip:300@127.0.0.1")); res.StatusCode != 202 {
		t.Fatalf("REFER answered %d", res.StatusCode)
	}
	carol.wait(sip.INVITE, 1)
	if res := bob.request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("transferor's BYE: %d", res.StatusCode)
	}
	if n := alice.count(sip.BYE); n != 0 {
		t.Fatal("transferee hung up when the transferor left")
	}
	// The transferee gives up while the target rings.
	alice.request(sip.BYE, nil)
	carol.wait(sip.CANCEL, 1)
	recs := e.cdrs.wait(t, 2)
	byCallee := map[string]cdr.Record{}
	for _, r := range recs {
		byCallee[r.Callee] = r
	}
	if r := byCallee["300"]; r.Disp != cdr.Cancelled {
		t.Errorf("transfer attempt CDR %+v", r)
	}
	if r := byCallee["200"]; r.Disp != cdr.Answered || r.HangupBy != ByCaller {
		t.Errorf("call CDR %+v", r)
	}
	if n := bob.count(sip.BYE); n != 0 {
		t.Errorf("the departed transferor got %d BYEs", n)
	}
	eventually(t, "media closed", func() bool { return e.media.sessions() == 0 })
}

// TestMalformedRequests sends hand-written requests on a raw socket: each
// gets a SIP error, and the PBX keeps working.
func TestMalformedRequests(t *testing.T) {
	e := newEnv(t)
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	me := conn.LocalAddr().String()
	tests := []struct {
		name    string
		method  string
		toTag   string
		contact bool
		want    int
	}{
		{"INVITE without Contact", "INVITE", "", false, 400},
		{"BYE outside a dialog", "BYE", ";tag=x", true, 481},
		{"CANCEL of nothing", "CANCEL", "", true, 481},
		{"NOTIFY outside a dialog", "NOTIFY", "", true, 481},
		{"REFER outside a dialog", "REFER", "", true, 481},
		{"MESSAGE outside a dialog", "MESSAGE", "", true, 405},
		{"re-INVITE of no call", "INVITE", ";tag=x", true, 481},
		{"UPDATE of no call", "UPDATE", ";tag=x", true, 481},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			fmt.Fprintf(&b, "%s sip:200@%s SIP/2.0\r\n", tt.method, e.addr)
			fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;branch=z9hG4bK-raw%d\r\n", me, i)
			fmt.Fprintf(&b, "From: <sip:100@127.0.0.1>;tag=raw%d\r\nTo: <sip:200@127.0.0.1>%s\r\n", i, tt.toTag)
			fmt.Fprintf(&b, "Call-ID: raw-%d\r\nCSeq: 1 %s\r\nMax-Forwards: 70\r\n", i, tt.method)
			if tt.contact {
				fmt.Fprintf(&b, "Contact: <sip:100@%s>\r\n", me)
			}
			b.WriteString("Content-Length: 0\r\n\r\n")
			dst, _ := net.ResolveUDPAddr("udp", e.addr)
			if _, err := conn.WriteTo([]byte(b.String()), dst); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4096)
			for {
				_ = conn.SetReadDeadline(time.Now().Add(waitFor))
				n, _, err := conn.ReadFrom(buf)
				if err != nil {
					t.Fatalf("no answer: %v", err)
				}
				line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
				if strings.HasPrefix(line, "SIP/2.0 100") {
					continue
				}
				if want := fmt.Sprintf("SIP/2.0 %d ", tt.want); !strings.HasPrefix(line, want) {
					t.Fatalf("got %q, want %q", line, want)
				}
				return
			}
		})
	}
	if e.media.sessions() != 0 || len(e.b.Calls()) != 0 {
		t.Error("malformed requests left state behind")
	}
	// Still serving.
	alice, _ := answered(t, e)
	alice.request(sip.BYE, nil)
}

func TestEarlyMedia(t *testing.T) {
	e := newEnv(t)
	alice := newPhone(t, e, "100", "answer")
	bob := newPhone(t, e, "200", "early")
	e.loc.add("200", bob)
	oc := alice.dial("200", nil)
	res := oc.waitProvisional(183)
	if !hasLine(res.Body(), "o=200 ") || !hasLine(res.Body(), "a=relayed-from:B") {
		t.Errorf("early media SDP %q", res.Body())
	}
	oc.cancel()
	if res := oc.result(); res.StatusCode != 487 {
		t.Errorf("cancelled call ended with %d", res.StatusCode)
	}
}

func TestReofferGlare(t *testing.T) {
	e := newEnv(t)
	alice, bob := answered(t, e)
	hold := make(chan struct{})
	bob.mu.Lock()
	bob.hold = hold
	bob.mu.Unlock()
	first := make(chan int, 1)
	go func() { first <- alice.request(sip.INVITE, []byte(alice.sdp+"a=sendonly\r\n")).StatusCode }()
	bob.wait(sip.INVITE, 2) // the PBX relayed alice's offer and waits for bob
	if res := bob.request(sip.INVITE, []byte(bob.sdp+"a=sendonly\r\n")); res.StatusCode != 491 {
		t.Errorf("crossing re-INVITE answered %d, want 491", res.StatusCode)
	}
	close(hold)
	select {
	case code := <-first:
		if code != 200 {
			t.Errorf("first re-INVITE answered %d", code)
		}
	case <-time.After(waitFor):
		t.Fatal("first re-INVITE never answered")
	}
}

func TestSnapshot(t *testing.T) {
	e := newEnv(t)
	alice, bob := answered(t, e)
	snap := e.b.Snapshot()
	if len(snap) != 1 {
		t.Fatalf("%d calls in the snapshot", len(snap))
	}
	s := snap[0]
	a, b := s.Legs[LegA], s.Legs[LegB]
	if a == nil || b == nil {
		t.Fatalf("legs %+v", s.Legs)
	}
	alice.mu.Lock()
	ad := *alice.d
	alice.mu.Unlock()
	bob.mu.Lock()
	bd := *bob.d
	bob.mu.Unlock()
	// Each leg's dialog mirrors the phone's view of it.
	if a.Dialog.CallID != ad.CallID || a.Dialog.LocalTag != ad.RemoteTag || a.Dialog.RemoteTag != ad.LocalTag || !a.Dialog.UAS {
		t.Errorf("caller leg %+v, phone %+v", a.Dialog, ad)
	}
	if b.Dialog.CallID != bd.CallID || b.Dialog.LocalTag != bd.RemoteTag || b.Dialog.RemoteTag != bd.LocalTag || b.Dialog.UAS {
		t.Errorf("callee leg %+v, phone %+v", b.Dialog, bd)
	}
	if s.ID != ad.CallID || s.State != StateAnswered || a.Number != "100" || b.Number != "200" || !hasLine(b.SDP, "o=200 ") {
		t.Errorf("state %+v", s)
	}
	data, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	var back []CallState
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	for i := range snap { // JSON keeps neither the monotonic clock nor Local
		snap[i].Start, snap[i].Answer = snap[i].Start.UTC().Round(0), snap[i].Answer.UTC().Round(0)
	}
	if !reflect.DeepEqual(back, snap) {
		t.Errorf("JSON round trip changed the state:\n%+v %+v %+v\n%+v %+v %+v", back, *back[0].Legs[0], *back[0].Legs[1], snap, *snap[0].Legs[0], *snap[0].Legs[1])
	}
}

func TestTCP(t *testing.T) {
	tests := []struct {
		name          string
		tcpA, tcpB    bool
		callerHangsUp bool
	}{
		{"caller on TCP", true, false, false},
		{"callee on TCP", false, true, true},
		{"both on TCP", true, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			mk := func(tcp bool, n string) *phone {
				if tcp {
					return newTCPPhone(t, e, n, "answer")
				}
				return newPhone(t, e, n, "answer")
			}
			alice, bob := mk(tt.tcpA, "100"), mk(tt.tcpB, "200")
			e.loc.add("200", bob)
			if res := alice.dial("200", nil).result(); res.StatusCode != 200 {
				t.Fatalf("call: %d", res.StatusCode)
			}
			inv := bob.wait(sip.INVITE, 1)
			if want := map[bool]string{false: "UDP", true: "TCP"}[tt.tcpB]; inv.Via().Transport != want {
				t.Errorf("callee got INVITE over %s", inv.Via().Transport)
			}
			bob.wait(sip.ACK, 1)
			if res := alice.request(sip.INVITE, []byte(alice.sdp+"a=sendonly\r\n")); res.StatusCode != 200 {
				t.Errorf("re-INVITE: %d", res.StatusCode)
			}
			if tt.callerHangsUp {
				alice.request(sip.BYE, nil)
				bob.wait(sip.BYE, 1)
			} else {
				bob.request(sip.BYE, nil)
				alice.wait(sip.BYE, 1)
			}
			if r := e.cdrs.wait(t, 1)[0]; r.Disp != cdr.Answered {
				t.Errorf("CDR %+v", r)
			}
		})
	}
}

func TestStaleCSeq(t *testing.T) {
	e := newEnv(t)
	alice, bob := answered(t, e)
	alice.mu.Lock()
	alice.d.LocalSeq = 0 // the next request reuses the INVITE's CSeq 1
	alice.mu.Unlock()
	if res := alice.request(sip.INFO, []byte("x"), sip.NewHeader("Content-Type", "text/plain")); res.StatusCode != 500 {
		t.Errorf("out-of-order request answered %d, want 500", res.StatusCode)
	}
	if n := bob.count(sip.INFO); n != 0 {
		t.Errorf("stale request was passed on %d times", n)
	}
	if res := alice.request(sip.BYE, nil); res.StatusCode != 200 {
		t.Errorf("BYE after a stale request: %d", res.StatusCode)
	}
}
