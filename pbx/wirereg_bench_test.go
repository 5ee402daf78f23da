package pbx

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/auth"
	"github.com/twinpbx/twinpbx/pbx/regwire"
)

// discardConn is a PacketConn whose writes go nowhere.
type discardConn struct{ net.PacketConn }

func (discardConn) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }

// freshNonce is a nonce p's authenticator issues now for a REGISTER to
// uri, as its challenge carries it.
func freshNonce(t testing.TB, p *PBX, uri string) string {
	t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(uri, &u); err != nil {
		t.Fatal(err)
	}
	c := p.auth.Verify(auth.Request{Method: "REGISTER", Recipient: &u}, false).Challenges[0]
	c = c[strings.Index(c, `nonce="`)+len(`nonce="`):]
	return c[:strings.IndexByte(c, '"')]
}

// BenchmarkWireRegisterRefresh: the user-space work of one authenticated
// refresh on the plain REGISTER path (read, digest check, binding
// refreshed, answer written), without the sockets.
func BenchmarkWireRegisterRefresh(b *testing.B) {
	p, _ := runTestPBX(b, "31100-31119", func(c *config.Config, o *Options) {
		c.SIP.Realm = "pbx"
	})
	src := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5999}
	head := "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-%d;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:100@127.0.0.1>;tag=f\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: bench\r\n" +
		"CSeq: %d REGISTER\r\nContact: <sip:100@127.0.0.1:5999>\r\nExpires: 3600\r\nUser-Agent: bench\r\n"
	nonce := freshNonce(b, p, "sip:127.0.0.1")
	msgs := make([]string, b.N+1)
	for i := range msgs {
		a := &digestAnswer{user: "100", secret: "secret-100-x", uri: "sip:127.0.0.1", nc: i + 1}
		msgs[i] = fmt.Sprintf(head, i, i+1) + a.header("pbx", nonce) + "Content-Length: 0\r\n\r\n"
	}
	conn := discardConn{}
	var r regwire.Request
	// The first makes the binding (a write through); the rest refresh it.
	if !p.wire.parser.Parse(msgs[0], &r) {
		b.Fatal("not read")
	}
	p.wire.serve(conn, src, newPeer(src.String()), &r)
	time.Sleep(10 * time.Millisecond)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		if !p.wire.parser.Parse(msgs[i], &r) {
			b.Fatal("not read")
		}
		p.wire.serve(conn, src, newPeer(src.String()), &r)
	}
	b.StopTimer()
	if n := len(p.loc.All()); n != 1 {
		b.Fatalf("%d bindings", n)
	}
}

// feedConn hands out prepared datagrams, one per read, from one source,
// then io.EOF; what is written to it goes nowhere, or to sent when it is
// set. Like datagrams that arrive a while apart, each is read once the
// one before it was answered (served counts the answers).
type feedConn struct {
	net.PacketConn
	from   net.Addr
	msgs   []string
	next   int
	served func() uint64
	base   uint64
	sent   chan string
}

func (c *feedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for c.served()-c.base < uint64(c.next) {
		runtime.Gosched()
	}
	if c.next == len(c.msgs) {
		return 0, nil, io.EOF
	}
	n := copy(b, c.msgs[c.next])
	c.next++
	return n, c.from, nil
}

func (c *feedConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	if c.sent != nil {
		c.sent <- string(b)
	}
	return len(b), nil
}

// BenchmarkWireRegisterUsers: the user-space work of what bench/run.sh
// measures per REGISTER: 10,000 registered extensions, each op one user's
// REGISTER without credentials (answered 401) and then with them (its
// binding refreshed, 200), each with a new Call-ID, read off a socket
// through the connection the PBX uses, credentials served on a worker.
// Only the system calls are missing.
func BenchmarkWireRegisterUsers(b *testing.B) {
	const users = 10000
	p, _ := runTestPBX(b, "31120-31139", func(c *config.Config, o *Options) {
		c.SIP.Realm = "pbx"
		c.Extensions = make([]config.Extension, users)
		for i := range c.Extensions {
			c.Extensions[i] = config.Extension{Number: strconv.Itoa(10000 + i), Secret: "bench-secret-" + strconv.Itoa(10000+i)}
		}
	})
	src := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5999}
	request := func(i, seq int, nonce string) string {
		u := strconv.Itoa(10000 + i%users)
		m := "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-" + strconv.Itoa(2*i+seq) + "\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:" + u + "@127.0.0.1:5060>;tag=1-" + strconv.Itoa(i) + "\r\nTo: <sip:" + u + "@127.0.0.1:5060>\r\n" +
			"Call-ID: " + strconv.Itoa(i) + "-bench@127.0.0.1\r\nCSeq: " + strconv.Itoa(seq) + " REGISTER\r\n" +
			"Contact: <sip:" + u + "@127.0.0.1:5999>\r\nExpires: 3600\r\n"
		if nonce != "" {
			a := &digestAnswer{user: u, secret: "bench-secret-" + u, uri: "sip:127.0.0.1:5060", nc: 1}
			m += a.header("pbx", nonce)
		}
		return m + "User-Agent: twinpbx-bench\r\nContent-Length: 0\r\n\r\n"
	}
	// msgs returns the datagrams of ops [from, to): each a fresh nonce.
	msgs := func(from, to int) []string {
		out := make([]string, 0, 2*(to-from))
		for i := from; i < to; i++ {
			out = append(out, request(i, 1, ""), request(i, 2, freshNonce(b, p, "sip:127.0.0.1:5060")))
		}
		return out
	}
	run := func(m []string) {
		f := &feedConn{from: src, msgs: m, served: p.wire.served.Load, base: p.wire.served.Load()}
		c := newRegisterConn(f, p.fastRegister, p.wire, p.workers)
		if _, _, err := c.ReadFrom(make([]byte, 2048)); err != io.EOF {
			b.Fatalf("reading: %v", err)
		}
	}
	run(msgs(0, users)) // every user registered once
	if n := len(p.loc.All()); n != users {
		b.Fatalf("%d bindings", n)
	}
	const chunk = 20000
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(chunk, b.N-done)
		b.StopTimer()
		m := msgs(users+done, users+done+n)
		b.StartTimer()
		run(m)
		done += n
	}
}
