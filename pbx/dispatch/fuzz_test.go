package dispatch

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// recConn is a packetConn that only records what is written.
type recConn struct {
	local netip.AddrPort
	out   [][]byte
	to    []netip.AddrPort
}

func (c *recConn) ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, net.ErrClosed
}

func (c *recConn) WriteToUDPAddrPort(b []byte, a netip.AddrPort) (int, error) {
	c.out = append(c.out, append([]byte(nil), b...))
	c.to = append(c.to, a)
	return len(b), nil
}

// passedOn is the first request written, and where to (an INVITE's
// 100 Trying to the phone leaves before it); nil if none.
func (c *recConn) passedOn() (*sip.Request, netip.AddrPort) {
	for i, raw := range c.out {
		if bytes.HasPrefix(raw, []byte("SIP/2.0 ")) {
			continue // a response
		}
		if m, err := sip.ParseMessage(raw); err == nil {
			if req, ok := m.(*sip.Request); ok {
				return req, c.to[i]
			}
		}
	}
	return nil, netip.AddrPort{}
}

func (c *recConn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.local) }
func (c *recConn) Close() error        { return nil }

// FuzzHandle feeds arbitrary datagrams to the proxy: it must not panic,
// and what it sends on for a message sipgo can write back must parse as
// SIP again.
func FuzzHandle(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.sip")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("\r\n\r\n"))
	d, err := New(Config{
		Algorithm: RoundRobin,
		Backends:  []Backend{{Addr: netip.MustParseAddrPort("10.0.0.1:5060")}, {Addr: netip.MustParseAddrPort("10.0.0.2:5060"), Weight: 2}},
		Listen:    []netip.AddrPort{netip.MustParseAddrPort("10.0.0.100:5060")},
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		f.Fatal(err)
	}
	from := netip.MustParseAddrPort("10.0.0.50:5062")
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &recConn{local: netip.MustParseAddrPort("10.0.0.100:5060")}
		s := &sock{conn: c, local: c.local.Addr(), host: "10.0.0.100", port: 5060, via: "SIP/2.0/UDP 10.0.0.100:5060"}
		d.handle(s, sip.NewParser(), data, from)
		d.handle(s, sip.NewParser(), data, netip.MustParseAddrPort("10.0.0.1:5060"))
		// sipgo reads some things it cannot write back; the dispatcher
		// must not make a message that survives that round trip bad.
		m, err := sip.ParseMessage(data)
		if err != nil {
			return
		}
		if _, err := sip.ParseMessage([]byte(m.String())); err != nil {
			return
		}
		for i, out := range c.out {
			if _, err := sip.ParseMessage(out); err != nil {
				t.Fatalf("sent to %s a message that does not parse (%v):\n%s", c.to[i], err, out)
			}
		}
	})
}

// FuzzBranch: splitBranch reads back the attempt number attemptBranch
// wrote, and from any other branch 0 with the branch whole.
func FuzzBranch(f *testing.F) {
	for _, s := range []string{branchPrefix + "abc", branchPrefix + "abc.1", branchPrefix + "abc.99999999999999999999", "x.-1", "x.01", "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b string) {
		base, n := splitBranch(b)
		switch {
		case n < 0, n == 0 && base != b:
			t.Fatalf("splitBranch(%q) = %q, %d", b, base, n)
		case n > 0 && b != base+"."+b[len(base)+1:]:
			t.Fatalf("splitBranch(%q) = %q, %d: not a prefix", b, base, n)
		case n > 0 && strconv.Itoa(n) == b[len(base)+1:] && attemptBranch(base, n) != b:
			t.Fatalf("attemptBranch(%q, %d) does not give %q back", base, n, b)
		}
	})
}

// FuzzNameTarget: any configured name either is refused or gives a URI
// the resolver takes.
func FuzzNameTarget(f *testing.F) {
	for _, s := range []string{"pbx1.example:5060", "_sip._udp.pbxes.example", "sip:pbx.example", "sips:x", "a@b", "sip:x;transport=tcp",
		"_sip._tcp.pbxes.example", "_sips._tcp.pbxes.example", "pbx.example:5061"} {
		for _, tr := range []string{"udp", "tcp", "tls", "sctp"} {
			f.Add(s, tr)
		}
	}
	f.Fuzz(func(t *testing.T, name, tr string) {
		u, err := nameTarget(name, tr)
		if err != nil {
			return
		}
		if u.Host == "" {
			t.Fatalf("%q: no host in %v", name, u)
		}
		if got, _ := u.UriParams.Get("transport"); got != tr && (tr != "" || got != "udp") {
			t.Fatalf("%q over %q: the URI %v asks for %q", name, tr, u, got)
		}
	})
}

// FuzzBackendAnswer sends an INVITE from a phone through the proxy and
// then an arbitrary datagram from its backend, in which @@BRANCH@@ stands
// for the branch the INVITE went out with (so the failover path is
// reached): no panic, and everything the dispatcher sends parses.
func FuzzBackendAnswer(f *testing.F) {
	for _, code := range []string{"100 Trying", "180 Ringing", "200 OK", "486 Busy Here", "500 Oops", "503 Service Unavailable", "999 X"} {
		f.Add([]byte("SIP/2.0 " + code + "\r\nVia: SIP/2.0/UDP 10.0.0.100:5060;branch=@@BRANCH@@;rport\r\n" +
			"Via: SIP/2.0/UDP 10.0.0.50:5062;branch=z9hG4bK-1;rport=5062;received=10.0.0.50\r\n" +
			"From: <sip:caller@10.0.0.50>;tag=c1\r\nTo: <sip:200@10.0.0.100>;tag=be\r\nCall-ID: fuzz-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"))
	}
	f.Add([]byte("SIP/2.0 503 X\r\nVia: SIP/2.0/UDP 10.0.0.100:5060;branch=@@BRANCH@@.7\r\nCSeq: 1 INVITE\r\n\r\n"))
	const invite = "INVITE sip:200@10.0.0.100:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.50:5062;branch=z9hG4bK-1;rport\r\n" +
		"From: <sip:caller@10.0.0.50>;tag=c1\r\nTo: <sip:200@10.0.0.100>\r\nCall-ID: fuzz-1\r\nCSeq: 1 INVITE\r\n" +
		"Contact: <sip:caller@10.0.0.50:5062>\r\nContent-Length: 0\r\n\r\n"
	f.Fuzz(func(t *testing.T, data []byte) { fuzzAnswer(t, invite, data) })
}

// FuzzBackendAnswerOther is FuzzBackendAnswer for a REGISTER, whose
// failover sends it on without ACKs and whose late answers are dropped.
func FuzzBackendAnswerOther(f *testing.F) {
	for _, code := range []string{"100 Trying", "200 OK", "401 Unauthorized", "500 Oops", "503 Service Unavailable", "999 X"} {
		f.Add([]byte("SIP/2.0 " + code + "\r\nVia: SIP/2.0/UDP 10.0.0.100:5060;branch=@@BRANCH@@;rport\r\n" +
			"Via: SIP/2.0/UDP 10.0.0.50:5062;branch=z9hG4bK-1;rport=5062;received=10.0.0.50\r\n" +
			"From: <sip:caller@10.0.0.50>;tag=c1\r\nTo: <sip:caller@10.0.0.100>;tag=be\r\nCall-ID: fuzz-1\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"))
	}
	f.Add([]byte("SIP/2.0 200 X\r\nVia: SIP/2.0/UDP 10.0.0.100:5060;branch=@@BRANCH@@.1\r\nCSeq: 1 REGISTER\r\n\r\n"))
	const register = "REGISTER sip:10.0.0.100:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.50:5062;branch=z9hG4bK-1;rport\r\n" +
		"From: <sip:caller@10.0.0.100>;tag=c1\r\nTo: <sip:caller@10.0.0.100>\r\nCall-ID: fuzz-1\r\nCSeq: 1 REGISTER\r\n" +
		"Contact: <sip:caller@10.0.0.50:5062>\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n"
	f.Fuzz(func(t *testing.T, data []byte) { fuzzAnswer(t, register, data) })
}

// fuzzAnswer sends request from a phone through a dispatcher in front of
// two backends, then data from the backend it went to (@@BRANCH@@ being
// the branch it went out with), then sweeps as after a minute: no panic,
// and everything the dispatcher sends parses.
func fuzzAnswer(t *testing.T, request string, data []byte) {
	d, err := New(Config{
		Algorithm: HashCallID,
		Backends:  []Backend{{Addr: netip.MustParseAddrPort("10.0.0.1:5060")}, {Addr: netip.MustParseAddrPort("10.0.0.2:5060")}},
		Listen:    []netip.AddrPort{netip.MustParseAddrPort("10.0.0.100:5060")},
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &recConn{local: netip.MustParseAddrPort("10.0.0.100:5060")}
	s := &sock{conn: c, local: c.local.Addr(), host: "10.0.0.100", port: 5060, via: "SIP/2.0/UDP 10.0.0.100:5060"}
	d.handle(s, sip.NewParser(), []byte(request), netip.MustParseAddrPort("10.0.0.50:5062"))
	fwd, be := c.passedOn()
	if fwd == nil {
		t.Fatal("the request was not passed on")
	}
	branch := fwd.Via().Params.GetOr("branch", "")
	answer := bytes.ReplaceAll(data, []byte("@@BRANCH@@"), []byte(branch))
	d.handle(s, sip.NewParser(), answer, be)
	d.sweep(time.Now().Add(time.Minute)) // and whatever timed out
	// As in FuzzHandle: only what sipgo can write back must come out
	// readable.
	if m, err := sip.ParseMessage(answer); err != nil {
		return
	} else if _, err := sip.ParseMessage([]byte(m.String())); err != nil {
		return
	}
	for i, out := range c.out {
		if _, err := sip.ParseMessage(out); err != nil {
			t.Fatalf("sent to %s a message that does not parse (%v):\n%s", c.to[i], err, out)
		}
	}
}
