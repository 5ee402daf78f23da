package b2bua

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/cdr"
)

// audioSDP is a phone's description of one G.711 µ-law stream.
func audioSDP(number string, port int, dir string) string {
	return fmt.Sprintf("v=0\r\no=%s 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=%s\r\n", number, port, dir)
}

// referReplacing is a Refer-To naming number, replacing dialog d as the
// phone that holds d sees it; swap puts the tags the other way round.
func referReplacing(number string, d *Dialog, swap bool) sip.Header {
	to, from := d.RemoteTag, d.LocalTag
	if swap {
		to, from = from, to
	}
	rep := url.QueryEscape(fmt.Sprintf("%s;to-tag=%s;from-tag=%s", d.CallID, to, from))
	return sip.NewHeader("Refer-To", fmt.Sprintf("<sip:%s@127.0.0.1?Replaces=%s>", number, rep))
}

// twoCalls: Alice (100) calls Bob (200), holds him if hold is set, and
// calls Carol (300). It returns Alice's dialogs of both calls.
func twoCalls(t *testing.T, e *env, hold bool) (alice, bob, carol *phone, call1, call2 *Dialog) {
	t.Helper()
	alice = newPhone(t, e, "100", "answer")
	bob = newPhone(t, e, "200", "answer")
	carol = newPhone(t, e, "300", "answer")
	for port, p := range map[int]*phone{4000: alice, 4002: bob, 4004: carol} {
		p.setSDP(audioSDP(p.number, port, "sendrecv"))
	}
	e.loc.add("200", bob)
	e.loc.add("300", carol)
	if res := alice.dial("200", nil).result(); res.StatusCode != 200 {
		t.Fatalf("call 1: %d", res.StatusCode)
	}
	bob.wait(sip.ACK, 1)
	call1 = alice.call()
	if hold {
		if res := alice.requestOn(call1, sip.INVITE, []byte(audioSDP("100", 4000, "sendonly"))); res.StatusCode != 200 {
			t.Fatalf("hold: %d", res.StatusCode)
		}
		bob.wait(sip.INVITE, 2)
	}
	if res := alice.dial("300", nil).result(); res.StatusCode != 200 {
		t.Fatalf("call 2: %d", res.StatusCode)
	}
	carol.wait(sip.ACK, 1)
	call2 = alice.call()
	return alice, bob, carol, call1, call2
}

func TestAttendedTransfer(t *testing.T) {
	tests := []struct {
		name string
		// referInCall2: Alice sends the REFER to Carol's call, naming
		// Bob's; otherwise to Bob's call naming Carol's.
		referInCall2 bool
		hold         bool
		swapTags     bool
		// caller and callee of the joined call.
		caller, callee string
		// holdCall2: Alice holds Carol too before the REFER.
		holdCall2 bool
		// reinvited are the phones that must be taken off hold.
		reinvited []string
	}{
		{name: "REFER to the held party", hold: true, caller: "200", callee: "300", reinvited: []string{"200"}},
		{name: "REFER to the held party, tags the other way round", hold: true, swapTags: true, caller: "200", callee: "300", reinvited: []string{"200"}},
		{name: "REFER to the target, nobody held", referInCall2: true, caller: "300", callee: "200"},
		{name: "REFER to the target, Bob held", referInCall2: true, hold: true, caller: "300", callee: "200", reinvited: []string{"200"}},
		{name: "both held", hold: true, holdCall2: true, caller: "200", callee: "300", reinvited: []string{"200", "300"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			alice, bob, carol, call1, call2 := twoCalls(t, e, tt.hold)
			if tt.holdCall2 {
				if res := alice.requestOn(call2, sip.INVITE, []byte(audioSDP("100", 4000, "sendonly"))); res.StatusCode != 200 {
					t.Fatalf("holding Carol: %d", res.StatusCode)
				}
				carol.wait(sip.INVITE, 2)
			}
			phones := map[string]*phone{"200": bob, "300": carol}
			invites := map[string]int{"200": bob.count(sip.INVITE), "300": carol.count(sip.INVITE)}
			in, named := call1, call2
			number := "300"
			if tt.referInCall2 {
				in, named, number = call2, call1, "200"
			}
			if res := alice.requestOn(in, sip.REFER, nil, referReplacing(number, named, tt.swapTags)); res.StatusCode != 202 {
				t.Fatalf("REFER answered %d", res.StatusCode)
			}
			if n := alice.wait(sip.NOTIFY, 1); !hasLine(n.Body(), "SIP/2.0 100 Trying") {
				t.Errorf("first NOTIFY %q", n.Body())
			}
			n2 := alice.wait(sip.NOTIFY, 2)
			if !hasLine(n2.Body(), "SIP/2.0 200 OK") || !strings.HasPrefix(n2.GetHeader("Subscription-State").Value(), "terminated") ||
				n2.CallID().Value() != in.CallID {
				t.Fatalf("final NOTIFY %q", n2.String())
			}
			// Alice is released from both calls.
			alice.wait(sip.BYE, 2)
			byes := map[string]bool{}
			alice.mu.Lock()
			for _, r := range alice.got {
				if r.Method == sip.BYE {
					byes[r.CallID().Value()] = true
				}
			}
			alice.mu.Unlock()
			if !byes[call1.CallID] || !byes[call2.CallID] {
				t.Errorf("Alice got BYE on %v, want both calls", byes)
			}
			for _, number := range tt.reinvited {
				inv := phones[number].wait(sip.INVITE, invites[number]+1)
				want := map[string]string{"200": "o=300 ", "300": "o=200 "}[number]
				if !hasLine(inv.Body(), want) || hasLine(inv.Body(), "a=sendonly") || !hasLine(inv.Body(), "a=sendrecv") {
					t.Errorf("re-INVITE taking %s off hold offers %q", number, inv.Body())
				}
			}
			recs := e.cdrs.wait(t, 2)
			for _, r := range recs[:2] {
				if r.Disp != cdr.Answered || r.HangupBy != ByTransfer || r.Caller != "100" {
					t.Errorf("CDR of a transferred call %+v", r)
				}
			}
			calls := e.b.Calls()
			if len(calls) != 1 || calls[0].Caller != tt.caller || calls[0].Callee != tt.callee || calls[0].State != StateAnswered {
				t.Fatalf("calls after the join: %+v", calls)
			}
			e.media.mu.Lock()
			joined := e.media.joined
			e.media.mu.Unlock()
			if joined != 1 || e.media.sessions() != 1 {
				t.Errorf("%d joins, %d sessions; want 1, 1", joined, e.media.sessions())
			}
			// No party gets a new call; only the held one a re-INVITE.
			for number, p := range phones {
				want := invites[number]
				if slices.Contains(tt.reinvited, number) {
					want++
				}
				if got := p.count(sip.INVITE); got != want {
					t.Errorf("%s got %d INVITEs, want %d", number, got, want)
				}
			}
			// The joined call is a call like any: the callee hangs up.
			if res := phones[tt.callee].request(sip.BYE, nil); res.StatusCode != 200 {
				t.Fatalf("BYE in the joined call: %d", res.StatusCode)
			}
			phones[tt.caller].wait(sip.BYE, 1)
			recs = e.cdrs.wait(t, 3)
			if r := recs[2]; r.Disp != cdr.Answered || r.Caller != tt.caller || r.Callee != tt.callee || r.HangupBy != ByCallee ||
				r.ID == recs[0].ID || r.ID == recs[1].ID {
				t.Errorf("joined call CDR %+v", r)
			}
			eventually(t, "media closed", func() bool { return e.media.sessions() == 0 })
			if n := len(e.b.Calls()); n != 0 {
				t.Errorf("%d calls left", n)
			}
			e.b.mu.Lock()
			active, legs := len(e.b.active), len(e.b.legs)
			e.b.mu.Unlock()
			if active != 0 || legs != 0 {
				t.Errorf("%d extensions still busy, %d legs known", active, legs)
			}
		})
	}
}

// TestAttendedTransferFails: the REFER names no call the PBX knows, or one
// that ended meanwhile; the transferor hears why and both calls go on.
func TestAttendedTransferFails(t *testing.T) {
	tests := []struct {
		name    string
		referTo func(call2 *Dialog) sip.Header
		// targetLeaves: Carol hangs up before the REFER.
		targetLeaves bool
		want         string
	}{
		{name: "unknown dialog", referTo: func(*Dialog) sip.Header {
			return sip.NewHeader("Refer-To", "<sip:300@127.0.0.1?Replaces=nope%3Bto-tag%3Da%3Bfrom-tag%3Db>")
		}, want: "SIP/2.0 481"},
		{name: "wrong tag", referTo: func(d *Dialog) sip.Header {
			w := *d
			w.RemoteTag = "other"
			return referReplacing("300", &w, false)
		}, want: "SIP/2.0 481"},
		{name: "target hung up", targetLeaves: true, referTo: func(d *Dialog) sip.Header {
			return referReplacing("300", d, false)
		}, want: "SIP/2.0 481"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			alice, bob, carol, call1, call2 := twoCalls(t, e, false)
			calls := 2
			if tt.targetLeaves {
				if res := carol.request(sip.BYE, nil); res.StatusCode != 200 {
					t.Fatalf("Carol's BYE: %d", res.StatusCode)
				}
				alice.wait(sip.BYE, 1)
				calls = 1
			}
			if res := alice.requestOn(call1, sip.REFER, nil, tt.referTo(call2)); res.StatusCode != 202 {
				t.Fatalf("REFER answered %d", res.StatusCode)
			}
			n := alice.wait(sip.NOTIFY, 2)
			if !hasLine(n.Body(), tt.want) || !strings.HasPrefix(n.GetHeader("Subscription-State").Value(), "terminated") {
				t.Fatalf("final NOTIFY %q", n.String())
			}
			if got := len(e.b.Calls()); got != calls {
				t.Errorf("%d calls after a failed transfer, want %d", got, calls)
			}
			// Call 1 carries on: Alice can still hold Bob and hang up.
			if res := alice.requestOn(call1, sip.INVITE, []byte(audioSDP("100", 4000, "sendonly"))); res.StatusCode != 200 {
				t.Errorf("re-INVITE after a failed transfer: %d", res.StatusCode)
			}
			if res := alice.requestOn(call1, sip.BYE, nil); res.StatusCode != 200 {
				t.Fatalf("BYE after a failed transfer: %d", res.StatusCode)
			}
			bob.wait(sip.BYE, 1)
		})
	}
}

// TestAttendedTransferOnRelay runs the join on the real relay with a
// store: the two parties left hear each other on the ports they already
// used, only the joined call stays saved, and the twin carries it on after
// a failover.
func TestAttendedTransferOnRelay(t *testing.T) {
	const ports = 29560
	store := &memCalls{}
	relay1 := newRelay(t, ports)
	box1 := newEnv(t, withMedia(relayMedia{relay1}), withCalls(store))
	mc := answeredCall(t, box1) // Alice → Bob, RTP flowing
	call1 := mc.alice.call()
	carol := newPhone(t, box1, "300", "answer")
	carolRTP, carolSDP := rtpSocket(t, "300")
	carol.setSDP(carolSDP)
	box1.loc.add("300", carol)
	oc := mc.alice.dial("300", nil)
	if res := oc.result(); res.StatusCode != 200 {
		t.Fatalf("call 2: %d", res.StatusCode)
	}
	toRelayC := mediaAddr(t, carol.wait(sip.INVITE, 1).Body())
	carol.wait(sip.ACK, 1)
	store.waitSaved(t, slices.Sorted(slices.Values([]string{mc.id, oc.d.CallID}))...)

	if res := mc.alice.requestOn(call1, sip.REFER, nil, referReplacing("300", mc.alice.call(), false)); res.StatusCode != 202 {
		t.Fatalf("REFER answered %d", res.StatusCode)
	}
	mc.alice.wait(sip.BYE, 2)
	carries(t, mc.bobRTP, mc.toRelayB, carolRTP, 0xB0B2)
	carries(t, carolRTP, toRelayC, mc.bobRTP, 0xCA201)
	store.waitSaved(t, mc.id)
	sc := store.get(t, mc.id)
	if sc.Call.Caller != "200" || sc.Call.Callee != "300" || sc.Call.Attempt != 2 ||
		sc.Call.Legs[LegA].Number != "200" || sc.Call.Legs[LegB].Number != "300" {
		t.Errorf("saved joined call = %+v", sc.Call)
	}
	if sc.Media.Legs[LegA].Port != int(mc.toRelayB.Port()) || sc.Media.Legs[LegB].Port != int(toRelayC.Port()) {
		t.Errorf("saved media ports %d/%d, want Bob's %d and Carol's %d",
			sc.Media.Legs[LegA].Port, sc.Media.Legs[LegB].Port, mc.toRelayB.Port(), toRelayC.Port())
	}
	if n := relay1.Sessions(); n != 1 {
		t.Errorf("%d relay sessions after the join, want 1", n)
	}

	box1.crash()
	_ = relay1.Close()
	relay2 := newRelay(t, ports)
	box2 := newEnvAt(t, box1.addr, withMedia(relayMedia{relay2}), withCalls(store))
	if n := restore(t, box2); n != 1 {
		t.Fatalf("Restore = %d, want 1", n)
	}
	carries(t, mc.bobRTP, mc.toRelayB, carolRTP, 0xB0B3)
	carries(t, carolRTP, toRelayC, mc.bobRTP, 0xCA202)
	if res := carol.request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("Carol's BYE answered %d", res.StatusCode)
	}
	mc.bob.wait(sip.BYE, 1)
	if r := box2.cdrs.wait(t, 1)[0]; r.ID != mc.id+"-2" || r.Caller != "200" || r.Callee != "300" || r.HangupBy != ByCallee {
		t.Errorf("twin's CDR of the joined call = %+v", r)
	}
	store.waitSaved(t)
	eventually(t, "relay sessions closed", func() bool { return relay2.Sessions() == 0 })
}

// TestInviteWithReplaces: a phone that calls with Replaces takes the place
// of the party on the dialog it names.
func TestInviteWithReplaces(t *testing.T) {
	tests := []struct {
		name     string
		replaces func(alice, bob *Dialog) string
		want     int
	}{
		{name: "takes the caller's place", want: 200, replaces: func(a, _ *Dialog) string {
			return fmt.Sprintf("%s;to-tag=%s;from-tag=%s", a.CallID, a.RemoteTag, a.LocalTag)
		}},
		{name: "unknown dialog", want: 481, replaces: func(*Dialog, *Dialog) string { return "nope;to-tag=a;from-tag=b" }},
		{name: "early-only for an answered call", want: 486, replaces: func(a, _ *Dialog) string {
			return fmt.Sprintf("%s;to-tag=%s;from-tag=%s;early-only", a.CallID, a.RemoteTag, a.LocalTag)
		}},
		{name: "no tags", want: 400, replaces: func(a, _ *Dialog) string { return a.CallID }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			alice, bob := answered(t, e)
			carol := newPhone(t, e, "300", "answer")
			oc := carol.dial("200", nil, sip.NewHeader("Replaces", tt.replaces(alice.call(), bob.call())))
			res := oc.result()
			if res.StatusCode != tt.want {
				t.Fatalf("INVITE with Replaces answered %d, want %d", res.StatusCode, tt.want)
			}
			if tt.want != 200 {
				if calls := e.b.Calls(); len(calls) != 1 || calls[0].Caller != "100" {
					t.Errorf("calls after a refused Replaces: %+v", calls)
				}
				return
			}
			// Bob is offered Carol's media; Carol gets Bob's answer.
			if inv := bob.wait(sip.INVITE, 2); !hasLine(inv.Body(), "o=300 ") {
				t.Errorf("re-INVITE to the party that stays offers %q", inv.Body())
			}
			if !hasLine(res.Body(), "o=200 ") || !hasLine(res.Body(), "a=reanswer") {
				t.Errorf("200 to the replacing phone carries %q", res.Body())
			}
			alice.wait(sip.BYE, 1)
			if r := e.cdrs.wait(t, 1)[0]; r.Caller != "100" || r.HangupBy != ByTransfer {
				t.Errorf("CDR of the replaced call %+v", r)
			}
			if calls := e.b.Calls(); len(calls) != 1 || calls[0].Caller != "300" || calls[0].Callee != "200" {
				t.Fatalf("calls after the replacement: %+v", calls)
			}
			if res := bob.request(sip.BYE, nil); res.StatusCode != 200 {
				t.Fatalf("BYE: %d", res.StatusCode)
			}
			carol.wait(sip.BYE, 1)
			recs := e.cdrs.wait(t, 2)
			if r := recs[1]; r.Caller != "300" || r.Callee != "200" || r.HangupBy != ByCallee || r.ID == recs[0].ID {
				t.Errorf("CDR of the call after the replacement %+v", r)
			}
			e.b.mu.Lock()
			active := len(e.b.active)
			e.b.mu.Unlock()
			if active != 0 {
				t.Errorf("%d extensions still busy", active)
			}
		})
	}
}
