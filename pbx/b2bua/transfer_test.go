package b2bua

import (
	"strconv"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/trunk/trunktest"
)

// TestTransferOutside: a blind transfer to an outside number goes through
// the dial plan as the transferor's own call would (strip, trunk order,
// channels, emergency), the transferee is joined with the trunk leg, the
// transferor hears the outcome by NOTIFY, and the CDRs name the trunk.
func TestTransferOutside(t *testing.T) {
	for _, tc := range []struct {
		name     string
		target   string
		first    string // the first trunk's peer: answer, 486, ...; "full": its one channel is in use
		code     int    // the final NOTIFY's code
		trunk    string // the trunk of the new call, or of the failed attempt's CDR
		number   string // what the trunk gets as the called number
		priority bool   // sent with Priority: emergency
	}{
		{name: "answered by the first trunk", target: "0301234", first: "answer", code: 200, trunk: "first", number: "301234"},
		{name: "the first trunk fails, the second answers", target: "0301234", first: "500", code: 200, trunk: "second", number: "301234"},
		{name: "the first trunk is full", target: "0301234", first: "full", code: 200, trunk: "second", number: "301234"},
		{name: "the outside number is busy", target: "0301234", first: "486", code: 486, trunk: "first"},
		{name: "an emergency number", target: "112", first: "answer", code: 200, trunk: "first", number: "112", priority: true},
		{name: "an incomplete number", target: "0", first: "answer", code: 484},
		{name: "a number nobody has", target: "999", first: "answer", code: 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := newEnv(t)
			mode := tc.first
			if mode == "full" {
				mode = "answer"
			}
			first := newPhone(t, tmp, "first", mode)
			second := newPhone(t, tmp, "second", "answer")
			channels := 0
			if tc.first == "full" {
				channels = 1
			}
			e := newEnv(t, withTrunks(t,
				config.TrunkLine{Name: "first", Host: first.addr, Channels: channels},
				config.TrunkLine{Name: "second", Host: second.addr}))
			if tc.first == "full" {
				dave := newPhone(t, e, "400", "answer")
				if res := dave.dial("0777", nil).result(); res.StatusCode != 200 {
					t.Fatalf("the call that fills the first trunk answered %d", res.StatusCode)
				}
			}
			alice, bob := answered(t, e)
			if res := bob.request(sip.REFER, nil, sip.NewHeader("Refer-To", "<sip:"+tc.target+"@127.0.0.1>")); res.StatusCode != 202 {
				t.Fatalf("REFER answered %d", res.StatusCode)
			}
			ns := bob.notifies(t)
			final := ns[len(ns)-1]
			if !hasLine(final.Body(), "SIP/2.0 "+strconv.Itoa(tc.code)) {
				t.Fatalf("final NOTIFY %q, want %d", final.Body(), tc.code)
			}
			peers := map[string]*phone{"first": first, "second": second}
			if tc.code != 200 {
				// The call goes on; the attempt has a CDR of its own.
				r := e.cdrs.wait(t, 1)[0]
				if r.Callee != tc.target || r.SIPCode != tc.code || r.Caller != "100" || r.Trunk != tc.trunk {
					t.Errorf("failed transfer's CDR %+v", r)
				}
				if res := alice.request(sip.BYE, nil); res.StatusCode != 200 {
					t.Fatalf("BYE after the failed transfer: %d", res.StatusCode)
				}
				bob.wait(sip.BYE, 1)
				waitInUse(t, e, "first", map[bool]int{true: 1, false: 0}[tc.first == "full"])
				return
			}
			peer := peers[tc.trunk]
			inv := peer.wait(sip.INVITE, peer.count(sip.INVITE))
			if inv.Recipient.User != tc.number || !hasLine(inv.Body(), "o=100 ") {
				t.Errorf("the trunk got INVITE for %q with offer %q", inv.Recipient.User, inv.Body())
			}
			if got := inv.GetHeader("Priority") != nil; got != tc.priority {
				t.Errorf("Priority header %v, want %v", inv.GetHeader("Priority"), tc.priority)
			}
			if u := inv.From().Address.User; u != "100" {
				t.Errorf("the trunk sees caller %q, want the transferee 100", u)
			}
			bob.wait(sip.BYE, 1)
			if n := inUse(t, e, tc.trunk); n != 1 {
				t.Errorf("trunk %s has %d channels in use, want 1", tc.trunk, n)
			}
			cs := e.b.Calls()
			if len(cs) == 0 || cs[len(cs)-1].Trunk != tc.trunk || cs[len(cs)-1].Callee != tc.target {
				t.Errorf("calls %+v", cs)
			}
			for _, st := range e.b.Snapshot() {
				if st.Callee == tc.target && st.Emergency != tc.priority {
					t.Errorf("transferred call's state %+v, want emergency %v", st, tc.priority)
				}
			}
			// The outside party hangs up: the transferee gets BYE.
			if res := peer.request(sip.BYE, nil); res.StatusCode != 200 {
				t.Fatalf("the trunk's BYE answered %d", res.StatusCode)
			}
			alice.wait(sip.BYE, 1)
			recs := e.cdrs.wait(t, 2)
			if r := recs[0]; r.Disp != cdr.Answered || r.HangupBy != ByTransfer || r.Callee != "200" || r.Trunk != "" {
				t.Errorf("first CDR %+v", r)
			}
			if r := recs[1]; r.Disp != cdr.Answered || r.Caller != "100" || r.Callee != tc.target || r.Trunk != tc.trunk || r.HangupBy != ByCallee {
				t.Errorf("transferred call's CDR %+v", r)
			}
			waitInUse(t, e, tc.trunk, 0)
			// Dave's call keeps the first trunk's channel when it is full.
			eventually(t, "the trunk legs of ended calls forgotten", func() bool { return countTrunkLegs(e.b) == len(e.b.Calls()) })
		})
	}
}

// TestTransferTrunkCallOutside: an extension transfers an inbound trunk
// call to an outside number (trunk to trunk): both trunk legs count,
// the CDR of the new call names the outbound trunk; and the outside
// party may transfer only to extensions, never out.
func TestTransferTrunkCallOutside(t *testing.T) {
	tmp := newEnv(t)
	gw := newPhone(t, tmp, "4930555", "answer")
	prov := trunktest.Start(t, trunktest.Options{User: "acct", Password: "prov-secret", ChallengeBYE: true})
	e := newEnv(t, withTrunks(t,
		config.TrunkLine{Name: "prov", Host: prov.Addr, User: "acct", Password: "prov-secret", CallerID: "4930123"},
		config.TrunkLine{Name: "isdn", Type: config.LineISDN, Host: gw.addr}))
	bob := newPhone(t, e, "200", "answer")
	e.loc.add("200", bob)
	gw.pbx = e.addr
	if res := gw.dial("201", nil).result(); res.StatusCode != 200 {
		t.Fatalf("inbound call answered %d", res.StatusCode)
	}
	bob.wait(sip.ACK, 1)

	// The outside party cannot make the PBX dial out.
	if res := gw.request(sip.REFER, nil, sip.NewHeader("Refer-To", "<sip:0301234@127.0.0.1>")); res.StatusCode != 202 {
		t.Fatalf("REFER from the trunk answered %d", res.StatusCode)
	}
	if ns := gw.notifies(t); !hasLine(ns[len(ns)-1].Body(), "SIP/2.0 403") {
		t.Fatalf("final NOTIFY to the trunk %q, want 403", ns[len(ns)-1].Body())
	}
	if n := len(prov.Invites()); n != 0 {
		t.Fatalf("the provider got %d INVITEs from a trunk's transfer", n)
	}

	// The extension can.
	if res := bob.request(sip.REFER, nil, sip.NewHeader("Refer-To", "<sip:0301234@127.0.0.1>")); res.StatusCode != 202 {
		t.Fatalf("REFER answered %d", res.StatusCode)
	}
	if ns := bob.notifies(t); !hasLine(ns[len(ns)-1].Body(), "SIP/2.0 200 OK") {
		t.Fatalf("final NOTIFY %q", ns[len(ns)-1].Body())
	}
	bob.wait(sip.BYE, 1)
	invs := prov.Invites()
	if len(invs) != 1 || invs[0].From().Address.User != "4930123" {
		t.Fatalf("provider INVITEs %v", invs)
	}
	for name, n := range map[string]int{"prov": 1, "isdn": 1} {
		if got := inUse(t, e, name); got != n {
			t.Errorf("trunk %s has %d channels in use, want %d", name, got, n)
		}
	}
	// The caller from the ISDN line hangs up: the provider's BYE is
	// challenged and sent again with the trunk's credentials.
	if res := gw.request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("BYE answered %d", res.StatusCode)
	}
	eventually(t, "the provider's BYE", func() bool { return len(prov.Byes()) == 1 })
	recs := e.cdrs.wait(t, 3)
	if r := recs[1]; r.Trunk != "isdn" || r.HangupBy != ByTransfer {
		t.Errorf("inbound call's CDR %+v", r)
	}
	if r := recs[2]; r.Caller != "4930555" || r.Callee != "0301234" || r.Trunk != "prov" || r.HangupBy != ByCaller {
		t.Errorf("transferred call's CDR %+v", r)
	}
	waitInUse(t, e, "prov", 0)
	waitInUse(t, e, "isdn", 0)
}

// TestTransferOutsideSurvivesFailover: a call transferred to an outside
// number is saved with its trunk leg; the twin restores it, counts its
// channel and ends it with the provider.
func TestTransferOutsideSurvivesFailover(t *testing.T) {
	store := &memCalls{}
	tmp := newEnv(t)
	prov := newPhone(t, tmp, "prov", "answer")
	line := config.TrunkLine{Name: "prov", Host: prov.addr, Channels: 1}
	box1 := newEnv(t, withCalls(store), withTrunks(t, line))
	alice, bob := answered(t, box1)
	store.waitSaved(t, alice.call().CallID)
	if res := bob.request(sip.REFER, nil, sip.NewHeader("Refer-To", "<sip:0301234@127.0.0.1>")); res.StatusCode != 202 {
		t.Fatalf("REFER answered %d", res.StatusCode)
	}
	bob.wait(sip.BYE, 1)
	var sc SavedCall
	eventually(t, "the transferred call saved with its trunk leg", func() bool {
		data, err := store.LoadCalls()
		if err != nil || len(data) != 1 {
			return false
		}
		for _, d := range data {
			if sc, err = ParseSavedCall(d); err != nil {
				return false
			}
		}
		return sc.Call.Trunk == "prov" && sc.Call.Callee == "0301234"
	})
	box1.crash()

	box2 := newEnvAt(t, box1.addr, withCalls(store), withTrunks(t, line))
	if n := restore(t, box2); n != 1 {
		t.Fatalf("Restore = %d calls, want 1", n)
	}
	if n := inUse(t, box2, "prov"); n != 1 {
		t.Errorf("the twin counts %d channels, want 1", n)
	}
	if res := alice.request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("BYE to the twin answered %d", res.StatusCode)
	}
	prov.wait(sip.BYE, 1)
	r := box2.cdrs.wait(t, 1)[0]
	if r.Trunk != "prov" || r.Caller != "100" || r.Callee != "0301234" || r.HangupBy != ByCaller {
		t.Errorf("twin's CDR %+v", r)
	}
	waitInUse(t, box2, "prov", 0)
}

// TestAttendedTransferOverTrunk: Alice talks to Bob, calls an outside
// number over a provider that asks digest, and transfers Bob to it: Bob
// and the provider are joined, the trunk keeps its one channel, and the
// provider's BYE challenge is still answered with the trunk's
// credentials after the join.
func TestAttendedTransferOverTrunk(t *testing.T) {
	for _, referInCall2 := range []bool{false, true} {
		name := map[bool]string{false: "REFER in Bob's call", true: "REFER in the trunk call"}[referInCall2]
		t.Run(name, func(t *testing.T) {
			prov := trunktest.Start(t, trunktest.Options{User: "acct", Password: "prov-secret", ChallengeBYE: true})
			store := &memCalls{}
			e := newEnv(t, withCalls(store), withTrunks(t, config.TrunkLine{Name: "prov", Host: prov.Addr, User: "acct", Password: "prov-secret", Channels: 1}))
			alice, bob := answered(t, e)
			call1 := alice.call()
			if res := alice.dial("0301234", nil).result(); res.StatusCode != 200 {
				t.Fatalf("call 2 answered %d", res.StatusCode)
			}
			call2 := alice.call()
			in, named, number := call1, call2, "0301234"
			if referInCall2 {
				in, named, number = call2, call1, "200"
			}
			if res := alice.requestOn(in, sip.REFER, nil, referReplacing(number, named, false)); res.StatusCode != 202 {
				t.Fatalf("REFER answered %d", res.StatusCode)
			}
			if ns := alice.notifies(t); !hasLine(ns[len(ns)-1].Body(), "SIP/2.0 200 OK") {
				t.Fatalf("final NOTIFY %q", ns[len(ns)-1].Body())
			}
			alice.wait(sip.BYE, 2)
			if n := inUse(t, e, "prov"); n != 1 {
				t.Errorf("the trunk has %d channels in use after the join, want 1", n)
			}
			cs := e.b.Calls()
			if len(cs) != 1 || cs[0].Trunk != "prov" {
				t.Fatalf("calls after the join %+v", cs)
			}
			store.waitSaved(t, cs[0].ID)
			if sc := store.get(t, cs[0].ID); sc.Call.Trunk != "prov" {
				t.Errorf("saved joined call %+v", sc.Call)
			}
			before := prov.Challenges()
			if res := bob.request(sip.BYE, nil); res.StatusCode != 200 {
				t.Fatalf("Bob's BYE answered %d", res.StatusCode)
			}
			eventually(t, "the provider's BYE with credentials", func() bool { return len(prov.Byes()) == 1 })
			// One challenge, or two when a retransmission of the first
			// BYE crossed the provider's 407 on a slow machine.
			if n := prov.Challenges() - before; n < 1 || n > 2 {
				t.Errorf("%d challenges to the BYE, want 1", n)
			}
			recs := e.cdrs.wait(t, 3)
			if r := recs[2]; r.Trunk != "prov" || r.Disp != cdr.Answered {
				t.Errorf("joined call's CDR %+v", r)
			}
			waitInUse(t, e, "prov", 0)
			eventually(t, "the trunk leg forgotten", func() bool { return countTrunkLegs(e.b) == 0 })
		})
	}
}

// TestTrunkPartyTransfersInside: the outside party of an inbound trunk
// call transfers the extension to another extension: the trunk leg
// leaves the call and gives its channel back.
func TestTrunkPartyTransfersInside(t *testing.T) {
	tmp := newEnv(t)
	gw := newPhone(t, tmp, "4930555", "answer")
	e := newEnv(t, withTrunks(t, config.TrunkLine{Name: "isdn", Type: config.LineISDN, Host: gw.addr}))
	bob := newPhone(t, e, "200", "answer")
	e.loc.add("200", bob)
	carol := newPhone(t, e, "300", "answer")
	e.loc.add("300", carol)
	gw.pbx = e.addr
	if res := gw.dial("201", nil).result(); res.StatusCode != 200 {
		t.Fatalf("inbound call answered %d", res.StatusCode)
	}
	bob.wait(sip.ACK, 1)
	if n := inUse(t, e, "isdn"); n != 1 {
		t.Fatalf("%d channels in use, want 1", n)
	}
	if res := gw.request(sip.REFER, nil, sip.NewHeader("Refer-To", "<sip:300@127.0.0.1>")); res.StatusCode != 202 {
		t.Fatalf("REFER answered %d", res.StatusCode)
	}
	if ns := gw.notifies(t); !hasLine(ns[len(ns)-1].Body(), "SIP/2.0 200 OK") {
		t.Fatalf("final NOTIFY %q", ns[len(ns)-1].Body())
	}
	gw.wait(sip.BYE, 1)
	waitInUse(t, e, "isdn", 0)
	// Forgotten once the BYE's transaction has ended.
	eventually(t, "the trunk party's leg forgotten", func() bool { return countTrunkLegs(e.b) == 0 })
	cs := e.b.Calls()
	if len(cs) != 1 || cs[0].Trunk != "" || cs[0].Caller != "200" || cs[0].Callee != "300" {
		// Between two extensions now: no trunk.
		t.Errorf("calls after the transfer %+v", cs)
	}
	if res := carol.request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("Carol's BYE answered %d", res.StatusCode)
	}
	bob.wait(sip.BYE, 1)
}
