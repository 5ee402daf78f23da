package media

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/twinpbx/twinpbx/internal/waitfor"
	"github.com/twinpbx/twinpbx/pbx/sdp"
)

var loopback = netip.MustParseAddr("127.0.0.1")

func newTestRelay(t testing.TB, low, high int) *Relay {
	t.Helper()
	r, err := NewRelay(Config{Addr: loopback, PortLow: low, PortHigh: high})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// phone is a loopback UDP endpoint with an RTP and an RTCP socket.
type phone struct {
	rtp, rtcp *net.UDPConn
}

func listen(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newPhone(t testing.TB) *phone { return &phone{rtp: listen(t), rtcp: listen(t)} }

func port(c *net.UDPConn) int { return c.LocalAddr().(*net.UDPAddr).Port }

// sdpFor describes p; a=rtcp names its RTCP socket, which is not at RTP+1.
func (p *phone) sdp(conn string) []byte {
	return []byte(strings.ReplaceAll(fmt.Sprintf(
		"v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 %s\nt=0 0\n"+
			"m=audio %d RTP/AVP 0 8 101\na=rtcp:%d\na=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\n"+
			"a=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\na=sendrecv\n",
		conn, port(p.rtp), port(p.rtcp)), "\n", "\r\n"))
}

func rtpPacket(t testing.TB, pt uint8, seq uint16, ssrc uint32, payload []byte) []byte {
	t.Helper()
	b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, SSRC: ssrc, Timestamp: uint32(seq) * 160}, Payload: payload}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rtcpPacket is a minimal receiver report from ssrc.
func rtcpPacket(ssrc uint32) []byte {
	return []byte{0x80, 201, 0, 1, byte(ssrc >> 24), byte(ssrc >> 16), byte(ssrc >> 8), byte(ssrc)}
}

func send(t testing.TB, c *net.UDPConn, to netip.AddrPort, pkt []byte) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(pkt, to); err != nil {
		t.Fatal(err)
	}
}

// recv waits for one datagram on c.
func recv(t testing.TB, c *net.UDPConn) ([]byte, netip.AddrPort) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, src, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("waiting for a packet on %v: %v", c.LocalAddr(), err)
	}
	return buf[:n], src
}

// expectNothing checks that nothing is queued on c. Call it only after
// the relay has observably dealt with the packet (see waitFor).
func expectNothing(t testing.TB, c *net.UDPConn) {
	t.Helper()
	c.SetReadDeadline(time.Now())
	buf := make([]byte, 2048)
	if n, _, err := c.ReadFromUDPAddrPort(buf); err == nil {
		t.Fatalf("unexpected packet on %v: %x", c.LocalAddr(), buf[:n])
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitfor.Cond(t, 5*time.Second, what, cond)
}

// call opens a session and runs the offer/answer through it. It returns
// the relay addresses each phone was told to send to.
func call(t testing.TB, r *Relay, id string, a, b *phone) (s *Session, forA, forB netip.AddrPort) {
	t.Helper()
	s, err := r.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, rewritePort(t, s, B, b.sdp("127.0.0.1")), rewritePort(t, s, A, a.sdp("127.0.0.1"))
}

// rewritePort rewrites from's SDP and returns the relay address the other
// leg is told to send to.
func rewritePort(t testing.TB, s *Session, from Leg, body []byte) netip.AddrPort {
	t.Helper()
	out, err := s.Rewrite(from, body)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sdp.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if st[0].Port != s.Port(from.other()) {
		t.Fatalf("SDP from %v points at port %d, want the port facing %v (%d)", from, st[0].Port, from.other(), s.Port(from.other()))
	}
	return st[0].RTP()
}

func rtcpOf(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr(), a.Port()+1) }

func TestForwardBothWays(t *testing.T) {
	r := newTestRelay(t, 46000, 46099)
	a, b := newPhone(t), newPhone(t)
	_, forA, forB := call(t, r, "call-1", a, b)

	tests := []struct {
		name     string
		from     *net.UDPConn
		to       netip.AddrPort
		want     *net.UDPConn
		pkt      []byte
		wantFrom netip.AddrPort
	}{
		{"RTP A to B", a.rtp, forA, b.rtp, rtpPacket(t, 0, 1, 0xaaaa, bytes.Repeat([]byte{0xff}, 160)), forB},
		{"RTP B to A", b.rtp, forB, a.rtp, rtpPacket(t, 0, 1, 0xbbbb, bytes.Repeat([]byte{0x7f}, 160)), forA},
		{"DTMF event untouched", a.rtp, forA, b.rtp, rtpPacket(t, 101, 2, 0xaaaa, []byte{5, 0x8a, 0x03, 0x20}), forB},
		{"RTCP A to B", a.rtcp, rtcpOf(forA), b.rtcp, rtcpPacket(0xaaaa), rtcpOf(forB)},
		{"RTCP B to A", b.rtcp, rtcpOf(forB), a.rtcp, rtcpPacket(0xbbbb), rtcpOf(forA)},
		{"not RTP at all", a.rtp, forA, b.rtp, []byte("any payload at all"), forB},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			send(t, tt.from, tt.to, tt.pkt)
			got, src := recv(t, tt.want)
			if !bytes.Equal(got, tt.pkt) {
				t.Errorf("payload changed: sent %x, got %x", tt.pkt, got)
			}
			if src != tt.wantFrom {
				t.Errorf("came from %v, want the relay's %v (symmetric RTP)", src, tt.wantFrom)
			}
		})
	}
}

// TestLatchBehindNAT: A's SDP names an address it does not send from, as a
// phone behind NAT does; the relay must answer where packets come from.
func TestLatchBehindNAT(t *testing.T) {
	r := newTestRelay(t, 46100, 46199)
	a, b := newPhone(t), newPhone(t)
	s, forA, forB := call(t, r, "nat", a, b)
	natted := newPhone(t) // A's real source after NAT

	// Before A has sent anything, B's packets go where A's SDP said.
	p1 := rtpPacket(t, 8, 1, 0xb, []byte("before"))
	send(t, b.rtp, forB, p1)
	if got, _ := recv(t, a.rtp); !bytes.Equal(got, p1) {
		t.Fatalf("got %x", got)
	}
	// A talks from its NAT mapping; B's packets now follow it.
	send(t, natted.rtp, forA, rtpPacket(t, 8, 1, 0xa, []byte("hello")))
	recv(t, b.rtp)
	p2 := rtpPacket(t, 8, 2, 0xb, []byte("after"))
	send(t, b.rtp, forB, p2)
	if got, _ := recv(t, natted.rtp); !bytes.Equal(got, p2) {
		t.Fatalf("got %x", got)
	}
	// RTCP latches on its own.
	send(t, natted.rtcp, rtcpOf(forA), rtcpPacket(0xa))
	recv(t, b.rtcp)
	send(t, b.rtcp, rtcpOf(forB), rtcpPacket(0xb))
	recv(t, natted.rtcp)

	// A stray source with the same SSRC is not forwarded while A talks.
	stray := newPhone(t)
	before := s.Stats().Legs[A].Dropped
	send(t, stray.rtp, forA, rtpPacket(t, 8, 3, 0xa, []byte("spoof")))
	waitFor(t, "the stray packet to be dropped", func() bool { return s.Stats().Legs[A].Dropped > before })
	expectNothing(t, b.rtp)

	// A new SSRC from another source (the phone re-started its stream
	// from a new mapping) moves the latch at once.
	send(t, stray.rtp, forA, rtpPacket(t, 8, 1, 0xa2, []byte("new stream")))
	recv(t, b.rtp)
	send(t, b.rtp, forB, p2)
	if got, _ := recv(t, stray.rtp); !bytes.Equal(got, p2) {
		t.Fatalf("got %x", got)
	}
	if st := s.State(); st.Legs[A].LatchedRTP != stray.rtp.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Errorf("latched %v", st.Legs[A].LatchedRTP)
	}
}

// TestLatchRules drives route directly with a fake clock.
func TestLatchRules(t *testing.T) {
	addr := func(p uint16) netip.AddrPort { return netip.AddrPortFrom(loopback, p) }
	type pkt struct {
		after time.Duration // since the previous packet
		src   uint16
		ssrc  uint32
		want  bool // forwarded
		latch uint16
	}
	tests := []struct {
		name string
		pkts []pkt
	}{
		{"first packet latches", []pkt{{0, 5000, 1, true, 5000}}},
		{"same source keeps", []pkt{{0, 5000, 1, true, 5000}, {20 * time.Millisecond, 5000, 1, true, 5000}}},
		{"new source same SSRC ignored", []pkt{{0, 5000, 1, true, 5000}, {20 * time.Millisecond, 6000, 1, false, 5000}}},
		{"new source new SSRC moves", []pkt{{0, 5000, 1, true, 5000}, {20 * time.Millisecond, 6000, 2, true, 6000}}},
		{"new source after silence moves", []pkt{{0, 5000, 1, true, 5000}, {3 * time.Second, 6000, 1, true, 6000}}},
		{"silence counted from the latched source", []pkt{
			{0, 5000, 1, true, 5000}, {1500 * time.Millisecond, 6000, 1, false, 5000}, {400 * time.Millisecond, 6000, 1, false, 5000},
			{100 * time.Millisecond, 6000, 1, true, 6000}}},
		{"same source new SSRC keeps source", []pkt{{0, 5000, 1, true, 5000}, {0, 5000, 9, true, 5000}, {0, 6000, 9, false, 5000}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRelay(t, 46200, 46299)
			now := time.Unix(1000, 0)
			r.now = func() time.Time { return now }
			s, err := r.Open("latch")
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			s.legs[B] = legState{known: true, sdpRTP: addr(7000), sdpRTCP: addr(7001)}
			for i, p := range tt.pkts {
				now = now.Add(p.after)
				dst, ok := s.route(A, false, addr(p.src), rtpPacket(t, 0, uint16(i), p.ssrc, nil))
				if ok != p.want {
					t.Errorf("packet %d: forwarded %v, want %v", i, ok, p.want)
				}
				if ok && dst != addr(7000) {
					t.Errorf("packet %d: sent to %v", i, dst)
				}
				if got := s.legs[A].rtp.addr; got != addr(p.latch) {
					t.Errorf("packet %d: latched %v, want %v", i, got, addr(p.latch))
				}
			}
		})
	}
}

func TestRouteAllocatesNothing(t *testing.T) {
	r := newTestRelay(t, 46300, 46399)
	s, err := r.Open("alloc")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.legs[B] = legState{known: true, sdpRTP: netip.MustParseAddrPort("127.0.0.1:7000")}
	src := netip.MustParseAddrPort("127.0.0.1:5000")
	pkt := rtpPacket(t, 0, 1, 1, make([]byte, 160))
	if n := testing.AllocsPerRun(100, func() { s.route(A, false, src, pkt) }); n != 0 {
		t.Errorf("route allocates %v times per packet", n)
	}
}

func TestHold(t *testing.T) {
	r := newTestRelay(t, 46400, 46499)
	a, b := newPhone(t), newPhone(t)
	s, forA, forB := call(t, r, "hold", a, b)

	// B holds the old way: c=0.0.0.0. A's packets must go nowhere.
	if _, err := s.Rewrite(B, b.sdp("0.0.0.0")); err != nil {
		t.Fatal(err)
	}
	before := s.Stats().Legs[A].Dropped
	send(t, a.rtp, forA, rtpPacket(t, 0, 1, 0xa, []byte("music on hold")))
	waitFor(t, "the packet to be dropped", func() bool { return s.Stats().Legs[A].Dropped > before })
	expectNothing(t, b.rtp)
	if !s.State().Legs[B].Hold {
		t.Error("state does not show the hold")
	}
	// B can still send (a=sendonly style hold from the other side).
	send(t, b.rtp, forB, rtpPacket(t, 0, 1, 0xb, []byte("x")))
	recv(t, a.rtp)

	// Resume: media flows to B again.
	if _, err := s.Rewrite(B, b.sdp("127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	p := rtpPacket(t, 0, 2, 0xa, []byte("back"))
	send(t, a.rtp, forA, p)
	if got, _ := recv(t, b.rtp); !bytes.Equal(got, p) {
		t.Fatalf("got %x", got)
	}
}

func TestRewriteErrorKeepsState(t *testing.T) {
	r := newTestRelay(t, 46500, 46599)
	a, b := newPhone(t), newPhone(t)
	s, _, _ := call(t, r, "err", a, b)
	before := s.State()
	if _, err := s.Rewrite(A, []byte("not sdp")); !errors.Is(err, sdp.ErrBadSDP) {
		t.Errorf("err = %v", err)
	}
	if _, err := s.Rewrite(Leg(7), a.sdp("127.0.0.1")); err == nil {
		t.Error("invalid leg accepted")
	}
	r2, err := NewRelay(Config{Addr: loopback, PortLow: 46600, PortHigh: 46699, Filter: func(n string) bool { return n == "G729" }})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	s2, err := r2.Open("codec")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Rewrite(A, a.sdp("127.0.0.1")); !errors.Is(err, sdp.ErrNoCommonCodec) {
		t.Errorf("err = %v", err)
	}
	if after := s.State(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("state changed:\n%+v\n%+v", before, after)
	}
}

func TestOriginPerLeg(t *testing.T) {
	r := newTestRelay(t, 46700, 46799)
	a := newPhone(t)
	s, err := r.Open("origin")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var o [3][]byte
	for i, conn := range []string{"127.0.0.1", "127.0.0.1", "0.0.0.0"} {
		if o[i], err = s.Rewrite(A, a.sdp(conn)); err != nil {
			t.Fatal(err)
		}
	}
	o1, o2, o3 := o[0], o[1], o[2]
	ol := func(b []byte) string { return strings.SplitN(string(b), "\r\n", 3)[1] }
	if ol(o1) != ol(o2) {
		t.Errorf("refresh changed the origin: %q vs %q", ol(o1), ol(o2))
	}
	if ol(o1) == ol(o3) || !strings.HasSuffix(ol(o1), " IN IP4 127.0.0.1") {
		t.Errorf("origins %q then %q", ol(o1), ol(o3))
	}
}

func TestPortsReleasedAndExhausted(t *testing.T) {
	r := newTestRelay(t, 46800, 46803) // exactly two pairs: one call
	s, err := r.Open("one")
	if err != nil {
		t.Fatal(err)
	}
	ports := [2]int{s.Port(A), s.Port(B)}
	if _, err := r.Open("two"); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("second call: err = %v, want ErrNoPorts", err)
	}
	if r.Sessions() != 1 {
		t.Errorf("%d sessions", r.Sessions())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	s2, err := r.Open("two")
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	if got := [2]int{s2.Port(A), s2.Port(B)}; got != ports && got != [2]int{ports[1], ports[0]} {
		t.Errorf("ports %v, want %v again", got, ports)
	}
}

func TestBusyPortSkipped(t *testing.T) {
	busy, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 46901})
	if err != nil {
		t.Skipf("cannot hold a port for the test: %v", err)
	}
	defer busy.Close()
	r := newTestRelay(t, 46900, 46905) // pair 46900 has its RTCP port taken
	s, err := r.Open("skip")
	if err != nil {
		t.Fatal(err)
	}
	if s.Port(A) == 46900 || s.Port(B) == 46900 {
		t.Errorf("got the busy pair: %d %d", s.Port(A), s.Port(B))
	}
	s.Close()
}

func TestAllocatorLRU(t *testing.T) {
	failing := map[int]bool{}
	a := newAllocator(101, 108, func(p int) (*pair, error) { // pairs 102, 104, 106
		if failing[p] {
			return nil, errors.New("address in use")
		}
		return &pair{port: p}, nil
	})
	take := func() int {
		t.Helper()
		p, err := a.take()
		if err != nil {
			t.Fatal(err)
		}
		return p.port
	}
	if got := a.pairs(); got != 3 {
		t.Fatalf("%d pairs", got)
	}
	if p := take(); p != 102 {
		t.Fatalf("first %d", p)
	}
	a.release(102)
	if p := take(); p != 104 {
		t.Errorf("after releasing 102 got %d, want the least recently used 104", p)
	}
	failing[106] = true
	if p := take(); p != 102 {
		t.Errorf("got %d, want 102 (106 cannot bind)", p)
	}
	if _, err := a.take(); !errors.Is(err, ErrNoPorts) || !strings.Contains(err.Error(), "address in use") {
		t.Errorf("err = %v", err)
	}
	if _, err := a.takePort(104); err == nil {
		t.Error("took a used port")
	}
	if _, err := a.takePort(105); err == nil {
		t.Error("took a port outside the range")
	}
}

func TestRestore(t *testing.T) {
	r := newTestRelay(t, 47000, 47099)
	a, b := newPhone(t), newPhone(t)
	natted := newPhone(t)
	s, forA, forB := call(t, r, "failover", a, b)
	send(t, natted.rtp, forA, rtpPacket(t, 0, 1, 0xa, []byte("x")))
	recv(t, b.rtp)
	o1, _ := s.Rewrite(A, a.sdp("127.0.0.1"))

	// Export as the active would replicate it, then lose the box.
	exported := s.State()
	blob, err := json.Marshal(exported)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("state: %s", blob)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	var st SessionState
	if err := json.Unmarshal(blob, &st); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st, exported) {
		t.Fatalf("state changed through JSON:\n%+v\n%+v", exported, st)
	}

	// The twin restores on the same ports and carries on without SDP.
	twin := newTestRelay(t, 47000, 47099)
	s2, err := twin.Restore(st)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Port(A) != int(forA.Port()) || s2.Port(B) != int(forB.Port()) {
		t.Fatalf("restored on %d/%d, want %d/%d", s2.Port(A), s2.Port(B), forA.Port(), forB.Port())
	}
	p := rtpPacket(t, 0, 2, 0xb, []byte("still here"))
	send(t, b.rtp, forB, p)
	if got, _ := recv(t, natted.rtp); !bytes.Equal(got, p) {
		t.Fatalf("got %x", got)
	}
	send(t, natted.rtp, forA, p)
	recv(t, b.rtp)
	// The origin presented to B carries on: same SDP, same version.
	o2, err := s2.Rewrite(A, a.sdp("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(o1, o2) {
		t.Errorf("SDP to B changed across the failover:\n%s\n%s", o1, o2)
	}
	if _, err := twin.Restore(st); err == nil {
		t.Error("restored the same session twice")
	}
}

func TestRestoreErrors(t *testing.T) {
	r := newTestRelay(t, 47100, 47199)
	tests := []struct {
		name string
		st   SessionState
	}{
		{"odd port", SessionState{ID: "x", Legs: [2]LegState{{Port: 47101}, {Port: 47104}}}},
		{"outside range", SessionState{ID: "x", Legs: [2]LegState{{Port: 40000}, {Port: 47104}}}},
		{"same port twice", SessionState{ID: "x", Legs: [2]LegState{{Port: 47102}, {Port: 47102}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := r.Restore(tt.st); err == nil {
				t.Fatal("no error")
			}
			if r.Sessions() != 0 {
				t.Errorf("%d sessions", r.Sessions())
			}
		})
	}
	// A failed restore gives back what it took.
	s, err := r.Restore(SessionState{ID: "ok", Legs: [2]LegState{{Port: 47102}, {Port: 47104}}})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestConcurrentSessions(t *testing.T) {
	r := newTestRelay(t, 47200, 47399)
	const calls, packets = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for i := range calls {
		a, b := newPhone(t), newPhone(t)
		s, forA, forB := call(t, r, fmt.Sprintf("c%d", i), a, b)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			for n := range packets {
				for _, dir := range []struct {
					from, to *net.UDPConn
					dst      netip.AddrPort
				}{{a.rtp, b.rtp, forA}, {b.rtp, a.rtp, forB}} {
					want := fmt.Appendf(nil, "call %d packet %d", i, n)
					pkt := append([]byte{0x80, 0, 0, byte(n), 0, 0, 0, 0, 0, 0, 0, byte(i)}, want...)
					if _, err := dir.from.WriteToUDPAddrPort(pkt, dir.dst); err != nil {
						errs <- err
						return
					}
					dir.to.SetReadDeadline(time.Now().Add(5 * time.Second))
					m, _, err := dir.to.ReadFromUDPAddrPort(buf)
					if err != nil || !bytes.Equal(buf[:m], pkt) {
						errs <- fmt.Errorf("call %d packet %d: %q, %v", i, n, buf[:m], err)
						return
					}
				}
			}
			if st := s.Stats(); st.Legs[A].Packets != packets || st.Legs[B].Packets != packets {
				errs <- fmt.Errorf("call %d stats %+v", i, st)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if r.Sessions() != calls {
		t.Errorf("%d sessions", r.Sessions())
	}
}

func TestCloseStopsGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	r, err := NewRelay(Config{Addr: loopback, PortLow: 47400, PortHigh: 47499})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := r.Open(fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := runtime.NumGoroutine(); n < before+12 {
		t.Fatalf("%d goroutines, want at least %d", n, before+12)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the forwarding goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
	if r.Sessions() != 0 {
		t.Errorf("%d sessions after Close", r.Sessions())
	}
	if _, err := r.Open("late"); !errors.Is(err, ErrClosed) {
		t.Errorf("Open after Close: %v", err)
	}
}

func TestDuplicateID(t *testing.T) {
	r := newTestRelay(t, 47500, 47599)
	if _, err := r.Open("dup"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Open("dup"); err == nil {
		t.Error("two sessions with one ID")
	}
}

func TestNewRelayErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no address", Config{PortLow: 10000, PortHigh: 20000}},
		{"unspecified address", Config{Addr: netip.IPv4Unspecified(), PortLow: 10000, PortHigh: 20000}},
		{"multicast", Config{Addr: netip.MustParseAddr("239.1.1.1"), PortLow: 10000, PortHigh: 20000}},
		{"reversed range", Config{Addr: loopback, PortLow: 20000, PortHigh: 10000}},
		{"port zero", Config{Addr: loopback, PortLow: 0, PortHigh: 10000}},
		{"port too high", Config{Addr: loopback, PortLow: 10000, PortHigh: 70000}},
		{"one pair only", Config{Addr: loopback, PortLow: 10001, PortHigh: 10004}},
		{"negative relatch", Config{Addr: loopback, PortLow: 10000, PortHigh: 20000, RelatchAfter: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewRelay(tt.cfg); err == nil {
				t.Fatal("no error")
			}
		})
	}
	if _, err := NewRelay(Config{Addr: netip.MustParseAddr("10.255.255.254"), PortLow: 10000, PortHigh: 10003}); err != nil {
		t.Errorf("an address not on the box must be accepted: %v", err)
	}
}

func FuzzRoute(f *testing.F) {
	f.Add([]byte{0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}, false)
	f.Add([]byte{0x80, 200, 0, 1, 0, 0, 0, 9}, true)
	f.Add([]byte{}, false)
	r, err := NewRelay(Config{Addr: loopback, PortLow: 47600, PortHigh: 47699})
	if err != nil {
		f.Fatal(err)
	}
	defer r.Close()
	s, err := r.Open("fuzz")
	if err != nil {
		f.Fatal(err)
	}
	s.legs[B] = legState{known: true, sdpRTP: netip.MustParseAddrPort("127.0.0.1:7000"), sdpRTCP: netip.MustParseAddrPort("127.0.0.1:7001")}
	f.Fuzz(func(t *testing.T, pkt []byte, rtcp bool) {
		dst, ok := s.route(A, rtcp, netip.MustParseAddrPort("127.0.0.1:5000"), pkt)
		if ok && dst.Port() != 7000 && dst.Port() != 7001 {
			t.Fatalf("routed to %v", dst)
		}
	})
}
