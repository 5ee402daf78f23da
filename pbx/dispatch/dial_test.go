package dispatch

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// tcpListeningPhone is a phone that listens on TCP and takes the
// connections the dispatcher opens to it.
type tcpListeningPhone struct {
	ln    net.Listener
	addr  netip.AddrPort
	conns chan *tcpPhone
}

func newTCPListeningPhone(t *testing.T) *tcpListeningPhone {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpListeningPhone{ln: ln, addr: ln.Addr().(*net.TCPAddr).AddrPort(), conns: make(chan *tcpPhone, 8)}
	done := make(chan struct{})
	t.Cleanup(func() { _ = ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.conns <- newStreamPhone(t, c)
		}
	}()
	return p
}

// accepted waits for the next connection the dispatcher opened.
func (p *tcpListeningPhone) accepted(t *testing.T) *tcpPhone {
	t.Helper()
	select {
	case c := <-p.conns:
		return c
	case <-time.After(phoneWait):
		t.Fatal("the dispatcher opened no connection to the phone")
		return nil
	}
}

// TestDialPhone: a backend's INVITE for a phone's TCP Contact that has no
// connection to the dispatcher makes the dispatcher open one to the
// Contact: the INVITE arrives over it with the dispatcher's TCP Via and two
// Record-Route entries, the phone's 200 reaches the backend, and the
// backend's BYE comes over the same connection. After the phone closed it,
// the next request of the dialog opens a new one. A phone's own request
// for that Contact opens none (480), nor does one for a Contact where
// nothing listens (480).
func TestDialPhone(t *testing.T) {
	be := newFakeBackend(t)
	d, addrs := startDispatcherAll(t, streamConfig(), be)
	udp, tcp := netip.MustParseAddrPort(addrs[0]), strings.TrimPrefix(addrs[1], "tcp:")
	ph := newTCPListeningPhone(t)
	contact := fmt.Sprintf("sip:100@%s;transport=tcp", ph.addr)
	send := func(method, id string, seq int, toTag string, route []string) {
		t.Helper()
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s%d;rport\r\n", method, contact, be.addr, id, seq)
		for _, r := range route {
			fmt.Fprintf(&b, "Route: %s\r\n", r)
		}
		to := "<sip:100@pbx>"
		if toTag != "" {
			to += ";tag=" + toTag
		}
		fmt.Fprintf(&b, "From: <sip:300@pbx>;tag=be%s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d %s\r\nContact: <sip:300@%s>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
			id, to, id, seq, method, be.addr)
		if err := be.sendTo(udp, b.String()); err != nil {
			t.Fatal(err)
		}
	}

	send("INVITE", "dialcall", 1, "", nil)
	conn := ph.accepted(t)
	inv, ok := conn.next().(*sip.Request)
	if !ok || inv.Method != sip.INVITE || inv.CallID().Value() != "dialcall" {
		t.Fatalf("the phone got %v, want the backend's INVITE", inv)
	}
	if v := inv.Via(); v.Transport != "TCP" || v.SentBy() != tcp {
		t.Errorf("the INVITE's Via %q: want the dispatcher's TCP listener %s", v.Value(), tcp)
	}
	rr := routes(inv)
	if len(rr) != 2 || !strings.Contains(rr[0], "transport=tcp") || !strings.Contains(rr[0], flowParam+"=") {
		t.Fatalf("Record-Route at the phone %q", rr)
	}
	ok200 := sip.NewResponseFromRequest(inv, 200, "OK", nil)
	ok200.To().Params.Add("tag", "ph")
	conn.send(ok200.String())
	waitFor(t, "the phone's 200 at the backend", func() bool { return be.answered("dialcall") == 200 })

	// The backend hangs up: over the same connection.
	route := reversed(rr)
	send("BYE", "dialcall", 2, "ph", route)
	bye, ok := conn.next().(*sip.Request)
	if !ok || bye.Method != sip.BYE {
		t.Fatalf("the phone got %v, want the BYE over its connection", bye)
	}

	// The phone closes the connection: the next request of the dialog
	// opens another.
	_ = conn.conn.Close()
	waitFor(t, "the dispatcher sees the connection closed", func() bool { return *d.Status().Connections == 0 })
	send("INFO", "dialcall", 3, "ph", route)
	again := ph.accepted(t)
	if info, ok := again.next().(*sip.Request); !ok || info.Method != "INFO" {
		t.Fatalf("the phone got %v over the new connection, want the INFO", info)
	}

	// A phone's own request for that Contact opens nothing: 480.
	other := newPhone(t)
	info := fmt.Sprintf("INFO %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKother;rport\r\nFrom: <sip:400@pbx>;tag=o\r\nTo: <sip:100@pbx>;tag=x\r\n"+
		"Call-ID: other\r\nCSeq: 1 INFO\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", contact, other.addr)
	_ = again.conn.Close()
	waitFor(t, "the second connection closed", func() bool { return *d.Status().Connections == 0 })
	other.send(udp, info)
	if res := other.final("other", "INFO"); res.StatusCode != 480 {
		t.Fatalf("a phone's request for a closed TCP Contact: %d, want 480", res.StatusCode)
	}
	select {
	case <-ph.conns:
		t.Fatal("a phone's request made the dispatcher connect")
	default:
	}

	// Nothing listens at the Contact: 480.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	contact = fmt.Sprintf("sip:100@%s;transport=tcp", ln.Addr())
	_ = ln.Close()
	send("INVITE", "nobody", 1, "", nil)
	waitFor(t, "480 for a Contact nobody listens on", func() bool { return be.answered("nobody") == 480 })
}
