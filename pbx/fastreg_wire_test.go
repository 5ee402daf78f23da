package pbx

import (
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/waitfor"
	"github.com/twinpbx/twinpbx/pbx/auth"
	"github.com/twinpbx/twinpbx/pbx/regwire"
)

// sentConn is a socket that keeps what is written to it.
type sentConn struct {
	net.PacketConn
	sent chan string
}

func (c *sentConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.sent <- string(b)
	return len(b), nil
}

// newWireConn is a registerConn whose wire registrar answers through a
// real authenticator and counts the REGISTERs it would register.
func newWireConn(t *testing.T, serving func() bool) (*registerConn, *sentConn, *atomic.Int32) {
	t.Helper()
	d, err := auth.New(auth.Options{Realm: "r", Key: make([]byte, 32), Secrets: func(string) (string, bool) { return "", false },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var registered atomic.Int32
	w := &wireRegistrar{serving: serving, auth: d, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		register: func(_ *regwire.Request, _, _ string, hdrs []regwire.Header) (int, string, []regwire.Header) {
			registered.Add(1)
			return 200, "OK", hdrs
		}}
	sc := &sentConn{sent: make(chan string, 16)}
	return newRegisterConn(sc, nil, w, newWorkers(2)), sc, &registered
}

var wirePhone = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5999}

// A box that does not serve takes a plain REGISTER off the socket and
// answers nothing, as the guard does on sipgo's path.
func TestServeWireStandby(t *testing.T) {
	c, sc, registered := newWireConn(t, func() bool { return false })
	for _, msg := range [][]byte{register("s1"), registerWithCredentials("s2")} {
		if !c.serveWire([]byte(msg), wirePhone) {
			t.Fatalf("regwire did not take %q", msg)
		}
	}
	if n, r := c.wire.served.Load(), registered.Load(); n != 0 || r != 0 {
		t.Errorf("a standby answered %d REGISTERs and registered %d", n, r)
	}
	select {
	case m := <-sc.sent:
		t.Errorf("a standby sent %q", m)
	default:
	}
}

// A copy of a REGISTER with credentials that arrives while the first is
// handled is dropped; once the first is done the branch is new again.
func TestServeWireAbsorbsRetransmission(t *testing.T) {
	c, sc, _ := newWireConn(t, nil)
	msg := string(registerWithCredentials("w1"))
	key := branchKey{branch: "z9hG4bK-w1", source: wirePhone.String()}
	if !c.begin(key) {
		t.Fatal("branch already in progress")
	}
	if !c.serveWire([]byte(msg), wirePhone) {
		t.Fatal("regwire did not take the REGISTER")
	}
	select {
	case m := <-sc.sent:
		t.Fatalf("the retransmission was answered: %q", m)
	default:
	}
	c.end(key)
	if !c.serveWire([]byte(msg), wirePhone) {
		t.Fatal("regwire did not take the REGISTER")
	}
	select {
	case m := <-sc.sent:
		if !strings.HasPrefix(m, "SIP/2.0 401 ") || !strings.Contains(m, "branch=z9hG4bK-w1") {
			t.Errorf("answer %q, want a 401 (unknown nonce) for branch w1", m)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no answer once the first copy was done")
	}
	waitfor.Cond(t, 30*time.Second, "the branch to leave the set in progress", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.inProgress) == 0
	})
	if n := c.wire.served.Load(); n != 1 || len(sc.sent) != 0 {
		t.Errorf("%d REGISTERs answered, %d answers more: want the retransmission dropped", n, len(sc.sent))
	}
}

// TestWireRegisterKeepsNoDatagram: the datagrams regwire reads are pooled
// and zeroed once their request is answered, so what outlives a request
// must hold copies of its pieces: the binding it made, and the nonce
// table (a replay of the answer in a new transaction is still refused as
// a reused nonce-count, not taken for a new nonce).
func TestWireRegisterKeepsNoDatagram(t *testing.T) {
	p, _ := runTestPBX(t, "31140-31159", func(c *config.Config, _ *Options) { c.SIP.Realm = "pbx" })
	nonce := freshNonce(t, p, "sip:127.0.0.1")
	a := &digestAnswer{user: "100", secret: "secret-100-x", uri: "sip:127.0.0.1", nc: 1}
	msg := func(branch string) string {
		return "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-" + branch + ";rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:100@127.0.0.1>;tag=f1\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: keep-1@phone\r\n" +
			"CSeq: 7 REGISTER\r\nContact: <sip:100@127.0.0.1:5999>\r\nExpires: 600\r\nUser-Agent: Desk 1.0\r\n" +
			a.header("pbx", nonce) + "Content-Length: 0\r\n\r\n"
	}
	serve := func(m string) string {
		t.Helper()
		f := &feedConn{from: wirePhone, msgs: []string{m}, served: p.wire.served.Load, base: p.wire.served.Load(),
			sent: make(chan string, 1)}
		c := newRegisterConn(f, p.fastRegister, p.wire, p.workers)
		if _, _, err := c.ReadFrom(make([]byte, 2048)); err != io.EOF {
			t.Fatalf("reading: %v", err)
		}
		select {
		case res := <-f.sent:
			return res
		case <-time.After(5 * time.Second):
			t.Fatal("no answer")
			return ""
		}
	}
	if res := serve(msg("k1")); !strings.HasPrefix(res, "SIP/2.0 200 ") {
		t.Fatalf("register: %q", res)
	}
	bs := p.loc.Lookup("100")
	if len(bs) != 1 {
		t.Fatalf("%d bindings", len(bs))
	}
	b := bs[0]
	got := []string{b.AOR, b.Contact, b.Source, b.CallID, b.UserAgent}
	want := []string{"100", "sip:100@127.0.0.1:5999", "udp:" + wirePhone.String(), "keep-1@phone", "Desk 1.0"}
	if !slices.Equal(got, want) {
		t.Errorf("binding %q, want %q", got, want)
	}
	// A longer branch: the nonce's place in the datagram differs (a map
	// may take two strings at the same address for equal).
	if res := serve(msg("k2-replay")); !strings.HasPrefix(res, "SIP/2.0 401 ") || !strings.Contains(res, "stale=true") {
		t.Errorf("replayed answer: %q, want 401 with stale=true", res)
	}
}
