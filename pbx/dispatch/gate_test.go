package dispatch

import (
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// optionsTo is an OPTIONS from p to the dispatcher at d itself.
func optionsTo(p *phone, d netip.AddrPort, callID string) string {
	return "OPTIONS sip:" + d.String() + " SIP/2.0\r\nVia: SIP/2.0/UDP " + p.addr.String() + ";branch=z9hG4bK" + callID +
		"\r\nFrom: <sip:m@x>;tag=1\r\nTo: <sip:" + d.String() + ">\r\nCall-ID: " + callID + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
}

// TestServingGate: while the gate is shut the dispatcher passes nothing on
// and answers nothing, but its probes go on and their answers count; once
// it opens, calls go through and its own answers name it in Server.
func TestServingGate(t *testing.T) {
	bs := threeBackends(t)
	var open atomic.Bool
	disp, d := startDispatcher(t, Config{Algorithm: RoundRobin, ProbeInterval: 20 * time.Millisecond, DownAfter: 1, UpAfter: 1,
		TxTimeout: time.Hour, Serving: open.Load, Server: "twinpbx/lb-a"}, bs...)
	p := newPhone(t)
	since := time.Now()
	p.send(d, p.request(d, &call{id: "shut"}, sip.INVITE, "shut"))
	p.send(d, optionsTo(p, d, "opt-shut"))
	if got := p.drain(300 * time.Millisecond); len(got) != 0 {
		t.Errorf("the dispatcher answered %d times while not serving: %v", len(got), got[0].StartLine())
	}
	for i, b := range bs {
		if got := b.requests(since); len(got) != 0 {
			t.Errorf("backend %d got %v while the dispatcher was not serving", i, got)
		}
	}

	bs[1].silent.Store(true)
	waitFor(t, "backend 1 down while not serving", backendDown(disp, 1))
	bs[1].silent.Store(false)
	waitFor(t, "backend 1 up again while not serving", backendUp(disp, 1))

	open.Store(true)
	p.establish(d, "open")
	p.send(d, optionsTo(p, d, "opt-open"))
	res := p.final("opt-open", sip.OPTIONS)
	if h := res.GetHeader("Server"); res.StatusCode != 200 || h == nil || h.Value() != "twinpbx/lb-a" {
		t.Errorf("OPTIONS to the serving dispatcher: %s, want 200 with Server: twinpbx/lb-a", res.StartLine())
	}
}

// TestProbeFrom: with ProbeFrom the probes leave from a socket of their own,
// not the listener, and the answers sent back to it count.
func TestProbeFrom(t *testing.T) {
	be, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	beAddr := be.LocalAddr().(*net.UDPAddr).AddrPort()
	cfg := Config{Algorithm: RoundRobin, ProbeInterval: 20 * time.Millisecond, DownAfter: 1, UpAfter: 1, TxTimeout: time.Hour,
		ProbeFrom: netip.MustParseAddr("127.0.0.1"), Backends: []Backend{{Addr: beAddr}}}
	disp, d := startDispatcher(t, cfg)
	waitFor(t, "the silent backend down", backendDown(disp, 0))

	// Answer every probe until the backend is up.
	buf := make([]byte, 65535)
	deadline := time.Now().Add(10 * time.Second)
	for !disp.Status().Backends[0].Up {
		if time.Now().After(deadline) {
			t.Fatal("the backend answering the probes was not marked up")
		}
		_ = be.SetReadDeadline(time.Now().Add(time.Second))
		n, from, err := be.ReadFromUDPAddrPort(buf)
		if err != nil {
			continue
		}
		m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
		req, ok := m.(*sip.Request)
		if err != nil || !ok || req.Method != sip.OPTIONS {
			t.Fatalf("the backend got %q, want the dispatcher's OPTIONS", buf[:n])
		}
		if from.Port() == d.Port() {
			t.Fatalf("the probe came from the listener %s, not the probe socket", d)
		}
		if via := req.Via(); via.Port != int(from.Port()) || !strings.HasPrefix(via.Host, "127.0.0.1") {
			t.Fatalf("the probe's Via %s does not name its socket %s", via.SentBy(), from)
		}
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		if _, err := be.WriteToUDPAddrPort([]byte(res.String()), from); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGateShutAfterForwarding: a call forwarded while serving, whose
// answers the closed gate then drops, neither marks its backend down nor
// goes on to another backend: the twin that serves now has the call.
func TestGateShutAfterForwarding(t *testing.T) {
	bs := threeBackends(t)
	for _, b := range bs {
		b.dropInvites.Store(true)
	}
	var open atomic.Bool
	open.Store(true)
	disp, d := startDispatcher(t, Config{Algorithm: RoundRobin, ProbeInterval: time.Hour, TxTimeout: 100 * time.Millisecond,
		Attempts: 3, Serving: open.Load}, bs...)
	p := newPhone(t)
	p.send(d, p.request(d, &call{id: "left"}, sip.INVITE, "left"))
	waitFor(t, "the INVITE at a backend", func() bool {
		for _, b := range bs {
			if b.last(sip.INVITE, "left") != nil {
				return true
			}
		}
		return false
	})
	p.response("left", 100) // the dispatcher's own, sent with the INVITE
	open.Store(false)
	// Ten sweeps' time: nothing may happen.
	if got := p.drain(time.Second); len(got) != 0 {
		t.Errorf("the phone got %s from a dispatcher that no longer serves", got[len(got)-1].StartLine())
	}
	n := 0
	for i, b := range bs {
		if b.last(sip.INVITE, "left") != nil {
			n++
		}
		if !disp.Status().Backends[i].Up {
			t.Errorf("backend %d was marked down for answers the closed gate dropped", i)
		}
	}
	if n != 1 {
		t.Errorf("the call reached %d backends, want the first one only", n)
	}
}
