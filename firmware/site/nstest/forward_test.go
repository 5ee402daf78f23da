package nstest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
	psdp "github.com/pion/sdp/v3"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/testbed"
)

// Ports of the Go caller in its namespace (sipp uses 5070 and 6000).
const (
	callerSIPPort = 5080
	callerRTPPort = 40000
)

// caller is a SIP phone that only calls: a sipgo user agent on a socket
// opened in a phone's namespace, with an RTP socket that sends a packet
// every 20 ms and counts the packets that come back.
type caller struct {
	t    *testing.T
	ext  config.Extension
	addr netip.Addr
	dua  *sipgo.DialogUA
	cl   *sipgo.Client
	rtp  *net.UDPConn
	got  atomic.Int64
	dlg  *sipgo.DialogClientSession
}

func newCaller(t *testing.T, bed *testbed.Bed, n testbed.Node, ext config.Extension) *caller {
	t.Helper()
	c := &caller{t: t, ext: ext, addr: bed.Addr(n)}
	sipAddr := netip.AddrPortFrom(c.addr, callerSIPPort)
	var conn *net.UDPConn
	err := bed.InNS(bed.NS(n), func() error {
		var err error
		if conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(sipAddr)); err != nil {
			return err
		}
		c.rtp, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(c.addr, callerRTPPort)))
		return err
	})
	if err != nil {
		if conn != nil {
			_ = conn.Close()
		}
		t.Fatalf("opening the caller's sockets in %s: %v", n, err)
	}
	log := slog.New(slog.DiscardHandler)
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("caller-"+ext.Number), sipgo.WithUserAgentHostname(c.addr.String()))
	if err != nil {
		t.Fatal(err)
	}
	// Every request leaves from the namespace's socket: one sipgo opened
	// itself would be in the test's namespace.
	c.cl, err = sipgo.NewClient(ua, sipgo.WithClientLogger(log), sipgo.WithClientAddr(sipAddr.String()),
		sipgo.WithClientConnectionAddr(sipAddr.String()))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	c.dua = &sipgo.DialogUA{Client: c.cl, ContactHDR: sip.ContactHeader{
		Address: sip.Uri{Scheme: "sip", User: ext.Number, Host: c.addr.String(), Port: callerSIPPort}}}
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.ServeUDP(conn)
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, err := c.rtp.Read(buf)
			if err != nil {
				return
			}
			var p rtp.Packet
			if p.Unmarshal(buf[:n]) == nil && p.Version == 2 {
				c.got.Add(1)
			}
		}
	}()
	waitFor(t, 10*time.Second, "the caller's SIP socket in use", func() (bool, string) {
		cn, err := ua.TransportLayer().GetConnection("udp", sipAddr.String())
		return err == nil && cn != nil, fmt.Sprint(err)
	})
	t.Cleanup(func() {
		_ = c.rtp.Close()
		_ = ua.Close()
		_ = conn.Close()
		<-served
	})
	return c
}

// call calls number through the box at box:5060 with digest auth and
// returns the box's media address from its answer.
func (c *caller) call(ctx context.Context, box netip.Addr, number string) (netip.AddrPort, error) {
	to := sip.Uri{Scheme: "sip", User: number, Host: box.String(), Port: 5060}
	from := &sip.FromHeader{DisplayName: c.ext.Name, Address: sip.Uri{Scheme: "sip", User: c.ext.Number, Host: box.String()}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(10))
	a := c.addr.String()
	offer := fmt.Appendf(nil, "v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n", a, a, callerRTPPort)
	dlg, err := c.dua.Invite(ctx, to, offer, from, &sip.ToHeader{Address: to, Params: sip.NewParams()},
		sip.NewHeader("Content-Type", "application/sdp"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("calling %s: %w", number, err)
	}
	if err := dlg.WaitAnswer(ctx, sipgo.AnswerOptions{Username: c.ext.Number, Password: c.ext.Secret}); err != nil {
		return netip.AddrPort{}, fmt.Errorf("waiting for %s to answer: %w", number, err)
	}
	if err := dlg.Ack(ctx); err != nil {
		return netip.AddrPort{}, fmt.Errorf("acknowledging the answer: %w", err)
	}
	c.dlg = dlg
	var s psdp.SessionDescription
	if err := s.Unmarshal(dlg.InviteResponse.Body()); err != nil || len(s.MediaDescriptions) == 0 || s.ConnectionInformation == nil {
		return netip.AddrPort{}, fmt.Errorf("the answer's SDP %q: %v", dlg.InviteResponse.Body(), err)
	}
	ip, err := netip.ParseAddr(s.ConnectionInformation.Address.Address)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("the answer's SDP address: %w", err)
	}
	return netip.AddrPortFrom(ip, uint16(s.MediaDescriptions[0].MediaName.Port.Value)), nil
}

// sendRTP sends 20 ms packets of silence to dst until ctx ends.
func (c *caller) sendRTP(ctx context.Context, dst netip.AddrPort) {
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SSRC: 0x517e}, Payload: make([]byte, 160)}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := pkt.Marshal(); err == nil {
			_, _ = c.rtp.WriteToUDPAddrPort(b, dst)
		}
		pkt.SequenceNumber++
		pkt.Timestamp += 160
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// hangUp sends BYE.
func (c *caller) hangUp(ctx context.Context) error {
	if c.dlg == nil {
		return errors.New("no call")
	}
	return c.dlg.Bye(ctx)
}

// natOnlyFrom makes a phone's namespace drop every IPv4 packet that does
// not come from addr, as a NAT that only lets in the box the phone
// registered with (endpoint-dependent filtering).
func (s *site) natOnlyFrom(phone testbed.Node, addr string) {
	s.t.Helper()
	ruleset := fmt.Sprintf("table inet tpnat {\n\tchain in {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tip saddr != %s drop\n\t}\n}\n", addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", s.bed.NS(phone), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("nftables in %s: %v: %s", phone, err, out)
	}
}

// cdrs returns box i's CDRs as CSV.
func (s *site) cdrs(i int) (string, error) {
	out, err := exec.Command(binary, "cdr", "export", "--data", s.dirs[i]).Output()
	if err != nil {
		return "", fmt.Errorf("box%d's CDRs: %w", i+1, err)
	}
	return string(out), nil
}

// TestSiteForwardThroughNAT: bob's phone is behind a NAT that only lets
// in box 1, where it registered. Alice calls him through box 3: box 3
// forwards the call to box 1, which rings bob over his NAT binding and
// relays the media, so RTP flows both ways (bob's phone echoes it). Both
// boxes' CDRs name the other. An INVITE from a phone carrying a forged
// site mark is refused with 403.
func TestSiteForwardThroughNAT(t *testing.T) {
	s := newSite(t)
	s.waitFormed([]int{0, 1, 2}, 3, 30*time.Second)
	bobPhone := s.phones[1]
	s.natOnlyFrom(bobPhone, s.addr(0))
	if err := s.bed.PingWithin(s.nodes[2], s.bed.Addr(bobPhone), time.Second); err == nil {
		t.Fatal("box 3 reaches bob's phone through the NAT")
	}

	reg := s.sipp(bobPhone, 0, "register.xml", bob, bob.Number, "-key", "expires", "600")
	waitSipp(t, reg, "registering bob on box 1 through the NAT")
	waitFor(t, 10*time.Second, "bob's registration in box 3's site table", func() (bool, string) {
		st, err := s.status(2)
		if err != nil {
			return false, err.Error()
		}
		return st.Site.Bindings >= 1, fmt.Sprintf("bindings %d", st.Site.Bindings)
	})

	uas := s.sipp(bobPhone, 0, "uas.xml", config.Extension{}, bob.Number, "-rtp_echo")
	alice := newCaller(t, s.bed, s.phones[0], alice)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	media, err := alice.call(ctx, s.bed.Addr(s.nodes[2]), bob.Number)
	if err != nil {
		t.Fatal(err)
	}
	if media.Addr() != s.bed.Addr(s.nodes[2]) {
		t.Errorf("alice's media goes to %v, want box 3 (which anchors it)", media)
	}
	rtpCtx, stopRTP := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		alice.sendRTP(rtpCtx, media)
	}()
	waitFor(t, 20*time.Second, "RTP echoed back from bob's phone", func() (bool, string) {
		n := alice.got.Load()
		return n >= 25, fmt.Sprintf("%d packets back", n)
	})
	stopRTP()
	<-done
	if err := alice.hangUp(ctx); err != nil {
		t.Errorf("hanging up: %v", err)
	}
	waitSipp(t, uas, "bob's phone")

	for _, c := range []struct {
		box  int
		want string
	}{{2, "box1"}, {0, "box3"}} {
		waitFor(t, 10*time.Second, fmt.Sprintf("box%d's CDR of the forwarded call", c.box+1), func() (bool, string) {
			text, err := s.cdrs(c.box)
			if err != nil {
				return false, err.Error()
			}
			for _, line := range strings.Split(text, "\n") {
				if strings.Contains(line, ",ANSWERED,") && strings.HasSuffix(strings.TrimSpace(line), ","+c.want) {
					return true, ""
				}
			}
			return false, text
		})
	}

	// A stranger (alice's phone, not a member) forges the mark.
	forged := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: bob.Number, Host: s.addr(0), Port: 5060})
	aor := sip.Uri{Scheme: "sip", User: alice.ext.Number, Host: s.addr(0)}
	from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(10))
	forged.AppendHeader(from)
	forged.AppendHeader(&sip.ToHeader{Address: forged.Recipient, Params: sip.NewParams()})
	forged.AppendHeader(&alice.dua.ContactHDR)
	forged.AppendHeader(sip.NewHeader("X-Twinpbx-Site", fmt.Sprintf("box3 %d AAAAforgedAAAA", time.Now().Unix())))
	res, err := alice.cl.Do(ctx, forged)
	if err != nil {
		t.Fatalf("sending the forged INVITE: %v", err)
	}
	if res.StatusCode != 403 {
		t.Errorf("forged forwarded INVITE answered %d, want 403", res.StatusCode)
	}
	waitFor(t, 10*time.Second, "box 1 logs the refusal", func() (bool, string) {
		return strings.Contains(s.procs[0].Output(), "forwarded INVITE refused"), "not logged"
	})
}
