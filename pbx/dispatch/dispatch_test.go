package dispatch

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func threeBackends(t *testing.T) []*fakeBackend {
	return []*fakeBackend{newFakeBackend(t), newFakeBackend(t), newFakeBackend(t)}
}

// owner returns the index of the backend that got the INVITE of callID
// and fails unless exactly one did.
func owner(t *testing.T, bs []*fakeBackend, callID string) int {
	t.Helper()
	who := -1
	for i, b := range bs {
		if b.last(sip.INVITE, callID) != nil {
			if who >= 0 {
				t.Fatalf("call %s reached backends %d and %d", callID, who, i)
			}
			who = i
		}
	}
	if who < 0 {
		t.Fatalf("call %s reached no backend", callID)
	}
	return who
}

// TestDialogPersistence: every request of a dialog (ACK, re-INVITE, BYE)
// reaches the backend of its INVITE, while round robin spreads the calls.
func TestDialogPersistence(t *testing.T) {
	bs := threeBackends(t)
	_, d := startDispatcher(t, Config{Algorithm: RoundRobin, ProbeInterval: time.Hour}, bs...)
	p := newPhone(t)
	per := make([]int, 3)
	for k := range 6 {
		id := fmt.Sprintf("persist-%d", k)
		c := p.establish(d, id)
		p.send(d, p.request(d, c, sip.INVITE, "re"+id))
		if res := p.final(id, sip.INVITE); res.StatusCode != 200 {
			t.Fatalf("re-INVITE: %d", res.StatusCode)
		}
		p.send(d, p.request(d, c, sip.ACK, "reack"+id))
		p.send(d, p.request(d, c, sip.BYE, "bye"+id))
		if res := p.final(id, sip.BYE); res.StatusCode != 200 {
			t.Fatalf("BYE: %d", res.StatusCode)
		}
		who := owner(t, bs, id)
		per[who]++
		want := []string{"INVITE " + id, "ACK " + id, "INVITE " + id, "ACK " + id, "BYE " + id}
		var got []string
		waitFor(t, "the last ACK", func() bool {
			got = got[:0]
			for _, r := range bs[who].requests(time.Time{}) {
				if strings.HasSuffix(r, " "+id) {
					got = append(got, r)
				}
			}
			return len(got) >= len(want)
		})
		// UDP and two reading goroutines keep no order between the ACK
		// and the BYE sent right after it.
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("call %s: backend %d got %v, want %v", id, who, got, want)
		}
	}
	if !slices.Equal(per, []int{2, 2, 2}) {
		t.Errorf("calls per backend %v, want 2 each", per)
	}
}

// TestForwardedRequest: the backend sees the dispatcher's Via on top of
// the caller's (with received and rport), Max-Forwards one less, and the
// dispatcher's Record-Route naming the backend.
func TestForwardedRequest(t *testing.T) {
	bs := threeBackends(t)
	_, d := startDispatcher(t, Config{Algorithm: HashCallID, ProbeInterval: time.Hour}, bs...)
	p := newPhone(t)
	for _, tc := range []struct {
		id    string
		extra []string
		mf    uint32
	}{
		{"fw-default", nil, 70},
		{"fw-set", []string{"Max-Forwards: 5"}, 4},
	} {
		c := &call{id: tc.id}
		p.send(d, p.request(d, c, sip.INVITE, tc.id, tc.extra...))
		if res := p.final(tc.id, sip.INVITE); res.StatusCode != 200 {
			t.Fatalf("%s: %d", tc.id, res.StatusCode)
		}
		who := owner(t, bs, tc.id)
		req := bs[who].last(sip.INVITE, tc.id)
		vias := req.GetHeaders("Via")
		if len(vias) != 2 {
			t.Fatalf("%s: %d Vias, want 2", tc.id, len(vias))
		}
		top := vias[0].(*sip.ViaHeader)
		if top.SentBy() != d.String() || !strings.HasPrefix(top.Params.GetOr("branch", ""), branchPrefix) {
			t.Errorf("%s: top Via %s", tc.id, top.Value())
		}
		caller := vias[1].(*sip.ViaHeader)
		if caller.Params.GetOr("rport", "") != fmt.Sprint(p.addr.Port()) || caller.Params.GetOr("received", "") != "127.0.0.1" {
			t.Errorf("%s: caller's Via %s lacks rport/received", tc.id, caller.Value())
		}
		if got := req.MaxForwards().Val(); got != tc.mf {
			t.Errorf("%s: Max-Forwards %d, want %d", tc.id, got, tc.mf)
		}
		rr := req.RecordRoute()
		if rr == nil || rr.Address.Host != "127.0.0.1" || rr.Address.Port != int(d.Port()) ||
			!rr.Address.UriParams.Has("lr") || rr.Address.UriParams.GetOr(routeParam, "") != backendTag(bs[who].addr.String()) {
			t.Errorf("%s: Record-Route %v", tc.id, rr)
		}
	}
	// A request out of hops is refused here.
	c := &call{id: "fw-zero"}
	p.send(d, p.request(d, c, sip.INVITE, "fw-zero", "Max-Forwards: 0"))
	if res := p.final("fw-zero", sip.INVITE); res.StatusCode != sip.StatusTooManyHops {
		t.Errorf("Max-Forwards 0: %d, want 483", res.StatusCode)
	}
}

// TestDialogSurvivesRestart: the backend is in the Route, so a BYE after
// the dispatcher restarted still reaches it, also when the backend's
// Contact names no address the caller could use.
func TestDialogSurvivesRestart(t *testing.T) {
	bs := []*fakeBackend{newFakeBackend(t, "pbx.internal"), newFakeBackend(t, "pbx.internal"), newFakeBackend(t, "pbx.internal")}
	p := newPhone(t)
	var c *call
	var addr netip.AddrPort
	t.Run("before", func(t *testing.T) {
		_, addr = startDispatcher(t, Config{Algorithm: RoundRobin, ProbeInterval: time.Hour}, bs...)
		p.t = t
		c = p.establish(addr, "restart-1")
	})
	p.t = t
	who := owner(t, bs, "restart-1")
	// The new one starts its round robin afresh: without the Route the
	// BYE would go to backend 0.
	_, d := startDispatcher(t, Config{Algorithm: RoundRobin, ProbeInterval: time.Hour, Listen: []netip.AddrPort{addr}}, bs...)
	if who == 0 {
		p.establish(d, "restart-other") // make the next round robin pick another backend
	}
	p.send(d, p.request(d, c, sip.BYE, "bye-restart"))
	if res := p.final("restart-1", sip.BYE); res.StatusCode != 200 {
		t.Fatalf("BYE: %d", res.StatusCode)
	}
	if bs[who].last(sip.BYE, "restart-1") == nil {
		t.Errorf("the BYE did not reach backend %d, which has the call", who)
	}
}

// TestRetransmissionAndCancel: with round robin, a retransmitted INVITE
// and its CANCEL go where the INVITE went, not to the next backend; a
// retransmission the backend has answered is absorbed, the caller getting
// a 100 from the dispatcher.
func TestRetransmissionAndCancel(t *testing.T) {
	bs := threeBackends(t)
	for _, b := range bs {
		b.ringOnly.Store(true)
		b.silent.Store(true)
	}
	_, d := startDispatcher(t, Config{Algorithm: RoundRobin, ProbeInterval: time.Hour, TxTimeout: time.Hour}, bs...)
	p := newPhone(t)
	c := &call{id: "cancel-1"}
	inv := p.request(d, c, sip.INVITE, "cancel-1")
	invites := func() []int {
		n := make([]int, len(bs))
		for i, b := range bs {
			for _, r := range b.requests(time.Time{}) {
				if r == "INVITE cancel-1" {
					n[i]++
				}
			}
		}
		return n
	}
	total := func() int { n := invites(); return n[0] + n[1] + n[2] }
	p.send(d, inv)
	p.send(d, inv)
	waitFor(t, "both unanswered INVITEs passed on", func() bool { return total() == 2 })
	who := owner(t, bs, "cancel-1")
	if n := invites()[who]; n != 2 {
		t.Fatalf("INVITEs per backend %v: the retransmission went elsewhere", invites())
	}
	bs[who].silent.Store(false)
	p.send(d, inv)
	p.response("cancel-1", 180)
	p.send(d, inv) // answered by the backend: absorbed
	p.response("cancel-1", 100)
	p.send(d, p.request(d, c, sip.CANCEL, "cancel-1"))
	if res := p.final("cancel-1", sip.CANCEL); res.StatusCode != 200 {
		t.Fatalf("CANCEL: %d", res.StatusCode)
	}
	if bs[who].last(sip.CANCEL, "cancel-1") == nil {
		t.Errorf("the CANCEL did not reach backend %d", who)
	}
	// The CANCEL came after the last INVITE, from the same sender, so
	// that INVITE would have arrived first had it been passed on.
	if n := invites(); n[who] != 3 || total() != 3 {
		t.Errorf("INVITEs per backend %v, want 3 at backend %d: the answered retransmission was not absorbed", n, who)
	}
	// A CANCEL for nothing sent is answered here.
	p.send(d, p.request(d, &call{id: "cancel-none"}, sip.CANCEL, "nothing"))
	if res := p.final("cancel-none", sip.CANCEL); res.StatusCode != 481 {
		t.Errorf("CANCEL of nothing: %d, want 481", res.StatusCode)
	}
}

// TestRetransmissionAfterAnswer: an INVITE repeated after its 200 goes
// on to the backend (which repeats its answer), and the dispatcher's own
// 100 Trying goes with the first copy only.
func TestRetransmissionAfterAnswer(t *testing.T) {
	bs := threeBackends(t)
	_, d := startDispatcher(t, Config{Algorithm: RoundRobin, ProbeInterval: time.Hour}, bs...)
	p := newPhone(t)
	c := &call{id: "again"}
	inv := p.request(d, c, sip.INVITE, "again")
	// ours counts the 100s the dispatcher made (the backend's carry a
	// Server header) among the responses up to the 200, and those still
	// on their way a moment later.
	ours := func() int {
		n := 0
		got := append(p.until("again", 200), p.drain(50*time.Millisecond)...)
		for _, res := range got {
			if res.StatusCode == 100 && res.GetHeader("Server") == nil {
				n++
			}
		}
		return n
	}
	p.send(d, inv)
	if n := ours(); n != 1 {
		t.Errorf("first INVITE: the dispatcher sent %d 100 Trying, want 1", n)
	}
	p.send(d, inv)
	if n := ours(); n != 0 {
		t.Errorf("INVITE repeated after the 200: the dispatcher sent %d 100 Trying, want none", n)
	}
	who := owner(t, bs, "again")
	if n := len(bs[who].requests(time.Time{})); n != 2 {
		t.Errorf("the backend got %d INVITEs, want 2", n)
	}
}

// TestHashAlgorithmsThroughProxy: calls with a common From, To or R-URI
// land on one backend; with hash over Call-ID they spread.
func TestHashAlgorithmsThroughProxy(t *testing.T) {
	for _, alg := range []Algorithm{HashCallID, HashFrom, HashTo, HashRURI} {
		t.Run(alg.String(), func(t *testing.T) {
			bs := threeBackends(t)
			_, d := startDispatcher(t, Config{Algorithm: alg, ProbeInterval: time.Hour}, bs...)
			p := newPhone(t)
			seen := map[int]bool{}
			for k := range 12 {
				id := fmt.Sprintf("%s-%d", alg, k)
				p.establish(d, id)
				seen[owner(t, bs, id)] = true
			}
			// All calls share From, To and R-URI (see phone.request).
			if alg == HashCallID && len(seen) < 2 || alg != HashCallID && len(seen) != 1 {
				t.Errorf("calls went to backends %v", seen)
			}
		})
	}
}

// TestBackendDownAndUp: a backend that stops answering is marked down
// after DownAfter probes and gets no new call; when it answers again it
// is marked up after UpAfter probes and gets its share again.
func TestBackendDownAndUp(t *testing.T) {
	bs := threeBackends(t)
	disp, d := startDispatcher(t, Config{Algorithm: RoundRobin, ProbeInterval: 20 * time.Millisecond, DownAfter: 2, UpAfter: 3, TxTimeout: time.Hour}, bs...)
	p := newPhone(t)
	bs[1].silent.Store(true)
	waitFor(t, "backend 1 down", backendDown(disp, 1))
	since := time.Now()
	for k := range 12 {
		p.establish(d, fmt.Sprintf("down-%d", k))
	}
	if got := bs[1].requests(since); len(got) != 0 {
		t.Errorf("backend 1 is down but got %v", got)
	}
	bs[1].silent.Store(false)
	waitFor(t, "backend 1 up", backendUp(disp, 1))
	for k := range 12 {
		p.establish(d, fmt.Sprintf("up-%d", k))
	}
	if got := disp.Status().Backends[1].Sent; got < 4 {
		t.Errorf("backend 1 is up again but got %d of 12 calls", got)
	}
}

// TestTxTimeoutMarksDown: a backend that answers OPTIONS but leaves an
// INVITE unanswered is marked down.
func TestTxTimeoutMarksDown(t *testing.T) {
	bs := threeBackends(t)
	bs[0].dropInvites.Store(true)
	disp, d := startDispatcher(t, Config{Algorithm: RoundRobin, ProbeInterval: time.Hour, TxTimeout: 50 * time.Millisecond}, bs...)
	p := newPhone(t)
	p.send(d, p.request(d, &call{id: "lost"}, sip.INVITE, "lost"))
	waitFor(t, "backend 0 down", backendDown(disp, 0))
	for i := 1; i < 3; i++ {
		if !disp.Status().Backends[i].Up {
			t.Errorf("backend %d is down too", i)
		}
	}
}

// TestInDialogNotTracked: a request inside a dialog that the backend
// leaves unanswered (a BYE repeated after the dialog ended) does not go
// into the request table, so it cannot mark the backend down.
func TestInDialogNotTracked(t *testing.T) {
	bs := threeBackends(t)
	disp, d := startDispatcher(t, Config{Algorithm: RoundRobin, ProbeInterval: time.Hour}, bs...)
	p := newPhone(t)
	c := p.establish(d, "dialog-bye")
	who := owner(t, bs, "dialog-bye")
	before := disp.pend.size()
	bs[who].silent.Store(true)
	p.send(d, p.request(d, c, sip.BYE, "late-bye"))
	waitFor(t, "the BYE at the backend", func() bool { return bs[who].last(sip.BYE, "dialog-bye") != nil })
	if after := disp.pend.size(); after != before {
		t.Errorf("the request table grew from %d to %d entries with an in-dialog BYE", before, after)
	}
}

// TestNoBackendUp: with every backend down a new call gets 503, and the
// dispatcher answers OPTIONS addressed to itself.
func TestNoBackendUp(t *testing.T) {
	bs := threeBackends(t)
	for _, b := range bs {
		b.silent.Store(true)
	}
	disp, d := startDispatcher(t, Config{Algorithm: HashFrom, ProbeInterval: 10 * time.Millisecond, DownAfter: 1}, bs...)
	for i := range bs {
		waitFor(t, fmt.Sprint("backend ", i, " down"), backendDown(disp, i))
	}
	p := newPhone(t)
	p.send(d, p.request(d, &call{id: "none"}, sip.INVITE, "none"))
	if res := p.final("none", sip.INVITE); res.StatusCode != 503 {
		t.Errorf("INVITE with no backend up: %d, want 503", res.StatusCode)
	}
	opt := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKopt\r\nFrom: <sip:m@x>;tag=1\r\nTo: <sip:%s>\r\nCall-ID: opt-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", d, p.addr, d)
	p.send(d, opt)
	if res := p.final("opt-1", sip.OPTIONS); res.StatusCode != 200 {
		t.Errorf("OPTIONS to the dispatcher: %d, want 200", res.StatusCode)
	}
}

func TestNewRefuses(t *testing.T) {
	l := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}
	b := Backend{Addr: netip.MustParseAddrPort("10.0.0.1:5060")}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no backends", Config{Listen: l}},
		{"no listener", Config{Backends: []Backend{b}}},
		{"bad algorithm", Config{Listen: l, Backends: []Backend{b}, Algorithm: 9}},
		{"twice", Config{Listen: l, Backends: []Backend{b, b}}},
		{"no port", Config{Listen: l, Backends: []Backend{{Addr: netip.MustParseAddrPort("10.0.0.1:0")}}}},
		{"negative weight", Config{Listen: l, Backends: []Backend{{Addr: b.Addr, Weight: -1}}}},
	} {
		if _, err := New(tc.cfg); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

// TestNewKeepsBackends: New fills in defaults on its own copy of the
// backends, not in the caller's slice (a caller may build several
// dispatchers from one config).
func TestNewKeepsBackends(t *testing.T) {
	bs := []Backend{{Addr: netip.MustParseAddrPort("[::ffff:10.0.0.1]:5060")}, {Addr: netip.MustParseAddrPort("10.0.0.2:5060"), Weight: 3}}
	want := slices.Clone(bs)
	if _, err := New(Config{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, Backends: bs}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(bs, want) {
		t.Errorf("New changed the caller's backends: %+v, was %+v", bs, want)
	}
}

// TestCallFromBackend: a backend calling a phone that registered through
// the dispatcher sends the INVITE to the dispatcher (where the REGISTER
// came from); it goes to the phone, Record-Routed with that backend, and
// the phone's BYE goes back to that backend, not to one the algorithm
// would pick. A request whose next hop is the dispatcher is refused.
func TestCallFromBackend(t *testing.T) {
	bs := threeBackends(t)
	_, d := startDispatcher(t, Config{Algorithm: RoundRobin, ProbeInterval: time.Hour}, bs...)
	p := newPhone(t)
	be := bs[2]
	inv := fmt.Sprintf("INVITE sip:300@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKfrombe;rport\r\n"+
		"From: <sip:100@pbx>;tag=be1\r\nTo: <sip:300@pbx>\r\nCall-ID: from-backend\r\nCSeq: 1 INVITE\r\n"+
		"Contact: <sip:100@%s>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", p.addr, be.addr, be.addr)
	if err := be.sendTo(d, inv); err != nil {
		t.Fatal(err)
	}
	req := p.nextRequest()
	rr := req.RecordRoute()
	if req.CallID().Value() != "from-backend" || rr == nil || rr.Address.UriParams.GetOr(routeParam, "") != backendTag(be.addr.String()) {
		t.Fatalf("the phone got %s with Record-Route %v", req.StartLine(), rr)
	}
	// The phone ends the call: its BYE follows the route set.
	c := &call{id: "from-backend", toTag: "be1", route: []string{rr.Value()}, remote: "sip:100@pbx.internal"}
	p.send(d, p.request(d, c, sip.BYE, "byefrombe"))
	waitFor(t, "the BYE at the calling backend", func() bool { return be.last(sip.BYE, "from-backend") != nil })
	for _, b := range bs[:2] {
		if got := b.requests(time.Time{}); len(got) != 0 {
			t.Errorf("another backend got %v", got)
		}
	}

	loop := strings.Replace(strings.Replace(inv, "sip:300@"+p.addr.String(), "sip:300@"+d.String(), 1), "from-backend", "loop", 1)
	if err := be.sendTo(d, loop); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the backend to get its 482", func() bool { return be.answered("loop") == 482 })
}

// TestCancelFromBackend: a backend cancelling its call to a phone reaches
// the phone, as its INVITE did.
func TestCancelFromBackend(t *testing.T) {
	bs := threeBackends(t)
	_, d := startDispatcher(t, Config{Algorithm: RoundRobin, ProbeInterval: time.Hour}, bs...)
	p := newPhone(t)
	be := bs[1]
	msg := func(method sip.RequestMethod) string {
		return fmt.Sprintf("%s sip:300@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKbecancel;rport\r\n"+
			"From: <sip:100@pbx>;tag=be2\r\nTo: <sip:300@pbx>\r\nCall-ID: be-cancel\r\nCSeq: 1 %s\r\n"+
			"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", method, p.addr, be.addr, method)
	}
	for _, m := range []sip.RequestMethod{sip.INVITE, sip.CANCEL} {
		if err := be.sendTo(d, msg(m)); err != nil {
			t.Fatal(err)
		}
		if req := p.nextRequest(); req.Method != m || req.CallID().Value() != "be-cancel" {
			t.Fatalf("the phone got %s %s, want %s", req.Method, req.CallID().Value(), m)
		}
	}
}

// TestProbeAnswerFromAStranger: answers to a silent backend's probes
// that come from another host (here another loopback address, with the
// right branch) do not bring it up; its own answers do.
func TestProbeAnswerFromAStranger(t *testing.T) {
	bs := threeBackends(t)
	disp, d := startDispatcher(t, Config{Algorithm: RoundRobin, ProbeInterval: 20 * time.Millisecond, DownAfter: 1, UpAfter: 1, TxTimeout: time.Hour}, bs...)
	bs[1].silent.Store(true)
	waitFor(t, "backend 1 down", backendDown(disp, 1))
	stranger, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	answer := func() {
		p := disp.probes
		p.mu.Lock()
		seq := p.seq[1]
		p.mu.Unlock()
		res := fmt.Sprintf("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP %s;branch=%s1-%d\r\nFrom: <sip:dispatcher@%s>;tag=x\r\nTo: <sip:%s>;tag=y\r\nCall-ID: spoof\r\nCSeq: %d OPTIONS\r\nContent-Length: 0\r\n\r\n",
			d, probePrefix, seq, d, bs[1].addr, seq)
		if _, err := stranger.WriteToUDPAddrPort([]byte(res), d); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		answer()
		if disp.Status().Backends[1].Up {
			t.Fatal("a stranger's answers to the probes brought a silent backend up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	bs[1].silent.Store(false)
	waitFor(t, "backend 1 up on its own answers", backendUp(disp, 1))
}
