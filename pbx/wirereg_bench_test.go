package pbx

import (
	"fmt"
	"net"
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
	var uri sip.Uri
	if err := sip.ParseUri("sip:127.0.0.1", &uri); err != nil {
		b.Fatal(err)
	}
	nonce := p.auth.Verify(auth.Request{Method: "REGISTER", Recipient: &uri}, false).Challenges[0]
	nonce = nonce[strings.Index(nonce, `nonce="`)+7:]
	nonce = nonce[:strings.IndexByte(nonce, '"')]
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
	p.wire.serve(conn, src, src.String(), &r)
	time.Sleep(10 * time.Millisecond)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		if !p.wire.parser.Parse(msgs[i], &r) {
			b.Fatal("not read")
		}
		p.wire.serve(conn, src, src.String(), &r)
	}
	b.StopTimer()
	if n := len(p.loc.All()); n != 1 {
		b.Fatalf("%d bindings", n)
	}
}
