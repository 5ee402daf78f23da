package dispatch

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/resolve"
	"github.com/twinpbx/twinpbx/pbx/resolve/resolvetest"
	"github.com/twinpbx/twinpbx/pbx/tlscert"
)

// fakeStreams is the listener and the connections of a fake backend over
// TCP or TLS.
type fakeStreams struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	// pings counts the double-CRLF keep-alives that came.
	pings atomic.Int32
	// respOn is the connection each Call-ID's last response came on.
	respOn map[string]net.Conn
	wg     sync.WaitGroup
}

// newFakeStreamBackend is a fakeBackend that listens on TCP, or on TLS
// with conf: it answers each request over the connection it came on.
func newFakeStreamBackend(t *testing.T, conf *tls.Config) *fakeBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if conf != nil {
		ln = tls.NewListener(ln, conf)
	}
	fs := &fakeStreams{ln: ln, respOn: map[string]net.Conn{}}
	b := &fakeBackend{addr: ln.Addr().(*net.TCPAddr).AddrPort(), responses: map[string]int{}, streams: fs}
	t.Cleanup(func() {
		_ = ln.Close()
		fs.closeAll()
		fs.wg.Wait()
	})
	fs.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fs.mu.Lock()
			fs.conns = append(fs.conns, c)
			fs.mu.Unlock()
			fs.wg.Go(func() { b.readStream(c) })
		}
	})
	return b
}

// readStream serves one connection of a fake stream backend.
func (b *fakeBackend) readStream(c net.Conn) {
	defer c.Close()
	write := func(raw []byte, _ netip.AddrPort) { _, _ = c.Write(raw) }
	fr := newFramer()
	defer fr.close()
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		msgs, pings, ferr := fr.feed(buf[:n])
		b.streams.pings.Add(int32(pings))
		for _, m := range msgs {
			switch m := m.(type) {
			case *sip.Request:
				b.serveOn(m, write)
			case *sip.Response:
				b.streams.mu.Lock()
				b.streams.respOn[m.CallID().Value()] = c
				b.streams.mu.Unlock()
				b.mu.Lock()
				b.responses[m.CallID().Value()] = m.StatusCode
				b.mu.Unlock()
			}
		}
		if err != nil || ferr != nil {
			return
		}
	}
}

// write sends raw over the connection that came last.
func (fs *fakeStreams) write(raw []byte) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(fs.conns) == 0 {
		return errors.New("no connection")
	}
	_, err := fs.conns[len(fs.conns)-1].Write(raw)
	return err
}

// closeAll closes every connection, as a restarting backend would.
func (fs *fakeStreams) closeAll() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, c := range fs.conns {
		_ = c.Close()
	}
	fs.conns = nil
}

// connections is how many connections to backend i the dispatcher has
// open (-1: it is not a backend over TCP or TLS).
func connections(d *Dispatcher, i int) int {
	b := d.Status().Backends[i]
	if b.Connections == nil {
		return -1
	}
	return *b.Connections
}

// testIdentity is a self-signed certificate for 127.0.0.1 and the pool of
// roots that trusts it.
func testIdentity(t *testing.T, seed string) (*tls.Config, *x509.CertPool) {
	t.Helper()
	id, err := tlscert.Derive([]byte("the dispatcher pool test: "+seed), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(id.Cert.Leaf)
	return tlscert.ServerConfig(id), roots
}

// TestBackendOverStream: a backend over TCP, and one over TLS whose
// certificate the configured CA signs, get the pool's connections and
// probes over them; a phone's call over UDP reaches the backend over its
// transport with two Record-Route entries (the one towards the backend on
// top, with transport= and the connection's address), the phone's BYE
// reaches it, and the backend's BYE over its connection reaches the
// phone, whose 200 goes back to the backend. When the backend closes the
// connections, the pool opens them again and calls go on.
func TestBackendOverStream(t *testing.T) {
	for _, tr := range []string{"tcp", "tls"} {
		t.Run(tr, func(t *testing.T) {
			var conf *tls.Config
			var roots *x509.CertPool
			if tr == "tls" {
				conf, roots = testIdentity(t, "backend")
			}
			be := newFakeStreamBackend(t, conf)
			d, at := startDispatcher(t, Config{Algorithm: RoundRobin, ProbeInterval: 100 * time.Millisecond, BackendCA: roots,
				Backends: []Backend{{Addr: be.addr, Transport: tr}}})
			waitFor(t, "the pool's two connections", func() bool { return connections(d, 0) == DefaultBackendConns })
			waitFor(t, "probes over "+tr, func() bool { return be.options.Load() >= 2 })
			if st := d.Status().Backends[0]; st.Transport != tr || !st.Up {
				t.Fatalf("status %+v", st)
			}

			ph := newPhone(t)
			c := ph.establish(at, "pool1-"+tr)
			inv := be.last(sip.INVITE, c.id)
			wantTr := strings.ToUpper(tr)
			if v := inv.Via(); v == nil || v.Transport != wantTr {
				t.Fatalf("the INVITE reached the backend with Via %v, want %s", v, wantTr)
			}
			rr := routes(inv)
			if len(rr) != 2 || !strings.Contains(rr[0], "transport="+tr) || !strings.Contains(rr[0], routeParam+"=") || strings.Contains(rr[1], "transport=") {
				t.Fatalf("Record-Route at the backend %q: want the %s entry on top, then the UDP one", rr, tr)
			}
			ph.send(at, ph.request(at, c, sip.BYE, "bye"+c.id))
			if res := ph.final(c.id, sip.BYE); res.StatusCode != 200 {
				t.Fatalf("BYE: %d", res.StatusCode)
			}
			if be.last(sip.BYE, c.id) == nil {
				t.Fatal("the phone's BYE did not reach the backend")
			}

			// The backend hangs up the next call over its connection.
			c2 := ph.establish(at, "pool2-"+tr)
			rr = routes(be.last(sip.INVITE, c2.id))
			var b strings.Builder
			fmt.Fprintf(&b, "BYE sip:100@%s SIP/2.0\r\nVia: SIP/2.0/%s %s;branch=z9hG4bKbebye%s;rport\r\n", ph.addr, wantTr, be.addr, c2.id)
			for _, r := range rr {
				fmt.Fprintf(&b, "Route: %s\r\n", r)
			}
			fmt.Fprintf(&b, "From: <sip:200@example.com>;tag=%s\r\nTo: <sip:100@example.com>;tag=ph%s\r\nCall-ID: %s\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
				c2.toTag, c2.id, c2.id)
			if err := be.sendTo(at, b.String()); err != nil {
				t.Fatal(err)
			}
			bye := ph.nextRequest()
			if bye.Method != sip.BYE || bye.CallID().Value() != c2.id {
				t.Fatalf("the phone got %s %s, want the backend's BYE", bye.Method, bye.CallID().Value())
			}
			ok := sip.NewResponseFromRequest(bye, 200, "OK", nil)
			to, err := viaAddr(ok.Via())
			if err != nil || to != at {
				t.Fatalf("the phone would answer the BYE to %v (%v), want the dispatcher %v", to, err, at)
			}
			ph.send(to, ok.String())
			waitFor(t, "the phone's 200 to the BYE at the backend", func() bool { return be.answered(c2.id) == 200 })
			be.streams.mu.Lock()
			sameConn := be.streams.respOn[c2.id] == be.streams.conns[len(be.streams.conns)-1]
			be.streams.mu.Unlock()
			if !sameConn {
				t.Error("the 200 to the backend's BYE came back over another connection than the BYE's")
			}

			// The backend restarts: its connections close, the pool opens
			// them again, from the same ports, and calls go on.
			ports := be.streams.remotePorts()
			be.streams.closeAll()
			waitFor(t, "the pool's connections opened again", func() bool {
				return connections(d, 0) == DefaultBackendConns && be.streams.open() == DefaultBackendConns
			})
			if again := be.streams.remotePorts(); !slices.Equal(again, ports) {
				t.Errorf("the pool connected again from ports %v, was %v", again, ports)
			}
			waitFor(t, "the backend up", backendUp(d, 0))
			c3 := ph.establish(at, "pool3-"+tr)
			if be.last(sip.INVITE, c3.id) == nil {
				t.Fatal("the call after the reconnection did not reach the backend")
			}
		})
	}
}

// remotePorts are the sorted ports the open connections come from.
func (fs *fakeStreams) remotePorts() []uint16 {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var out []uint16
	for _, c := range fs.conns {
		out = append(out, c.RemoteAddr().(*net.TCPAddr).AddrPort().Port())
	}
	slices.Sort(out)
	return out
}

// open counts the backend's open connections.
func (fs *fakeStreams) open() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return len(fs.conns)
}

// TestBackendTLSUntrusted: a TLS backend whose certificate the configured
// CA did not sign gets no connection and no call (the UDP backend next to
// it takes them all), and its probes, which cannot be sent, mark it down.
func TestBackendTLSUntrusted(t *testing.T) {
	conf, _ := testIdentity(t, "untrusted")
	_, otherRoots := testIdentity(t, "another CA")
	bad := newFakeStreamBackend(t, conf)
	good := newFakeBackend(t)
	d, at := startDispatcher(t, Config{Algorithm: RoundRobin, ProbeInterval: time.Hour, BackendCA: otherRoots,
		Backends: []Backend{{Addr: bad.addr, Transport: "tls"}, {Addr: good.addr}}})
	ph := newPhone(t)
	for k := range 4 {
		c := ph.establish(at, fmt.Sprintf("untrusted%d", k))
		if good.last(sip.INVITE, c.id) == nil {
			t.Fatalf("call %d did not reach the UDP backend", k)
		}
	}
	if n := connections(d, 0); n != 0 {
		t.Fatalf("%d connections to the untrusted backend", n)
	}
	if bad.options.Load() != 0 || len(bad.requests(time.Time{})) != 0 {
		t.Fatal("the untrusted backend got requests")
	}

	// Alone, with probes due often: it goes down (and cannot come up).
	alone, _ := startDispatcher(t, Config{ProbeInterval: 50 * time.Millisecond, DownAfter: 1, BackendCA: otherRoots,
		Backends: []Backend{{Addr: bad.addr, Transport: "tls"}}})
	waitFor(t, "the untrusted backend marked down", backendDown(alone, 0))
}

// TestBackendStreamFailover: a TCP backend refuses a new call with 503;
// the dispatcher ACKs it over the connection and the call goes on to a
// UDP backend, with a single Record-Route entry there (UDP in, UDP out).
func TestBackendStreamFailover(t *testing.T) {
	tcpBE := newFakeStreamBackend(t, nil)
	tcpBE.finalStatus.Store(503)
	udpBE := newFakeBackend(t)
	d, at := startDispatcher(t, Config{Algorithm: RoundRobin, ProbeInterval: time.Hour,
		Backends: []Backend{{Addr: tcpBE.addr, Transport: "tcp"}, {Addr: udpBE.addr}}})
	waitFor(t, "the pool's connections", func() bool { return connections(d, 0) == DefaultBackendConns })
	ph := newPhone(t)
	c := ph.establish(at, "streamfail")
	if tcpBE.last(sip.INVITE, c.id) == nil {
		t.Fatal("round robin did not try the TCP backend first")
	}
	inv := udpBE.last(sip.INVITE, c.id)
	if inv == nil {
		t.Fatal("the call did not go on to the UDP backend")
	}
	if rr := routes(inv); len(rr) != 1 || strings.Contains(rr[0], "transport=") {
		t.Fatalf("Record-Route at the UDP backend %q, want one UDP entry", rr)
	}
	waitFor(t, "the 503 ACKed over TCP", func() bool { return tcpBE.last(sip.ACK, c.id) != nil })
}

// TestStreamBackendByName: a backend found by the SRV name _sip._tcp…
// gets its pool once the name resolves (the pool is started by the lookup,
// after the dispatcher started), and calls reach it over TCP.
func TestStreamBackendByName(t *testing.T) {
	be := newFakeStreamBackend(t, nil)
	dns := resolvetest.StartDNSMasq(t, 1,
		fmt.Sprintf("--srv-host=_sip._tcp.pbxes.test,a.pbxes.test,%d,10,10", be.addr.Port()),
		"--host-record=a.pbxes.test,127.0.0.1",
	)
	res, err := resolve.New(resolve.Config{Servers: []string{dns}, Transports: []string{resolve.UDP, resolve.TCP, resolve.TLS},
		Timeout: 500 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	d, at := startDispatcher(t, Config{Algorithm: RoundRobin, ProbeInterval: time.Hour, ResolveEvery: 50 * time.Millisecond,
		Backends: []Backend{{Name: "_sip._tcp.pbxes.test", Transport: "tcp"}}, Resolver: res})
	waitFor(t, "the SRV target's pool open", func() bool {
		st := d.Status().Backends
		return len(st) == 1 && st[0].Connections != nil && *st[0].Connections == DefaultBackendConns
	})
	if st := d.Status().Backends[0]; st.Name != fmt.Sprintf("a.pbxes.test:%d", be.addr.Port()) || st.Transport != "tcp" {
		t.Fatalf("status %+v", st)
	}
	ph := newPhone(t)
	c := ph.establish(at, "bynametcp")
	if v := be.last(sip.INVITE, c.id).Via(); v.Transport != "TCP" {
		t.Fatalf("the INVITE reached the backend with Via %q", v.Value())
	}
}

// TestPoolKeepAlive: every pool connection gets double-CRLF keep-alives,
// so a backend that closes idle connections keeps them.
func TestPoolKeepAlive(t *testing.T) {
	be := newFakeStreamBackend(t, nil)
	cfg := Config{ProbeInterval: time.Hour, Backends: []Backend{{Addr: be.addr, Transport: "tcp"}},
		Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, Logger: slog.New(slog.DiscardHandler)}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d.pool(0).keepAlive = 20 * time.Millisecond
	runDispatcher(t, d)
	waitFor(t, "keep-alives on both connections", func() bool {
		return connections(d, 0) == DefaultBackendConns && be.streams.pings.Load() >= 2*DefaultBackendConns
	})
}

// TestBackendStreamNoRepeat: an INVITE a TCP backend leaves unanswered is
// not repeated over the connection (a reliable transport), only sent on to
// the next backend after tx_timeout.
func TestBackendStreamNoRepeat(t *testing.T) {
	tcpBE := newFakeStreamBackend(t, nil)
	tcpBE.dropInvites.Store(true)
	udpBE := newFakeBackend(t)
	d, at := startDispatcher(t, Config{Algorithm: RoundRobin, ProbeInterval: time.Hour, TxTimeout: 1500 * time.Millisecond,
		Backends: []Backend{{Addr: tcpBE.addr, Transport: "tcp"}, {Addr: udpBE.addr}}})
	waitFor(t, "the pool's connections", func() bool { return connections(d, 0) == DefaultBackendConns })
	ph := newPhone(t)
	c := ph.establish(at, "norepeat")
	if udpBE.last(sip.INVITE, c.id) == nil {
		t.Fatal("the call did not go on to the UDP backend")
	}
	if got := tcpBE.requests(time.Time{}); len(got) != 1 {
		t.Fatalf("the TCP backend got %v, want the INVITE once", got)
	}
}
