package b2bua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/waitfor"
	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/dialplan"
	"github.com/twinpbx/twinpbx/pbx/resolve"
	"github.com/twinpbx/twinpbx/pbx/tlscert"
	"github.com/twinpbx/twinpbx/pbx/trunk"
	"github.com/twinpbx/twinpbx/pbx/trunk/trunktest"
)

// withTrunks gives the B2BUA trunks and a dial plan: "0." goes out over
// the trunks in the given order, 112 is an emergency number, and inbound
// number 201 (DID) rings extension 200.
func withTrunks(t *testing.T, lines ...config.TrunkLine) envOpt {
	return withTrunksTLS(t, nil, lines...)
}

// withTrunksTLS is withTrunks with the trunks' TLS peers (nil: none).
func withTrunksTLS(t *testing.T, peers *tlscert.Peers, lines ...config.TrunkLine) envOpt {
	return func(o *Options) {
		r, err := resolve.New(resolve.Config{Servers: []string{"127.0.0.1:1"}, Timeout: 100 * time.Millisecond,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		var b **B2BUA = new(*B2BUA)
		m, err := trunk.New(trunk.Options{
			Client: o.Client, Resolver: r, Contact: o.Contact, Logger: slog.New(slog.DiscardHandler), TLS: peers,
			Prepare: func(req *sip.Request) {
				if *b != nil {
					(*b).Prepare(req)
				}
			},
		}, lines)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for i := range lines {
			lines[i].DIDs = append(lines[i].DIDs, config.DID{Number: "201", Extension: "200"})
			names = append(names, lines[i].Name)
		}
		plan, err := dialplan.New(lines, []config.Route{{Pattern: "0.", Strip: 1, Trunks: names}},
			[]string{"100", "200", "300", "400"}, []string{"112"})
		if err != nil {
			t.Fatal(err)
		}
		o.Trunks = m
		o.Dialplan = func() *dialplan.Plan { return plan }
		o.TrunkAnswer = 300 * time.Millisecond
	}
}

func TestTrunkOutbound(t *testing.T) {
	prov := trunktest.Start(t, trunktest.Options{User: "acct", Password: "prov-secret"})
	store := &memCalls{}
	e := newEnv(t, withCalls(store), withTrunks(t, config.TrunkLine{Name: "prov", Host: prov.Addr, Domain: "provider.test",
		User: "acct", Password: "prov-secret", CallerID: "4930123"}))
	alice := newPhone(t, e, "100", "answer")

	oc := alice.dial("0301234", nil)
	if res := oc.result(); res.StatusCode != 200 || !hasLine(res.Body(), "a=relayed-from:B") {
		t.Fatalf("call answered %d with %q", res.StatusCode, res.Body())
	}
	invs := prov.Invites()
	if len(invs) != 1 || prov.Challenges() != 1 {
		t.Fatalf("provider saw %d authenticated INVITEs after %d challenges, want 1 after 1", len(invs), prov.Challenges())
	}
	inv := invs[0]
	if inv.Recipient.User != "301234" || inv.Recipient.Host != "provider.test" || inv.From().Address.User != "4930123" {
		t.Errorf("INVITE to %s from %s", inv.Recipient.String(), inv.From().Address.String())
	}
	if !hasLine(inv.Body(), "a=relayed-from:A") {
		t.Errorf("provider got offer %q, not the relay's", inv.Body())
	}
	if cs := e.b.Calls(); len(cs) != 1 || cs[0].Trunk != "prov" {
		t.Errorf("calls %+v", cs)
	}
	// Saved for the twin like any answered call, with the trunk's dialog.
	store.waitSaved(t, oc.d.CallID)
	sc := store.get(t, oc.d.CallID)
	if lb := sc.Call.Legs[LegB]; sc.Call.Trunk != "prov" || lb.Trunk != "prov" || lb.Dialog.Peer != prov.Addr || lb.Dialog.RemoteTag == "" {
		t.Errorf("saved call %+v, leg B %+v", sc.Call, lb)
	}
	if r := alice.request(sip.BYE, nil); r.StatusCode != 200 {
		t.Fatalf("BYE answered %d", r.StatusCode)
	}
	store.waitSaved(t)
	r := e.cdrs.wait(t, 1)[0]
	if r.Disp != cdr.Answered || r.Trunk != "prov" || r.Callee != "0301234" || r.Caller != "100" {
		t.Errorf("CDR %+v", r)
	}
}

func TestTrunkFailover(t *testing.T) {
	for _, tc := range []struct {
		name      string
		first     string // mode of the first trunk's peer; "" for a silent one
		code      int    // the caller's final answer
		trunk     string // the trunk in the CDR
		secondInv int    // INVITEs the second trunk gets
	}{
		{"503 goes to the next trunk", "503", 200, "second", 1},
		{"500 goes to the next trunk", "500", 200, "second", 1},
		{"silence goes to the next trunk", "", 200, "second", 1},
		{"busy is the answer", "486", 486, "first", 0},
		{"not found is the answer", "404", 404, "first", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Peers are made before the PBX so the trunks can name them.
			tmp := newEnv(t)
			second := newPhone(t, tmp, "second", "answer")
			var firstAddr string
			var first *phone
			if tc.first == "" {
				silent, err := net.ListenPacket("udp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = silent.Close() })
				firstAddr = silent.LocalAddr().String()
			} else {
				first = newPhone(t, tmp, "first", tc.first)
				firstAddr = first.addr
			}
			e := newEnv(t, withTrunks(t,
				config.TrunkLine{Name: "first", Type: config.LineISDN, Host: firstAddr},
				config.TrunkLine{Name: "second", Host: second.addr}))
			alice := newPhone(t, e, "100", "answer")
			oc := alice.dial("0301234", nil)
			if res := oc.result(); res.StatusCode != tc.code {
				t.Fatalf("caller got %d, want %d", res.StatusCode, tc.code)
			}
			if n := second.count(sip.INVITE); n != tc.secondInv {
				t.Errorf("second trunk got %d INVITEs, want %d", n, tc.secondInv)
			}
			if tc.code == 200 {
				alice.request(sip.BYE, nil)
			}
			r := e.cdrs.wait(t, 1)[0]
			if r.Trunk != tc.trunk || r.SIPCode != tc.code {
				t.Errorf("CDR %+v", r)
			}
		})
	}
}

func TestTrunkInbound(t *testing.T) {
	tmp := newEnv(t)
	gw := newPhone(t, tmp, "4930555", "answer") // the ISDN gateway, say
	e := newEnv(t, withTrunks(t, config.TrunkLine{Name: "isdn", Type: config.LineISDN, Host: gw.addr}))
	bob := newPhone(t, e, "200", "answer")
	e.loc.add("200", bob)
	gw.pbx = e.addr
	e.auth.setChallenge(true)

	// No password is asked of a trunk: its address is its credential.
	oc := gw.dial("201", nil)
	if res := oc.result(); res.StatusCode != 200 {
		t.Fatalf("inbound call answered %d", res.StatusCode)
	}
	inv := bob.wait(sip.INVITE, 1)
	if inv.From().Address.User != "4930555" {
		t.Errorf("extension sees caller %s", inv.From().Address.String())
	}
	e.auth.mu.Lock()
	asked := e.auth.asked
	e.auth.mu.Unlock()
	if asked != 0 {
		t.Error("a trunk call was challenged")
	}
	if r := bob.request(sip.BYE, nil); r.StatusCode != 200 {
		t.Fatalf("BYE answered %d", r.StatusCode)
	}
	gw.wait(sip.BYE, 1)
	r := e.cdrs.wait(t, 1)[0]
	if r.Trunk != "isdn" || r.Caller != "4930555" || r.Callee != "200" || r.Disp != cdr.Answered {
		t.Errorf("CDR %+v", r)
	}

	// A number without a DID: 404, not the extension of that number.
	if res := gw.dial("300", nil).result(); res.StatusCode != 404 {
		t.Errorf("unmapped number answered %d, want 404", res.StatusCode)
	}
}

func TestDialplanAnswers(t *testing.T) {
	e := newEnv(t, withTrunks(t, config.TrunkLine{Name: "none", Type: config.LineISDN, Host: "127.0.0.1:9"}))
	alice := newPhone(t, e, "100", "answer")
	for _, tc := range []struct {
		number string
		code   int
	}{
		{"0", 484},
		{"555", 404},
		{"03012", 502}, // the only trunk does not answer
	} {
		if res := alice.dial(tc.number, nil).result(); res.StatusCode != tc.code {
			t.Errorf("%s answered %d, want %d", tc.number, res.StatusCode, tc.code)
		}
	}
}

// TestTrunkCallSurvivesFailover saves an answered trunk call, lets the box
// die, restores the call on the twin and ends it from the provider's side:
// the twin knows the trunk leg, and neither party stays busy.
func TestTrunkCallSurvivesFailover(t *testing.T) {
	store := &memCalls{}
	tmp := newEnv(t)
	prov := newPhone(t, tmp, "prov", "answer")
	line := config.TrunkLine{Name: "prov", Type: config.LineISDN, Host: prov.addr}
	box1 := newEnv(t, withCalls(store), withTrunks(t, line))
	alice := newPhone(t, box1, "100", "answer")
	oc := alice.dial("0301234", nil)
	if res := oc.result(); res.StatusCode != 200 {
		t.Fatalf("call answered %d", res.StatusCode)
	}
	store.waitSaved(t, oc.d.CallID)
	box1.crash()
	if n := countTrunkLegs(box1.b); n != 0 {
		t.Errorf("%d trunk legs remembered by the box that abandoned its calls", n)
	}

	box2 := newEnvAt(t, box1.addr, withCalls(store), withTrunks(t, line))
	if n := restore(t, box2); n != 1 {
		t.Fatalf("Restore = %d calls, want 1", n)
	}
	if cs := box2.b.Calls(); len(cs) != 1 || cs[0].Trunk != "prov" {
		t.Fatalf("twin's calls %+v", cs)
	}
	if res := prov.request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("provider's BYE to the twin answered %d", res.StatusCode)
	}
	alice.wait(sip.BYE, 1)
	r := box2.cdrs.wait(t, 1)[0]
	if r.Trunk != "prov" || r.Disp != cdr.Answered || r.HangupBy != ByCallee {
		t.Errorf("twin's CDR %+v", r)
	}
	box2.b.mu.Lock()
	busy := len(box2.b.active)
	box2.b.mu.Unlock()
	if busy != 0 {
		t.Errorf("%d parties still counted busy", busy)
	}
}

// TestTrunkChallengesBYE: a provider that asks digest for a re-INVITE and
// for the BYE that ends a call gets them with the trunk's credentials.
func TestTrunkChallengesBYE(t *testing.T) {
	prov := trunktest.Start(t, trunktest.Options{User: "acct", Password: "prov-secret", ChallengeBYE: true})
	e := newEnv(t, withTrunks(t, config.TrunkLine{Name: "prov", Host: prov.Addr, User: "acct", Password: "prov-secret"}))
	alice := newPhone(t, e, "100", "answer")
	if res := alice.dial("0301234", nil).result(); res.StatusCode != 200 {
		t.Fatalf("call answered %d", res.StatusCode)
	}
	// Hold: the re-INVITE is challenged too, and sent again.
	if r := alice.request(sip.INVITE, []byte("v=0\r\no=100 1 2 IN IP4 127.0.0.1\r\ns=-\r\na=sendonly\r\n")); r.StatusCode != 200 {
		t.Fatalf("re-INVITE answered %d", r.StatusCode)
	}
	if n := len(prov.Invites()); n != 2 {
		t.Fatalf("provider took %d INVITEs, want 2", n)
	}
	before := prov.Challenges()
	if r := alice.request(sip.BYE, nil); r.StatusCode != 200 {
		t.Fatalf("BYE answered %d", r.StatusCode)
	}
	eventually(t, "the provider's BYE", func() bool { return len(prov.Byes()) == 1 })
	// One challenge, or two when a retransmission of the first BYE
	// crossed the provider's 407 on a slow machine.
	if n := prov.Challenges() - before; n < 1 || n > 2 {
		t.Errorf("%d challenges to the BYE, want 1", n)
	}
	if bye := prov.Byes()[0]; bye.CSeq().SeqNo != 6 {
		t.Errorf("BYE with credentials has CSeq %d, want 6 (INVITE 1 and 2, re-INVITE 3 and 4, the challenged BYE 5)", bye.CSeq().SeqNo)
	}
	// The leg is forgotten once the BYE's transaction has ended.
	eventually(t, "the trunk leg forgotten", func() bool { return countTrunkLegs(e.b) == 0 })
}

// TestTrunkCancel: the caller hangs up while the trunk rings; the trunk
// gets a CANCEL, the caller 487, and the CDR names the trunk.
func TestTrunkCancel(t *testing.T) {
	tmp := newEnv(t)
	prov := newPhone(t, tmp, "prov", "ring")
	e := newEnv(t, withTrunks(t, config.TrunkLine{Name: "prov", Type: config.LineISDN, Host: prov.addr}))
	alice := newPhone(t, e, "100", "answer")
	oc := alice.dial("0301234", nil)
	oc.waitProvisional(180)
	if res := oc.cancel(); res.StatusCode != 200 {
		t.Fatalf("CANCEL answered %d", res.StatusCode)
	}
	if res := oc.result(); res.StatusCode != 487 {
		t.Fatalf("INVITE ended with %d, want 487", res.StatusCode)
	}
	prov.wait(sip.CANCEL, 1)
	r := e.cdrs.wait(t, 1)[0]
	if r.Disp != cdr.Cancelled || r.Trunk != "prov" {
		t.Errorf("CDR %+v", r)
	}
	eventually(t, "media closed", func() bool { return e.media.sessions() == 0 })
}

// TestReplacedTrunkLegChallengesBYE: when an INVITE with Replaces takes
// the place of the party on a trunk leg, the BYE that ends the trunk leg
// is still answered with the trunk's credentials when challenged.
func TestReplacedTrunkLegChallengesBYE(t *testing.T) {
	prov := trunktest.Start(t, trunktest.Options{User: "acct", Password: "prov-secret", ChallengeBYE: true})
	e := newEnv(t, withTrunks(t, config.TrunkLine{Name: "prov", Host: prov.Addr, User: "acct", Password: "prov-secret"}))
	alice := newPhone(t, e, "100", "answer")
	if res := alice.dial("0301234", nil).result(); res.StatusCode != 200 {
		t.Fatalf("call answered %d", res.StatusCode)
	}
	var d Dialog
	e.b.mu.Lock()
	for _, c := range e.b.calls {
		c.mu.Lock()
		d = c.legs[LegB].Dialog
		c.mu.Unlock()
	}
	e.b.mu.Unlock()
	carol := newPhone(t, e, "300", "answer")
	rep := fmt.Sprintf("%s;to-tag=%s;from-tag=%s", d.CallID, d.RemoteTag, d.LocalTag)
	if res := carol.dial("100", nil, sip.NewHeader("Replaces", rep)).result(); res.StatusCode != 200 {
		t.Fatalf("INVITE with Replaces answered %d", res.StatusCode)
	}
	eventually(t, "the provider's BYE with credentials", func() bool { return len(prov.Byes()) == 1 })
	eventually(t, "the replaced trunk leg forgotten", func() bool { return countTrunkLegs(e.b) == 0 })
	waitInUse(t, e, "prov", 0)
}

// countTrunkLegs returns how many legs b remembers as running over a trunk.
func countTrunkLegs(b *B2BUA) int {
	n := 0
	b.trunkLegs.Range(func(any, any) bool { n++; return true })
	return n
}

// TestTLSTrunkRequestNotSentUnchecked: a request in a call over a TLS
// trunk whose server the trunk cannot reach over a connection of its own
// (checked by its own CA and names) is not handed to the SIP stack, which
// would dial by itself or reuse a connection another trunk's check
// passed; a request of a call on no trunk is prepared as before.
func TestTLSTrunkRequestNotSentUnchecked(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close() // nothing listens there now
	peers := tlscert.NewPeers(slog.New(slog.DiscardHandler))
	e := newEnv(t, withTrunksTLS(t, peers, config.TrunkLine{Name: "tlsprov", Host: dead, Domain: "provider.test",
		Transport: "tls", TLSInsecure: true}))
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.b.o.Trunks.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done })
	bye := func(callID string) *sip.Request {
		req := sip.NewRequest(sip.BYE, sip.Uri{Scheme: "sip", User: "301234", Host: "provider.test"})
		req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "100", Host: "pbx.test"}, Params: sip.HeaderParams{{K: "tag", V: "a"}}})
		req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "301234", Host: "provider.test"}, Params: sip.HeaderParams{{K: "tag", V: "b"}}})
		cid := sip.CallIDHeader(callID)
		req.AppendHeader(&cid)
		req.AppendHeader(&sip.CSeqHeader{SeqNo: 2, MethodName: sip.BYE})
		req.SetTransport("TLS")
		req.SetDestination(dead)
		return req
	}
	e.b.trunkLegs.Store("on-the-trunk", "tlsprov")
	defer e.b.trunkLegs.Delete("on-the-trunk")
	// The trunks open connections only once their manager runs.
	waitfor.Cond(t, 20*time.Second, "the BYE over the TLS trunk refused", func() bool {
		err = e.b.prepare(bye("on-the-trunk"))
		return err != nil
	})
	if !errors.Is(err, sip.ErrTransactionTransport) {
		t.Errorf("BYE over the TLS trunk with no connection of its own: %v, want a transport error (not sent)", err)
	}
	if err := e.b.write(bye("on-the-trunk")); err == nil {
		t.Error("write sent a BYE the trunk's check never passed")
	}
	if err := e.b.prepare(bye("on-no-trunk")); err != nil {
		t.Errorf("BYE of a call on no trunk: %v", err)
	}
}
