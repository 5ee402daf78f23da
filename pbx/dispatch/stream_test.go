package dispatch

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/tlscert"
)

const framedInvite = "INVITE sip:200@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.2:5060;branch=z9hG4bKa\r\n" +
	"From: <sip:100@x>;tag=1\r\nTo: <sip:200@x>\r\nCall-ID: f1\r\nCSeq: 1 INVITE\r\nContent-Length: 4\r\n\r\nv=0\n"

const framedBye = "BYE sip:200@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.2:5060;branch=z9hG4bKb\r\n" +
	"From: <sip:100@x>;tag=1\r\nTo: <sip:200@x>;tag=2\r\nCall-ID: f1\r\nCSeq: 2 BYE\r\nl: 0\r\n\r\n"

// TestFramer: messages come out whole however the stream is cut, pipelined
// ones one by one, keep-alives are counted, and what cannot be framed is
// an error.
func TestFramer(t *testing.T) {
	huge := strings.Replace(framedInvite, "Content-Length: 4", fmt.Sprintf("Content-Length: %d", maxStreamMessage), 1)
	longHeader := "INVITE sip:a@b SIP/2.0\r\nX: " + strings.Repeat("a", maxStreamMessage+10)
	for _, tc := range []struct {
		name    string
		stream  string
		methods []string
		pings   int
		err     bool
	}{
		{"one", framedInvite, []string{"INVITE"}, 0, false},
		{"pipelined", framedInvite + framedBye + framedInvite, []string{"INVITE", "BYE", "INVITE"}, 0, false},
		{"compact content length", framedBye, []string{"BYE"}, 0, false},
		{"ping before and between", "\r\n\r\n" + framedInvite + "\r\n\r\n\r\n\r\n" + framedBye, []string{"INVITE", "BYE"}, 3, false},
		{"pong only", "\r\n", nil, 0, false},
		{"partial", framedInvite[:40], nil, 0, false},
		{"partial body", framedInvite[:len(framedInvite)-2], nil, 0, false},
		{"oversized by its Content-Length", huge, nil, 0, true},
		{"oversized header", longHeader, nil, 0, true},
		{"no Content-Length", strings.Replace(framedBye, "l: 0\r\n", "", 1), nil, 0, true},
		{"garbage", "HELLO\r\n\r\n", nil, 0, true},
		{"message then garbage", framedBye + "\x00\x01\r\n\r\n", []string{"BYE"}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Whole, then cut at every byte: the same outcome.
			for _, step := range []int{len(tc.stream), 1, 7} {
				f := newFramer()
				var got []string
				pings, failed := 0, false
				for i := 0; i < len(tc.stream) && !failed; i += step {
					msgs, p, err := f.feed([]byte(tc.stream[i:min(i+step, len(tc.stream))]))
					for _, m := range msgs {
						got = append(got, string(m.(*sip.Request).Method))
					}
					pings += p
					failed = err != nil
				}
				f.close()
				if strings.Join(got, " ") != strings.Join(tc.methods, " ") || pings != tc.pings || failed != tc.err {
					t.Errorf("step %d: got %v, %d pings, error %v; want %v, %d, %v", step, got, pings, failed, tc.methods, tc.pings, tc.err)
				}
			}
		})
	}
}

// FuzzFramer: no input makes the framer panic; cut anywhere, a stream
// gives the same messages as whole, each with the body its Content-Length
// announced.
func FuzzFramer(f *testing.F) {
	f.Add([]byte(framedInvite+framedBye), 10)
	f.Add([]byte("\r\n\r\n"+framedBye), 3)
	f.Add([]byte("INVITE sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n"), 5)
	f.Add([]byte("SIP/2.0 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n"), 1)
	f.Fuzz(func(t *testing.T, data []byte, cut int) {
		run := func(parts ...[]byte) (out []string, failed bool) {
			fr := newFramer()
			defer fr.close()
			for _, p := range parts {
				msgs, _, err := fr.feed(p)
				for _, m := range msgs {
					cl := m.ContentLength()
					if cl == nil || int(*cl) != len(m.Body()) {
						t.Fatalf("a message whose body is %d bytes, Content-Length %v", len(m.Body()), cl)
					}
					out = append(out, m.String())
				}
				if err != nil {
					return out, true
				}
			}
			return out, false
		}
		whole, wf := run(data)
		if cut < 0 {
			cut = -cut
		}
		if len(data) > 0 {
			cut %= len(data) + 1
		} else {
			cut = 0
		}
		split, sf := run(data[:cut], data[cut:])
		if !wf && !sf && strings.Join(whole, "\x00") != strings.Join(split, "\x00") {
			t.Fatalf("whole %q, cut at %d %q", whole, cut, split)
		}
	})
}

// tcpPhone is a phone on a TCP connection to the dispatcher.
type tcpPhone struct {
	t    *testing.T
	conn net.Conn
	addr netip.AddrPort // its local address
	msgs chan sip.Message
	eof  chan struct{}
}

func dialPhone(t *testing.T, from string, to string) *tcpPhone {
	t.Helper()
	dl := net.Dialer{Timeout: 10 * time.Second}
	if from != "" {
		dl.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := dl.Dial("tcp", to)
	if err != nil {
		t.Fatal(err)
	}
	return newStreamPhone(t, c)
}

// newStreamPhone is a phone on connection c.
func newStreamPhone(t *testing.T, c net.Conn) *tcpPhone {
	p := &tcpPhone{t: t, conn: c, addr: c.LocalAddr().(*net.TCPAddr).AddrPort(), msgs: make(chan sip.Message, 64), eof: make(chan struct{})}
	t.Cleanup(func() { _ = c.Close(); <-p.eof })
	go func() {
		defer close(p.eof)
		fr := newFramer()
		defer fr.close()
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			msgs, _, _ := fr.feed(buf[:n])
			for _, m := range msgs {
				p.msgs <- m
			}
			if err != nil {
				return
			}
		}
	}()
	return p
}

func (p *tcpPhone) send(raw string) {
	p.t.Helper()
	if _, err := p.conn.Write([]byte(raw)); err != nil {
		p.t.Fatal(err)
	}
}

// next returns the next message that is not a 100 Trying.
func (p *tcpPhone) next() sip.Message {
	p.t.Helper()
	deadline := time.After(phoneWait)
	for {
		select {
		case m := <-p.msgs:
			if r, ok := m.(*sip.Response); ok && r.StatusCode == 100 {
				continue
			}
			return m
		case <-p.eof:
			p.t.Fatal("the dispatcher closed the phone's connection")
		case <-deadline:
			p.t.Fatal("the phone got nothing")
		}
	}
}

// closed tells whether the dispatcher closed the phone's connection.
func (p *tcpPhone) closed() bool {
	select {
	case <-p.eof:
		return true
	default:
		return false
	}
}

// tcpRequest is a request of phone p for the dispatcher at d.
func (p *tcpPhone) request(method, ruri, callID string, seq int, toTag string, routes []string, extra ...string) string {
	var b strings.Builder
	tr := "TCP"
	if _, ok := p.conn.(*tls.Conn); ok {
		tr = "TLS"
	}
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\nVia: SIP/2.0/%s %s;branch=z9hG4bK%s%d\r\nMax-Forwards: 70\r\n", method, ruri, tr, p.addr, callID, seq)
	for _, r := range routes {
		fmt.Fprintf(&b, "Route: %s\r\n", r)
	}
	to := "<sip:200@example.com>"
	if toTag != "" {
		to += ";tag=" + toTag
	}
	fmt.Fprintf(&b, "From: <sip:100@example.com>;tag=ph%s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d %s\r\n", callID, to, callID, seq, method)
	fmt.Fprintf(&b, "Contact: <sip:100@192.0.2.50:5062;transport=tcp>\r\n")
	for _, e := range extra {
		b.WriteString(e + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

func streamConfig() Config {
	return Config{Algorithm: RoundRobin, ProbeInterval: time.Hour,
		StreamListen: []StreamListener{{Addr: netip.MustParseAddrPort("127.0.0.1:0")}}}
}

// routes are the Record-Route values of m, in order.
func routes(m sip.Message) []string {
	var out []string
	for _, h := range m.GetHeaders("Record-Route") {
		out = append(out, h.Value())
	}
	return out
}

func reversed(l []string) []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[len(l)-1-i] = s
	}
	return out
}

// TestTCPCallThrough: a phone over TCP calls through the dispatcher to a
// UDP backend: the INVITE reaches the backend over UDP with the
// dispatcher's UDP Via and two Record-Route entries (the one towards the
// backend on top, the one towards the phone with transport=tcp and the
// flow token); the answers come back over the connection; the backend's
// BYE reaches the phone over it, and the phone's BYE the backend.
func TestTCPCallThrough(t *testing.T) {
	be := newFakeBackend(t)
	_, addrs := startDispatcherAll(t, streamConfig(), be)
	udp, tcp := addrs[0], strings.TrimPrefix(addrs[1], "tcp:")
	p := dialPhone(t, "", tcp)
	p.send(p.request("INVITE", "sip:200@"+tcp, "tcpcall", 1, "", nil))
	res, ok := p.next().(*sip.Response)
	if !ok || res.StatusCode != 200 {
		t.Fatalf("the phone got %v, want 200", res)
	}
	inv := be.last(sip.INVITE, "tcpcall")
	if v := inv.Via(); v.Transport != "UDP" || v.SentBy() != udp {
		t.Errorf("the backend got Via %s, want the dispatcher's UDP one", v.Value())
	}
	rr := routes(inv)
	if len(rr) != 2 || strings.Contains(rr[0], "transport=tcp") || !strings.Contains(rr[1], "transport=tcp") || !strings.Contains(rr[1], flowParam+"=") {
		t.Fatalf("Record-Route at the backend %q: want the UDP entry on top, then the TCP one with a flow token", rr)
	}
	if got := routes(res); strings.Join(got, ",") != strings.Join(rr, ",") {
		t.Errorf("the phone's 200 has Record-Route %q, want %q", got, rr)
	}
	toTag, _ := res.To().Params.Get("tag")
	p.send(p.request("ACK", "sip:200@"+be.addr.String(), "tcpcall", 1, toTag, reversed(rr)))
	waitFor(t, "the ACK at the backend", func() bool { return be.last(sip.ACK, "tcpcall") != nil })

	// The backend hangs up: its route set is the Record-Route as is.
	var bye strings.Builder
	fmt.Fprintf(&bye, "BYE sip:100@192.0.2.50:5062;transport=tcp SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKbebye;rport\r\n", be.addr)
	for _, r := range rr {
		fmt.Fprintf(&bye, "Route: %s\r\n", r)
	}
	fmt.Fprintf(&bye, "From: <sip:200@example.com>;tag=%s\r\nTo: <sip:100@example.com>;tag=phtcpcall\r\nCall-ID: tcpcall\r\nCSeq: 9 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", toTag)
	if err := be.sendTo(netip.MustParseAddrPort(udp), bye.String()); err != nil {
		t.Fatal(err)
	}
	req, ok := p.next().(*sip.Request)
	if !ok || req.Method != sip.BYE || req.Via().Transport != "TCP" {
		t.Fatalf("the phone got %v, want the backend's BYE over TCP", req)
	}
	ok200 := sip.NewResponseFromRequest(req, 200, "OK", nil)
	p.send(ok200.String())
	waitFor(t, "the 200 to the backend's BYE", func() bool { return be.answered("tcpcall") == 200 })

	// And the phone's BYE (another call's worth of the same dialog).
	p.send(p.request("BYE", "sip:200@"+be.addr.String(), "tcpcall", 2, toTag, reversed(rr)))
	if res, ok := p.next().(*sip.Response); !ok || res.StatusCode != 200 || res.CSeq().MethodName != sip.BYE {
		t.Fatalf("the phone's BYE got %v", res)
	}
	if be.last(sip.BYE, "tcpcall") == nil {
		t.Error("the phone's BYE did not reach the backend")
	}
}

// TestTCPRegisteredPhone: a phone registers over TCP; the backend's call
// to its Contact (sent to the dispatcher, where the REGISTER came from)
// goes over the phone's connection; after the phone unregisters, a call to
// it gets 480 from the dispatcher.
func TestTCPRegisteredPhone(t *testing.T) {
	be := newFakeBackend(t)
	_, addrs := startDispatcherAll(t, streamConfig(), be)
	udp, tcp := netip.MustParseAddrPort(addrs[0]), strings.TrimPrefix(addrs[1], "tcp:")
	p := dialPhone(t, "", tcp)
	p.send(p.request("REGISTER", "sip:example.com", "reg", 1, "", nil, "Expires: 300"))
	if res, ok := p.next().(*sip.Response); !ok || res.StatusCode != 200 {
		t.Fatalf("REGISTER: %v", res)
	}
	call := func(id string) {
		inv := fmt.Sprintf("INVITE sip:100@192.0.2.50:5062;transport=tcp SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\n"+
			"From: <sip:300@pbx>;tag=be%s\r\nTo: <sip:100@pbx>\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\n"+
			"Contact: <sip:300@%s>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", be.addr, id, id, id, be.addr)
		if err := be.sendTo(udp, inv); err != nil {
			t.Fatal(err)
		}
	}
	call("tocall")
	req, ok := p.next().(*sip.Request)
	if !ok || req.Method != sip.INVITE || req.CallID().Value() != "tocall" {
		t.Fatalf("the phone got %v, want the backend's INVITE", req)
	}
	rr := routes(req)
	if len(rr) != 2 || !strings.Contains(rr[0], "transport=tcp") || strings.Contains(rr[1], "transport=tcp") {
		t.Fatalf("Record-Route at the phone %q: want the TCP entry on top, then the UDP one", rr)
	}
	ring := sip.NewResponseFromRequest(req, 486, "Busy Here", nil)
	ring.To().Params.Add("tag", "busy")
	p.send(ring.String())
	waitFor(t, "the 486 at the backend", func() bool { return be.answered("tocall") == 486 })

	p.send(p.request("REGISTER", "sip:example.com", "reg", 2, "", nil, "Expires: 0"))
	if res, ok := p.next().(*sip.Response); !ok || res.StatusCode != 200 {
		t.Fatalf("REGISTER: %v", res)
	}
	call("afterunreg")
	waitFor(t, "480 for a phone whose registration ended", func() bool { return be.answered("afterunreg") == 480 })
}

// TestStreamLimits: connections beyond the limit per source address, and
// beyond the total, are closed at once; the others keep working.
func TestStreamLimits(t *testing.T) {
	be := newFakeBackend(t)
	cfg := streamConfig()
	cfg.MaxConns, cfg.MaxConnsPerSource = 5, 3
	d, addrs := startDispatcherAll(t, cfg, be)
	tcp := strings.TrimPrefix(addrs[1], "tcp:")
	// Each connection is let in (or not) before the next is opened.
	var from1 []*tcpPhone
	for i := range 3 {
		from1 = append(from1, dialPhone(t, "127.0.0.1", tcp))
		waitFor(t, "the connection in the table", func() bool { return d.streams.count() == i+1 })
	}
	from1 = append(from1, dialPhone(t, "127.0.0.1", tcp))
	waitFor(t, "the fourth connection from 127.0.0.1 closed", from1[3].closed)
	var from2 []*tcpPhone
	for i := range 2 {
		from2 = append(from2, dialPhone(t, "127.0.0.2", tcp))
		waitFor(t, "the connection in the table", func() bool { return d.streams.count() == 4+i })
	}
	from2 = append(from2, dialPhone(t, "127.0.0.2", tcp))
	waitFor(t, "the sixth connection closed", from2[2].closed)
	if n := d.streams.count(); n != 5 {
		t.Errorf("%d connections open, want 5", n)
	}
	if st := d.Status(); st.Connections == nil || *st.Connections != 5 || st.ConnectionsRefused != 2 {
		t.Errorf("status: %v connections, %d refused; want 5, 2", st.Connections, st.ConnectionsRefused)
	}
	// One that was let in works.
	p := from2[1]
	p.send(p.request("OPTIONS", "sip:"+tcp, "lim", 1, "", nil))
	if res, ok := p.next().(*sip.Response); !ok || res.StatusCode != 200 {
		t.Fatalf("OPTIONS: %v", res)
	}
	// A closed one frees its place.
	_ = from1[0].conn.Close()
	waitFor(t, "the closed connection forgotten", func() bool { return d.streams.count() == 4 })
	p3 := dialPhone(t, "127.0.0.1", tcp)
	p3.send(p3.request("OPTIONS", "sip:"+tcp, "lim3", 1, "", nil))
	if res, ok := p3.next().(*sip.Response); !ok || res.StatusCode != 200 {
		t.Fatalf("OPTIONS on the new connection: %v", res)
	}
}

// TestStreamIdle: a connection on which nothing complete arrives (nothing
// at all, or a message trickling in) is closed after the idle time; a
// registration keeps it open until it expires, but not a message that
// takes longer than messageTime to arrive.
func TestStreamIdle(t *testing.T) {
	be := newFakeBackend(t)
	cfg := streamConfig()
	cfg.IdleTimeout = 300 * time.Millisecond
	d, addrs := startDispatcherAll(t, cfg, be)
	tcp := strings.TrimPrefix(addrs[1], "tcp:")
	silent := dialPhone(t, "", tcp)
	trickle := dialPhone(t, "", tcp)
	trickle.send(framedInvite[:20])
	waitFor(t, "the silent connection closed", silent.closed)
	waitFor(t, "the trickling connection closed", trickle.closed)
	waitFor(t, "both forgotten", func() bool { return d.streams.count() == 0 })

	// The deadline of a connection that carries a registration.
	reg := dialPhone(t, "", tcp)
	reg.send(reg.request("REGISTER", "sip:example.com", "idle-reg", 1, "", nil, "Expires: 300"))
	if res, ok := reg.next().(*sip.Response); !ok || res.StatusCode != 200 {
		t.Fatalf("REGISTER: %v", res)
	}
	c := d.streams.byRemote(reg.addr)
	if c == nil {
		t.Fatal("the registered connection is not in the table")
	}
	if dl := time.Until(c.deadline(cfg.IdleTimeout)); dl < 250*time.Second {
		t.Errorf("the registered connection closes in %s, want about 300 s", dl)
	}
	d.streams.msgTime.Store(int64(300 * time.Millisecond))
	reg.send(framedInvite[:30])
	waitFor(t, "the registered connection closed: its message did not come whole", reg.closed)
}

// TestRegisteredBinding: the Contacts bound to a connection are those the
// 2xx lists with an expiry; an unregistered one is unbound, and closing
// the connection unbinds all.
func TestRegisteredBinding(t *testing.T) {
	tab := newStreamTable(10, 10, time.Minute)
	c := &streamConn{remote: netip.MustParseAddrPort("192.0.2.1:4000"), id: "x", done: make(chan struct{})}
	if err := tab.add(c); err != nil {
		t.Fatal(err)
	}
	reg := func(contacts string, answer string) {
		m, err := sip.ParseMessage([]byte("REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/TCP a;branch=z9hG4bKx\r\nFrom: <sip:1@x>;tag=1\r\nTo: <sip:1@x>\r\nCall-ID: r\r\nCSeq: 1 REGISTER\r\n" + contacts + "Content-Length: 0\r\n\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		c.offerContacts(m.(*sip.Request))
		r, err := sip.ParseMessage([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP a;branch=z9hG4bKx\r\nFrom: <sip:1@x>;tag=1\r\nTo: <sip:1@x>;tag=2\r\nCall-ID: r\r\nCSeq: 1 REGISTER\r\n" + answer + "Content-Length: 0\r\n\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		tab.registered(c, r.(*sip.Response), time.Now())
	}
	u := func(s string) sip.Uri {
		var x sip.Uri
		if err := sip.ParseUri(s, &x); err != nil {
			t.Fatal(err)
		}
		return x
	}
	reg("Contact: <sip:1@10.0.0.5:5062;transport=tcp>\r\nContact: <sip:1@10.0.0.6>\r\n",
		"Contact: <sip:1@10.0.0.5:5062;transport=tcp>;expires=60\r\nContact: <sip:1@10.0.0.9>;expires=60\r\n")
	for _, tc := range []struct {
		uri  string
		want bool
	}{
		{"sip:1@10.0.0.5:5062", true},
		{"sip:1@10.0.0.5:5062;transport=tcp;x=y", true},
		{"sip:2@10.0.0.5:5062", false},
		{"sip:1@10.0.0.6", false}, // offered, not in the answer
		{"sip:1@10.0.0.9", false}, // in the answer, not offered here
	} {
		if got := tab.byContact(u(tc.uri), time.Now()) == c; got != tc.want {
			t.Errorf("%s bound: %v, want %v", tc.uri, got, tc.want)
		}
	}
	if got := tab.byContact(u("sip:1@10.0.0.5:5062"), time.Now().Add(2*time.Minute)); got != nil {
		t.Error("an expired binding still names the connection")
	}
	reg("Contact: <sip:1@10.0.0.5:5062;transport=tcp>;expires=60\r\n", "Contact: <sip:1@10.0.0.5:5062;transport=tcp>;expires=60\r\n")
	tab.remove(c)
	if tab.byContact(u("sip:1@10.0.0.5:5062"), time.Now()) != nil || len(tab.aliases) != 0 {
		t.Error("a closed connection's bindings remain")
	}
	// Nothing bound after an answer without the Contact (unregistered).
	c2 := &streamConn{remote: netip.MustParseAddrPort("192.0.2.1:4001"), id: "y", done: make(chan struct{})}
	if err := tab.add(c2); err != nil {
		t.Fatal(err)
	}
	c = c2
	reg("Contact: <sip:1@10.0.0.5:5062;transport=tcp>\r\n", "Contact: <sip:1@10.0.0.5:5062;transport=tcp>;expires=60\r\n")
	reg("Contact: <sip:1@10.0.0.5:5062;transport=tcp>;expires=0\r\n", "")
	if tab.byContact(u("sip:1@10.0.0.5:5062"), time.Now()) != nil || c2.registered.Load() != 0 || len(c2.bound) != 0 {
		t.Error("an unregistered Contact is still bound")
	}
	// "Contact: *" unbinds the AOR's Contacts on the connection, those
	// the answer still lists (another phone's) excepted.
	reg("Contact: <sip:1@10.0.0.5:5062;transport=tcp>\r\nContact: <sip:1@10.0.0.7>\r\n",
		"Contact: <sip:1@10.0.0.5:5062;transport=tcp>;expires=60\r\nContact: <sip:1@10.0.0.7>;expires=60\r\n")
	reg("Contact: *\r\n", "Contact: <sip:1@10.0.0.7>;expires=50\r\n")
	if tab.byContact(u("sip:1@10.0.0.5:5062"), time.Now()) != nil || tab.byContact(u("sip:1@10.0.0.7"), time.Now()) != c2 {
		t.Error("after Contact: * the bindings are wrong")
	}
	// At most maxBoundPerConn Contacts are bound to one connection.
	var many strings.Builder
	for i := range maxBoundPerConn + 5 {
		fmt.Fprintf(&many, "Contact: <sip:1@10.0.1.%d>;expires=60\r\n", i)
	}
	reg(many.String(), many.String())
	if len(c2.bound) > maxBoundPerConn || len(tab.aliases) > maxBoundPerConn {
		t.Errorf("%d Contacts bound to one connection, %d in the table", len(c2.bound), len(tab.aliases))
	}
	tab.remove(c2)
	if len(tab.aliases) != 0 {
		t.Errorf("%d bindings left after the connection closed", len(tab.aliases))
	}
}

// TestStreamOversized: a message longer than the limit closes the
// connection; the dispatcher keeps serving others.
func TestStreamOversized(t *testing.T) {
	be := newFakeBackend(t)
	_, addrs := startDispatcherAll(t, streamConfig(), be)
	tcp := strings.TrimPrefix(addrs[1], "tcp:")
	p := dialPhone(t, "", tcp)
	big := strings.Replace(framedInvite, "Content-Length: 4", fmt.Sprintf("Content-Length: %d", 2*maxStreamMessage), 1)
	p.send(big)
	waitFor(t, "the connection closed", p.closed)
	q := dialPhone(t, "", tcp)
	q.send(q.request("OPTIONS", "sip:"+tcp, "after", 1, "", nil))
	if res, ok := q.next().(*sip.Response); !ok || res.StatusCode != 200 {
		t.Fatalf("OPTIONS: %v", res)
	}
}

// TestTLSCallThrough: a phone over TLS (the box's derived certificate)
// gets answers over its connection, and its call reaches the backend over
// UDP with a Record-Route entry for each side, the phone's with
// transport=tls; a connection that speaks plain text is closed.
func TestTLSCallThrough(t *testing.T) {
	id, err := tlscert.Derive([]byte("the dispatcher test's seed, long enough"), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	be := newFakeBackend(t)
	cfg := streamConfig()
	cfg.StreamListen[0].TLS = tlscert.ServerConfig(id)
	_, addrs := startDispatcherAll(t, cfg, be)
	if !strings.HasPrefix(addrs[1], "tls:") {
		t.Fatalf("listeners %v", addrs)
	}
	at := strings.TrimPrefix(addrs[1], "tls:")
	roots := x509.NewCertPool()
	roots.AddCert(id.Cert.Leaf)
	dl := tls.Dialer{Config: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}}
	c, err := dl.DialContext(t.Context(), "tcp", at)
	if err != nil {
		t.Fatal(err)
	}
	p := newStreamPhone(t, c)
	p.send(p.request("INVITE", "sip:200@"+at, "tlscall", 1, "", nil))
	res, ok := p.next().(*sip.Response)
	if !ok || res.StatusCode != 200 {
		t.Fatalf("the phone got %v, want 200", res)
	}
	rr := routes(be.last(sip.INVITE, "tlscall"))
	if len(rr) != 2 || !strings.Contains(rr[1], "transport=tls") || !strings.Contains(rr[1], flowParam+"=") {
		t.Fatalf("Record-Route at the backend %q", rr)
	}

	plain := dialPhone(t, "", at)
	plain.send(framedBye)
	waitFor(t, "the plain-text connection closed", plain.closed)
}

// FuzzStream feeds arbitrary bytes to the proxy as a phone's TCP stream:
// nothing panics, and what the dispatcher sends on (to a backend over UDP,
// or back over the connection) parses as SIP again whenever the message
// survives sipgo's own round trip.
func FuzzStream(f *testing.F) {
	f.Add([]byte(framedInvite + framedBye))
	f.Add([]byte("REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.50:5062;branch=z9hG4bKr\r\nFrom: <sip:1@x>;tag=1\r\nTo: <sip:1@x>\r\n" +
		"Call-ID: r\r\nCSeq: 1 REGISTER\r\nContact: <sip:1@10.0.0.50:5062;transport=tcp>;expires=60\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("BYE sip:1@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.50:5062;branch=z9hG4bKb\r\nRoute: <sip:10.0.0.100:5060;transport=tcp;lr;dbe=x;dfl=y>\r\n" +
		"Route: <sip:10.0.0.100:5060;lr;dbe=x>\r\nFrom: <sip:1@x>;tag=1\r\nTo: <sip:1@x>;tag=2\r\nCall-ID: b\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("\r\n\r\n"))
	d, err := New(Config{
		Algorithm:    RoundRobin,
		Backends:     []Backend{{Addr: netip.MustParseAddrPort("10.0.0.1:5060")}},
		Listen:       []netip.AddrPort{netip.MustParseAddrPort("10.0.0.100:5060")},
		StreamListen: []StreamListener{{Addr: netip.MustParseAddrPort("10.0.0.100:5060")}},
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		f.Fatal(err)
	}
	from := netip.MustParseAddrPort("10.0.0.50:40000")
	f.Fuzz(func(t *testing.T, data []byte) {
		rc := &recConn{local: netip.MustParseAddrPort("10.0.0.100:5060")}
		us := &sock{conn: rc, local: rc.local.Addr(), host: "10.0.0.100", port: 5060, via: "SIP/2.0/UDP 10.0.0.100:5060"}
		ss := &sock{conn: &streamOut{tab: d.streams}, local: rc.local.Addr(), host: "10.0.0.100", port: 5060,
			via: "SIP/2.0/TCP 10.0.0.100:5060", transport: "TCP", streams: d.streams}
		d.mu.Lock()
		d.socks = []*sock{us, ss}
		d.mu.Unlock()
		a, b := net.Pipe()
		defer func() { _ = a.Close(); _ = b.Close() }()
		c := &streamConn{c: a, remote: from, id: "fuzz", sock: ss, out: make(chan []byte, streamQueue), done: make(chan struct{})}
		if err := d.streams.add(c); err != nil {
			t.Fatal(err)
		}
		defer d.streams.remove(c)
		fr := newFramer()
		defer fr.close()
		msgs, _, _ := fr.feed(data)
		roundTrips := true
		for _, m := range msgs {
			if _, err := sip.ParseMessage([]byte(m.String())); err != nil {
				roundTrips = false
			}
			d.handleMsg(ss, m, from, c)
		}
		if !roundTrips {
			return
		}
		var out [][]byte
		out = append(out, rc.out...)
		for len(c.out) > 0 {
			out = append(out, <-c.out)
		}
		for _, o := range out {
			if _, err := sip.ParseMessage(o); err != nil {
				t.Fatalf("sent a message that does not parse (%v):\n%s", err, o)
			}
		}
	})
}

// TestTCPFailover: a call from a phone over TCP that its first backend
// refuses with 503 connects on the next, whose INVITE carries the
// dispatcher's two Record-Route entries for that backend (not those of the
// first as well); a call no backend answers gets the dispatcher's own 503
// over the phone's connection.
func TestTCPFailover(t *testing.T) {
	bs := []*fakeBackend{newFakeBackend(t), newFakeBackend(t)}
	cfg := streamConfig()
	cfg.Algorithm, cfg.TxTimeout = HashCallID, silentTimeout
	disp, addrs := startDispatcherAll(t, cfg, bs...)
	tcp := strings.TrimPrefix(addrs[1], "tcp:")
	p := dialPhone(t, "", tcp)

	rank := ranking(disp, "tcp-fo")
	first, second := bs[rank[0]], bs[rank[1]]
	first.finalStatus.Store(503)
	p.send(p.request("INVITE", "sip:200@"+tcp, "tcp-fo", 1, "", nil))
	if res, ok := p.next().(*sip.Response); !ok || res.StatusCode != 200 {
		t.Fatalf("the phone got %v, want 200 from the second backend", res)
	}
	rr := routes(second.last(sip.INVITE, "tcp-fo"))
	tag := backendTag(second.addr.String())
	if len(rr) != 2 || !strings.Contains(rr[0], routeParam+"="+tag) || !strings.Contains(rr[1], routeParam+"="+tag) || !strings.Contains(rr[1], "transport=tcp") {
		t.Errorf("Record-Route at the second backend %q, want two entries naming it", rr)
	}

	for _, b := range bs {
		b.finalStatus.Store(0)
		b.dropInvites.Store(true)
	}
	p.send(p.request("INVITE", "sip:200@"+tcp, "tcp-none", 1, "", nil))
	if res, ok := p.next().(*sip.Response); !ok || res.StatusCode != 503 {
		t.Fatalf("the phone got %v, want the dispatcher's 503", res)
	}
}

// TestStreamPing: a double CRLF is answered with a CRLF (RFC 5626 pong)
// and keeps the connection open past the idle time.
func TestStreamPing(t *testing.T) {
	be := newFakeBackend(t)
	cfg := streamConfig()
	cfg.IdleTimeout = time.Second
	d, addrs := startDispatcherAll(t, cfg, be)
	tcp := strings.TrimPrefix(addrs[1], "tcp:")
	c, err := net.Dial("tcp", tcp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	var sc *streamConn
	waitFor(t, "the connection in the table", func() bool {
		sc = d.streams.byRemote(c.LocalAddr().(*net.TCPAddr).AddrPort())
		return sc != nil
	})
	before := sc.lastMsg.Load()
	if _, err := c.Write([]byte("\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(phoneWait))
	pong := make([]byte, 2)
	if _, err := io.ReadFull(c, pong); err != nil || string(pong) != "\r\n" {
		t.Fatalf("pong %q, %v", pong, err)
	}
	if sc.lastMsg.Load() <= before {
		t.Error("the ping did not count as activity")
	}
}

// TestRegisteredBindingNotTaken: a Contact bound to one phone's
// connection for its AOR is not taken by another connection registering
// it for another AOR (a phone authenticated as one extension would get
// the other phone's calls); the same AOR on a new connection (the phone
// reconnected) takes it over, and another AOR once it has expired.
func TestRegisteredBindingNotTaken(t *testing.T) {
	tab := newStreamTable(10, 10, time.Minute)
	conn := func(id string, port uint16) *streamConn {
		c := &streamConn{remote: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), port), id: id, done: make(chan struct{})}
		if err := tab.add(c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	const contact = "Contact: <sip:1@10.0.0.5:5062;transport=tcp>"
	reg := func(c *streamConn, aor string, at time.Time) {
		t.Helper()
		m, err := sip.ParseMessage([]byte("REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/TCP a;branch=z9hG4bKx\r\nFrom: <sip:" + aor + "@x>;tag=1\r\nTo: <sip:" + aor + "@x>\r\nCall-ID: r\r\nCSeq: 1 REGISTER\r\n" + contact + "\r\nContent-Length: 0\r\n\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		c.offerContacts(m.(*sip.Request))
		r, err := sip.ParseMessage([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP a;branch=z9hG4bKx\r\nFrom: <sip:" + aor + "@x>;tag=1\r\nTo: <sip:" + aor + "@x>;tag=2\r\nCall-ID: r\r\nCSeq: 1 REGISTER\r\n" + contact + ";expires=60\r\nContent-Length: 0\r\n\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		tab.registered(c, r.(*sip.Response), at)
	}
	var u sip.Uri
	if err := sip.ParseUri("sip:1@10.0.0.5:5062", &u); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	victim, other, again := conn("victim", 4000), conn("other", 4001), conn("again", 4002)
	reg(victim, "1", now)
	reg(other, "2", now)
	if got := tab.byContact(u, now); got != victim {
		t.Fatalf("the Contact went to %v after another AOR registered it, want the first phone's connection", got)
	}
	reg(again, "1", now)
	if got := tab.byContact(u, now); got != again {
		t.Fatalf("the Contact is on %v after its own AOR registered it again on a new connection, want that one", got)
	}
	later := now.Add(2 * time.Minute) // the binding has expired
	reg(other, "2", later)
	if got := tab.byContact(u, later); got != other {
		t.Fatalf("an expired Contact was not taken by the next AOR: %v", got)
	}
}
