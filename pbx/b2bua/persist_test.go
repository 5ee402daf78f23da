package b2bua

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/media"
	"github.com/twinpbx/twinpbx/pbx/sdp"
)

// memCalls is a CallStore in memory; two boxes share one, as the
// replicated store makes them do.
type memCalls struct {
	mu   sync.Mutex
	m    map[string][]byte
	fail error // returned by SaveCall when set
	// saves counts successful saves.
	saves int
}

func (s *memCalls) SaveCall(id string, state []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	s.m[id] = bytes.Clone(state)
	s.saves++
	return nil
}

func (s *memCalls) DeleteCall(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
	return nil
}

func (s *memCalls) LoadCalls() (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.m), nil
}

func (s *memCalls) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.m))
}

func (s *memCalls) get(t *testing.T, id string) SavedCall {
	t.Helper()
	s.mu.Lock()
	data := s.m[id]
	s.mu.Unlock()
	sc, err := ParseSavedCall(data)
	if err != nil {
		t.Fatalf("saved call %q: %v", id, err)
	}
	return sc
}

// waitSaved waits until exactly the listed calls are saved.
func (s *memCalls) waitSaved(t *testing.T, ids ...string) {
	t.Helper()
	eventually(t, fmt.Sprintf("saved calls %v", ids), func() bool {
		return slices.Equal(s.ids(), ids)
	})
}

func withCalls(s CallStore) envOpt { return func(o *Options) { o.Calls = s } }

func withMedia(m Media) envOpt { return func(o *Options) { o.Media = m } }

// relayMedia runs the B2BUA on the real relay, as the PBX does.
type relayMedia struct{ r *media.Relay }

func (m relayMedia) Open(id string) (MediaSession, error) {
	s, err := m.r.Open(id)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (m relayMedia) Restore(st media.SessionState) (MediaSession, error) {
	s, err := m.r.Restore(st)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// newRelay is a relay on 127.0.0.1 with 20 ports from low; the twin gets
// the same range, as both boxes have the same config.
func newRelay(t *testing.T, low int) *media.Relay {
	t.Helper()
	r, err := media.NewRelay(media.Config{Addr: netip.MustParseAddr("127.0.0.1"), PortLow: low, PortHigh: low + 19})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// rtpSocket is a phone's RTP socket and the SDP offering it.
func rtpSocket(t *testing.T, number string) (*net.UDPConn, string) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	body := fmt.Sprintf("v=0\r\no=%s 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", number, c.LocalAddr().(*net.UDPAddr).Port)
	return c, body
}

// mediaAddr is where an SDP body wants RTP.
func mediaAddr(t *testing.T, body []byte) netip.AddrPort {
	t.Helper()
	st, err := sdp.Parse(body)
	if err != nil || len(st) == 0 || !st[0].RTP().IsValid() {
		t.Fatalf("no media address in %q (%v)", body, err)
	}
	return st[0].RTP()
}

// carries checks that RTP sent from `from` to the relay address `to`
// reaches `at`, resending until it does: a datagram may race the start of
// a session.
func carries(t *testing.T, from *net.UDPConn, to netip.AddrPort, at *net.UDPConn, ssrc uint32) {
	t.Helper()
	pkt := make([]byte, 12+4)
	pkt[0], pkt[1] = 0x80, 0 // RTP v2, PCMU
	binary.BigEndian.PutUint32(pkt[8:], ssrc)
	marker := uint32(time.Now().UnixNano())
	binary.BigEndian.PutUint32(pkt[12:], marker)
	buf := make([]byte, 1500)
	deadline := time.Now().Add(waitFor)
	for seq := uint16(1); time.Now().Before(deadline); seq++ {
		binary.BigEndian.PutUint16(pkt[2:], seq)
		if _, err := from.WriteToUDPAddrPort(pkt, to); err != nil {
			t.Fatalf("sending RTP to %v: %v", to, err)
		}
		_ = at.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		for {
			n, err := at.Read(buf)
			if err != nil {
				break // resend
			}
			if n == len(pkt) && binary.BigEndian.Uint32(buf[12:]) == marker {
				return
			}
		}
	}
	t.Fatalf("RTP sent to %v never reached %v", to, at.LocalAddr())
}

// answeredCall sets up a call 100 → 200 on box with RTP flowing through
// the relay both ways, and returns the phones, their RTP sockets and the
// relay addresses each phone sends to.
type mediaCall struct {
	alice, bob       *phone
	aliceRTP, bobRTP *net.UDPConn
	toRelayA         netip.AddrPort // alice sends here
	toRelayB         netip.AddrPort // bob sends here
	aliceSDP         string
	id               string
}

func answeredCall(t *testing.T, box *env) *mediaCall {
	t.Helper()
	mc := &mediaCall{alice: newPhone(t, box, "100", "answer"), bob: newPhone(t, box, "200", "answer")}
	box.loc.add("200", mc.bob)
	var bobSDP string
	mc.aliceRTP, mc.aliceSDP = rtpSocket(t, "100")
	mc.bobRTP, bobSDP = rtpSocket(t, "200")
	mc.alice.setSDP(mc.aliceSDP)
	mc.bob.setSDP(bobSDP)
	oc := mc.alice.dial("200", nil)
	if res := oc.result(); res.StatusCode != 200 {
		t.Fatalf("call answered %d", res.StatusCode)
	} else {
		mc.toRelayA = mediaAddr(t, res.Body())
	}
	mc.toRelayB = mediaAddr(t, mc.bob.wait(sip.INVITE, 1).Body())
	mc.id = oc.d.CallID
	mc.rtpFlows(t)
	return mc
}

func (mc *mediaCall) rtpFlows(t *testing.T) {
	t.Helper()
	carries(t, mc.aliceRTP, mc.toRelayA, mc.bobRTP, 0xA11CE)
	carries(t, mc.bobRTP, mc.toRelayB, mc.aliceRTP, 0xB0B)
}

func restore(t *testing.T, box *env) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	n, err := box.b.Restore(ctx)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	return n
}

func TestCallSurvivesFailover(t *testing.T) {
	const ports = 29400
	store := &memCalls{}
	relay1 := newRelay(t, ports)
	box1 := newEnv(t, withMedia(relayMedia{relay1}), withCalls(store))
	mc := answeredCall(t, box1)
	store.waitSaved(t, mc.id)
	before := box1.b.Calls()[0]

	// An INFO after the save moves box 1's CSeq towards the callee past
	// what the twin knows.
	if res := mc.alice.request(sip.INFO, []byte("Signal=5\r\n"), sip.NewHeader("Content-Type", "application/dtmf-relay")); res.StatusCode != 200 {
		t.Fatalf("INFO answered %d", res.StatusCode)
	}
	mc.bob.wait(sip.INFO, 1)

	box1.crash()
	if err := relay1.Close(); err != nil {
		t.Fatal(err)
	}
	relay2 := newRelay(t, ports)
	box2 := newEnvAt(t, box1.addr, withMedia(relayMedia{relay2}), withCalls(store))
	if n := restore(t, box2); n != 1 {
		t.Fatalf("Restore = %d calls, want 1", n)
	}
	if got := relay2.Sessions(); got != 1 {
		t.Fatalf("twin's relay has %d sessions, want 1", got)
	}
	mc.rtpFlows(t)

	// Hold from the caller: the twin passes it on with a CSeq the callee
	// has not seen.
	hold := mc.aliceSDP + "a=sendonly\r\n"
	if res := mc.alice.request(sip.INVITE, []byte(hold)); res.StatusCode != 200 {
		t.Fatalf("re-INVITE after the failover answered %d", res.StatusCode)
	}
	reinv := mc.bob.wait(sip.INVITE, 2)
	if info := mc.bob.wait(sip.INFO, 1); reinv.CSeq().SeqNo <= info.CSeq().SeqNo {
		t.Errorf("re-INVITE CSeq %d not above the INFO's %d", reinv.CSeq().SeqNo, info.CSeq().SeqNo)
	}
	mc.rtpFlows(t)

	if res := mc.bob.request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("callee's BYE answered %d", res.StatusCode)
	}
	mc.alice.wait(sip.BYE, 1)
	recs := box2.cdrs.wait(t, 1)
	r := recs[0]
	if r.ID != mc.id+"-1" || r.Disp != cdr.Answered || r.HangupBy != ByCallee || r.Caller != "100" || r.Callee != "200" {
		t.Errorf("twin's CDR = %+v", r)
	}
	if !r.Start.Equal(before.Start) || !r.Answer.Equal(before.Answer) {
		t.Errorf("CDR start %v answer %v, want the original %v and %v", r.Start, r.Answer, before.Start, before.Answer)
	}
	store.waitSaved(t)
	eventually(t, "relay sessions closed", func() bool { return relay2.Sessions() == 0 })
	box1.cdrs.mu.Lock()
	if n := len(box1.cdrs.recs); n != 0 {
		t.Errorf("the box that died wrote %d CDRs", n)
	}
	box1.cdrs.mu.Unlock()
	for _, p := range []*phone{mc.alice, mc.bob} {
		if p.refused != 0 {
			t.Errorf("phone %s refused %d requests for their CSeq", p.number, p.refused)
		}
	}
	if n := mc.bob.onWire(sip.BYE); n != 0 {
		t.Errorf("callee got %d BYEs", n)
	}
}

// TestRestoreCallerHangsUp hangs up from the caller's side after a
// failover, and restores twice: the second finds the call running.
func TestRestoreCallerHangsUp(t *testing.T) {
	const ports = 29440
	store := &memCalls{}
	relay1 := newRelay(t, ports)
	box1 := newEnv(t, withMedia(relayMedia{relay1}), withCalls(store))
	mc := answeredCall(t, box1)
	store.waitSaved(t, mc.id)
	box1.crash()
	_ = relay1.Close()

	relay2 := newRelay(t, ports)
	box2 := newEnvAt(t, box1.addr, withMedia(relayMedia{relay2}), withCalls(store))
	if n := restore(t, box2); n != 1 {
		t.Fatalf("Restore = %d, want 1", n)
	}
	if n := restore(t, box2); n != 0 {
		t.Fatalf("second Restore = %d, want 0", n)
	}
	eventually(t, "the raised CSeqs saved", func() bool {
		return store.get(t, mc.id).Call.Legs[LegB].Dialog.LocalSeq == 1+SeqMargin
	})
	mc.rtpFlows(t)
	if res := mc.alice.request(sip.INFO, []byte("Signal=1\r\n"), sip.NewHeader("Content-Type", "application/dtmf-relay")); res.StatusCode != 200 {
		t.Fatalf("INFO after the failover answered %d", res.StatusCode)
	}
	if res := mc.alice.request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("caller's BYE answered %d", res.StatusCode)
	}
	bye := mc.bob.wait(sip.BYE, 1)
	if bye.CSeq().SeqNo <= SeqMargin {
		t.Errorf("BYE to the callee has CSeq %d, want above %d", bye.CSeq().SeqNo, SeqMargin)
	}
	if r := box2.cdrs.wait(t, 1)[0]; r.HangupBy != ByCaller || r.Disp != cdr.Answered {
		t.Errorf("CDR = %+v", r)
	}
	store.waitSaved(t)
}

func TestRestoreDropsCallWhosePortsAreTaken(t *testing.T) {
	const ports = 29480
	store := &memCalls{}
	relay1 := newRelay(t, ports)
	box1 := newEnv(t, withMedia(relayMedia{relay1}), withCalls(store))
	mc := answeredCall(t, box1)
	store.waitSaved(t, mc.id)
	before := box1.b.Calls()[0]
	box1.crash()
	_ = relay1.Close()

	// Another program took the port facing the callee.
	taken, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(mc.toRelayB))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = taken.Close() })

	relay2 := newRelay(t, ports)
	box2 := newEnvAt(t, box1.addr, withMedia(relayMedia{relay2}), withCalls(store))
	if n := restore(t, box2); n != 0 {
		t.Fatalf("Restore = %d, want 0", n)
	}
	if ids := store.ids(); len(ids) != 0 {
		t.Errorf("saved calls left: %v", ids)
	}
	if n := relay2.Sessions(); n != 0 {
		t.Errorf("relay has %d sessions", n)
	}
	r := box2.cdrs.wait(t, 1)[0]
	if r.ID != mc.id+"-1" || r.Disp != cdr.Answered || r.HangupBy != BySystem || r.SIPCode != 200 ||
		!r.Start.Equal(before.Start) || !r.Answer.Equal(before.Answer) || r.End.Before(r.Answer) {
		t.Errorf("CDR of the dropped call = %+v, started %v answered %v", r, before.Start, before.Answer)
	}
	if res := mc.alice.request(sip.BYE, nil); res.StatusCode != 481 {
		t.Errorf("BYE for the dropped call answered %d, want 481", res.StatusCode)
	}
}

// sampleSaved is a valid record of an answered call.
func sampleSaved() SavedCall {
	start := time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)
	leg := func(cid, num string, uas bool) *LegState {
		return &LegState{
			Dialog: Dialog{
				CallID: cid, LocalTag: "lt-" + num, RemoteTag: "rt-" + num,
				LocalURI: "sip:pbx@10.0.0.10", RemoteURI: "sip:" + num + "@10.0.0.10", RemoteName: "Ext " + num,
				LocalSeq: 3, RemoteSeq: 7, RemoteTarget: "sip:" + num + "@192.168.1.20:5062;transport=udp",
				RouteSet: []string{"sip:10.0.0.1;lr"}, Transport: "UDP", Peer: "192.168.1.20:5062", UAS: uas,
			},
			Role: map[bool]string{true: ByCaller, false: ByCallee}[uas], Number: num, Name: "Ext " + num,
			SDP: []byte("v=0\r\n"),
		}
	}
	return SavedCall{
		Version: SavedCallVersion,
		Call: CallState{
			ID: "call-1", Attempt: 1, Attempts: 2, Caller: "100", CallerName: "Alice", Callee: "200",
			State: StateAnswered, Start: start, Answer: start.Add(4 * time.Second),
			Legs: [2]*LegState{leg("call-1", "100", true), leg("call-1-b", "200", false)},
		},
		Media: media.SessionState{ID: "call-1", Legs: [2]media.LegState{
			{Port: 30000, KnownSDP: true, SDPRTP: netip.MustParseAddrPort("192.168.1.20:4000"),
				LatchedRTP: netip.MustParseAddrPort("192.168.1.20:4000"), SSRC: 7, HasSSRC: true,
				Origin: sdp.Origin{Username: "twinpbx", SessionID: 42, Version: 2, Digest: 9}},
			{Port: 30002, RTCPMux: true, Hold: true},
		}},
	}
}

func TestSavedCallRoundTrip(t *testing.T) {
	want := sampleSaved()
	data, err := want.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseSavedCall(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}
}

func TestParseSavedCallRefuses(t *testing.T) {
	tests := []struct {
		name   string
		change func(*SavedCall)
	}{
		{"other version", func(s *SavedCall) { s.Version = 2 }},
		{"no id", func(s *SavedCall) { s.Call.ID = "" }},
		{"media of another call", func(s *SavedCall) { s.Media.ID = "call-2" }},
		{"ringing", func(s *SavedCall) { s.Call.State = StateRinging }},
		{"not answered", func(s *SavedCall) { s.Call.Answer = time.Time{} }},
		{"attempt 0", func(s *SavedCall) { s.Call.Attempt = 0 }},
		{"leg missing", func(s *SavedCall) { s.Call.Legs[LegB] = nil }},
		{"no remote tag", func(s *SavedCall) { s.Call.Legs[LegA].Dialog.RemoteTag = "" }},
		{"bad transport", func(s *SavedCall) { s.Call.Legs[LegA].Dialog.Transport = "SCTP" }},
		{"bad peer", func(s *SavedCall) { s.Call.Legs[LegB].Dialog.Peer = "nowhere" }},
		{"bad target", func(s *SavedCall) { s.Call.Legs[LegB].Dialog.RemoteTarget = "sip:" }},
		{"bad route", func(s *SavedCall) { s.Call.Legs[LegB].Dialog.RouteSet = []string{"<<"} }},
		{"one Call-ID", func(s *SavedCall) { s.Call.Legs[LegB].Dialog.CallID = "call-1" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sampleSaved()
			tt.change(&s)
			data, err := s.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ParseSavedCall(data); err == nil {
				t.Errorf("accepted %s", data)
			}
		})
	}
	for _, junk := range []string{"", "{", "null", `{"call":[]}`, "[1,2]"} {
		if _, err := ParseSavedCall([]byte(junk)); err == nil {
			t.Errorf("accepted %q", junk)
		}
	}
}

func FuzzParseSavedCall(f *testing.F) {
	good, err := sampleSaved().Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"version":1,"call":{"id":"x","legs":[null,{}]},"media":{"id":"x"}}`))
	f.Add([]byte("{"))
	f.Add([]byte(`{"call":{"start":"2026-01-01T00:00:00+02:00"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSavedCall(data)
		if err != nil {
			return
		}
		// What is accepted stays accepted, and stays the same, through
		// another save.
		again, err := s.Marshal()
		if err != nil {
			t.Fatalf("re-encoding an accepted record: %v", err)
		}
		s2, err := ParseSavedCall(again)
		if err != nil {
			t.Fatalf("re-encoded record refused: %v\n%s", err, again)
		}
		third, err := s2.Marshal()
		if err != nil || !bytes.Equal(third, again) {
			t.Fatalf("record changed through a save:\n%s\n%s", again, third)
		}
	})
}

func TestAnsweredCallIsSavedUntilItEnds(t *testing.T) {
	store := &memCalls{}
	e := newEnv(t, withCalls(store))
	alice := newPhone(t, e, "100", "answer")
	carol := newPhone(t, e, "300", "ring")
	e.loc.add("300", carol)
	bob := newPhone(t, e, "200", "answer")
	e.loc.add("200", bob)

	// A ringing call is not saved.
	dave := newPhone(t, e, "400", "answer")
	ringing := dave.dial("300", nil)
	ringing.waitProvisional(180)
	if ids := store.ids(); len(ids) != 0 {
		t.Errorf("ringing call saved: %v", ids)
	}
	if res := ringing.cancel(); res.StatusCode != 200 {
		t.Fatalf("CANCEL answered %d", res.StatusCode)
	}
	ringing.result()

	oc := alice.dial("200", nil)
	if res := oc.result(); res.StatusCode != 200 {
		t.Fatalf("call answered %d", res.StatusCode)
	}
	id := oc.d.CallID
	store.waitSaved(t, id)
	sc := store.get(t, id)
	if sc.Call.State != StateAnswered || sc.Call.Answer.IsZero() || sc.Call.Legs[LegB].Number != "200" ||
		sc.Call.Legs[LegB].Dialog.RemoteTag == "" || sc.Media.ID != id {
		t.Errorf("saved record = %+v", sc)
	}

	// A completed re-INVITE saves the new session descriptions.
	store.mu.Lock()
	saves := store.saves
	store.mu.Unlock()
	if res := alice.request(sip.INVITE, []byte(alice.sdp+"a=sendonly\r\n")); res.StatusCode != 200 {
		t.Fatalf("re-INVITE answered %d", res.StatusCode)
	}
	eventually(t, "a save after the re-INVITE", func() bool {
		store.mu.Lock()
		defer store.mu.Unlock()
		return store.saves > saves
	})
	sc = store.get(t, id)
	if !bytes.Contains(sc.Call.Legs[LegA].SDP, []byte("a=sendonly")) || !bytes.Contains(sc.Call.Legs[LegB].SDP, []byte("a=reanswer")) {
		t.Errorf("saved SDP after the re-INVITE: A %q, B %q", sc.Call.Legs[LegA].SDP, sc.Call.Legs[LegB].SDP)
	}

	if res := alice.request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("BYE answered %d", res.StatusCode)
	}
	store.waitSaved(t)
}

func TestCallCarriesOnWhenSavingFails(t *testing.T) {
	store := &memCalls{fail: errors.New("disk full")}
	e := newEnv(t, withCalls(store))
	alice := newPhone(t, e, "100", "answer")
	bob := newPhone(t, e, "200", "answer")
	e.loc.add("200", bob)
	if res := alice.dial("200", nil).result(); res.StatusCode != 200 {
		t.Fatalf("call answered %d", res.StatusCode)
	}
	if res := alice.request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("BYE answered %d", res.StatusCode)
	}
	bob.wait(sip.BYE, 1)
	if r := e.cdrs.wait(t, 1)[0]; r.Disp != cdr.Answered || r.HangupBy != ByCaller {
		t.Errorf("CDR = %+v", r)
	}
}

func TestAbandonSendsNothing(t *testing.T) {
	store := &memCalls{}
	e := newEnv(t, withCalls(store))
	alice := newPhone(t, e, "100", "answer")
	bob := newPhone(t, e, "200", "answer")
	e.loc.add("200", bob)
	oc := alice.dial("200", nil)
	if res := oc.result(); res.StatusCode != 200 {
		t.Fatalf("call answered %d", res.StatusCode)
	}
	store.waitSaved(t, oc.d.CallID)
	if n := e.b.Abandon(); n != 1 {
		t.Errorf("Abandon = %d, want 1", n)
	}
	if n := len(e.b.Calls()); n != 0 {
		t.Errorf("%d calls left", n)
	}
	if n := e.media.sessions(); n != 0 {
		t.Errorf("%d media sessions left open", n)
	}
	store.waitSaved(t, oc.d.CallID)
	// The abandoned call is unknown here now: its BYE gets 481 and ends
	// nothing.
	if res := alice.request(sip.BYE, nil); res.StatusCode != 481 {
		t.Errorf("BYE answered %d, want 481", res.StatusCode)
	}
	store.waitSaved(t, oc.d.CallID)
	e.cdrs.mu.Lock()
	if n := len(e.cdrs.recs); n != 0 {
		t.Errorf("%d CDRs written", n)
	}
	e.cdrs.mu.Unlock()
	for _, p := range []*phone{alice, bob} {
		if n := p.onWire(sip.BYE); n != 0 {
			t.Errorf("phone %s got %d BYEs", p.number, n)
		}
	}
}

func TestRestoreDropsBadRecords(t *testing.T) {
	store := &memCalls{}
	good := sampleSaved()
	noLegs := sampleSaved()
	noLegs.Call.ID, noLegs.Media.ID = "call-2", "call-2"
	noLegs.Call.Legs[LegB] = nil
	stranger := sampleSaved()
	stranger.Call.ID, stranger.Media.ID = "call-3", "call-3"
	for id, s := range map[string]SavedCall{"call-1": good, "call-2": noLegs, "misfiled": stranger} {
		data, err := s.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := store.SaveCall(id, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.SaveCall("junk", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, withCalls(store))
	if n := restore(t, e); n != 1 {
		t.Fatalf("Restore = %d, want 1", n)
	}
	if ids := store.ids(); !slices.Equal(ids, []string{"call-1"}) {
		t.Errorf("saved calls left: %v", ids)
	}
	if calls := e.b.Calls(); len(calls) != 1 || calls[0].ID != "call-1" || calls[0].State != StateAnswered {
		t.Errorf("calls = %+v", calls)
	}
	recs := e.cdrs.wait(t, 2)
	ids := []string{recs[0].ID, recs[1].ID}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"call-2-1", "call-3-1"}) {
		t.Errorf("CDRs of the dropped calls: %v", ids)
	}
	for _, r := range recs {
		if r.Disp != cdr.Answered || r.HangupBy != BySystem || !r.Start.Equal(good.Call.Start) || !r.Answer.Equal(good.Call.Answer) {
			t.Errorf("CDR = %+v", r)
		}
	}
	// The restored call ends with its original times when the twin hangs up.
	e.hangupAll()
	recs = e.cdrs.wait(t, 3)
	if r := recs[2]; r.ID != "call-1-1" || r.HangupBy != BySystem || !r.Answer.Equal(good.Call.Answer) {
		t.Errorf("CDR of the restored call = %+v", r)
	}
	store.waitSaved(t)
}

// TestTransferredCallSurvivesFailover saves the call as the transfer left
// it: the twin carries on the transferee's call with the target, under the
// transfer's CDR.
func TestTransferredCallSurvivesFailover(t *testing.T) {
	store := &memCalls{}
	box1 := newEnv(t, withCalls(store))
	alice, bob := answered(t, box1)
	carol := newPhone(t, box1, "300", "answer")
	box1.loc.add("300", carol)
	eventually(t, "the answered call saved", func() bool { return len(store.ids()) == 1 })
	id := store.ids()[0]
	if res := bob.request(sip.REFER, nil, sip.NewHeader("Refer-To", "<sip:300@127.0.0.1>")); res.StatusCode != 202 {
		t.Fatalf("REFER answered %d", res.StatusCode)
	}
	bob.wait(sip.BYE, 1)
	eventually(t, "the transferred call saved", func() bool {
		sc := store.get(t, id)
		return sc.Call.Attempt == 2 && sc.Call.Legs[LegB].Number == "300"
	})
	sc := store.get(t, id)
	if sc.Call.Caller != "100" || sc.Call.Callee != "300" || sc.Call.Legs[LegB].Role != ByCallee {
		t.Errorf("saved transferred call = %+v", sc.Call)
	}

	box1.crash()
	box2 := newEnvAt(t, box1.addr, withCalls(store))
	if n := restore(t, box2); n != 1 {
		t.Fatalf("Restore = %d, want 1", n)
	}
	if res := carol.request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("target's BYE answered %d", res.StatusCode)
	}
	alice.wait(sip.BYE, 1)
	r := box2.cdrs.wait(t, 1)[0]
	if r.ID != id+"-2" || r.Caller != "100" || r.Callee != "300" || r.HangupBy != ByCallee || !r.Answer.Equal(sc.Call.Answer) {
		t.Errorf("twin's CDR of the transferred call = %+v", r)
	}
	store.waitSaved(t)
}

// TestRestoredCallWithoutMediaEnds hangs up a restored call when neither
// phone sends media any more: they hung up while no box answered.
func TestRestoredCallWithoutMediaEnds(t *testing.T) {
	const ports = 29520
	store := &memCalls{}
	relay1 := newRelay(t, ports)
	box1 := newEnv(t, withMedia(relayMedia{relay1}), withCalls(store))
	mc := answeredCall(t, box1)
	store.waitSaved(t, mc.id)
	box1.crash()
	_ = relay1.Close()

	relay2 := newRelay(t, ports)
	box2 := newEnvAt(t, box1.addr, withMedia(relayMedia{relay2}), withCalls(store),
		func(o *Options) { o.RestoredIdle = 200 * time.Millisecond })
	if n := restore(t, box2); n != 1 {
		t.Fatalf("Restore = %d, want 1", n)
	}
	mc.alice.wait(sip.BYE, 1)
	mc.bob.wait(sip.BYE, 1)
	if r := box2.cdrs.wait(t, 1)[0]; r.HangupBy != BySystem || r.Disp != cdr.Answered {
		t.Errorf("CDR = %+v", r)
	}
	store.waitSaved(t)
	eventually(t, "relay sessions closed", func() bool { return relay2.Sessions() == 0 })
}
