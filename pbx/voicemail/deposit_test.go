package voicemail

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"

	"github.com/twinpbx/twinpbx/internal/waitfor"
)

// caller is a phone that calls the mailbox: SIP on one socket, RTP on
// another; it answers BYE and counts them.
type caller struct {
	t    *testing.T
	cl   *sipgo.Client
	sip  string
	rtp  *net.UDPConn
	byes atomic.Int32
}

func newCaller(t *testing.T) *caller {
	t.Helper()
	r, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	c := &caller{t: t, rtp: r}
	c.cl, c.sip = sipPeer(t, sip.BYE, func(req *sip.Request, tx sip.ServerTransaction) {
		c.byes.Add(1)
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	return c
}

// sipPeer is a SIP user agent of the tests on a loopback UDP socket that
// answers requests of one method with handle; it returns its client and
// its address.
func sipPeer(t *testing.T, method sip.RequestMethod, handle sipgo.RequestHandler) (*sipgo.Client, string) {
	return sipPeerOn(t, "udp", method, handle)
}

// sipPeerOn is sipPeer over network, "udp" or "tcp".
func sipPeerOn(t *testing.T, network string, method sip.RequestMethod, handle sipgo.RequestHandler) (*sipgo.Client, string) {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ua.Close() })
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	srv.OnRequest(method, handle)
	if network == "tcp" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ln.Close() })
		go func() { _ = srv.ServeTCP(ln) }()
		return cl, ln.Addr().String()
	}
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	go func() { _ = srv.ServeUDP(conn) }()
	return cl, conn.LocalAddr().String()
}

// call sends the INVITE to the mailbox at pbx, ACKs the 200, and returns
// where the mailbox wants RTP.
func (c *caller) call(pbx string) netip.AddrPort {
	c.t.Helper()
	return c.callAs(pbx, "202", "201")
}

// callAs is call from user to target.
func (c *caller) callAs(pbx, user, target string) netip.AddrPort {
	c.t.Helper()
	_, _, to := c.dial(pbx, user, target)
	return to
}

// dial is callAs that also returns the INVITE and its 200, for requests
// in the dialog.
func (c *caller) dial(pbx, user, target string) (*sip.Request, *sip.Response, netip.AddrPort) {
	c.t.Helper()
	req, res := c.inviteAs(pbx, user, target)
	if res.StatusCode != 200 {
		c.t.Fatalf("INVITE answered %d", res.StatusCode)
	}
	ack := sip.NewRequest(sip.ACK, res.Contact().Address)
	ack.AppendHeader(req.From())
	ack.AppendHeader(res.To())
	ack.AppendHeader(req.CallID())
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: req.CSeq().SeqNo, MethodName: sip.ACK})
	ack.SetDestination(pbx)
	if err := c.cl.WriteRequest(ack); err != nil {
		c.t.Fatal(err)
	}
	o, err := parseOffer(res.Body())
	if err != nil || o.codec != PCMA || o.eventPT != 101 {
		c.t.Fatalf("the mailbox's answer %+v (%v), want PCMA and events on 101", o, err)
	}
	return req, res, o.remote
}

// invite sends the INVITE to the mailbox at pbx and returns it with its
// final response.
func (c *caller) invite(pbx string) (*sip.Request, *sip.Response) {
	c.t.Helper()
	return c.inviteAs(pbx, "202", "201")
}

// inviteAs is invite from user to target.
func (c *caller) inviteAs(pbx, user, target string) (*sip.Request, *sip.Response) {
	c.t.Helper()
	host, port, _ := net.SplitHostPort(pbx)
	p, _ := strconv.Atoi(port)
	uri := sip.Uri{Scheme: "sip", User: target, Host: host, Port: p}
	req := sip.NewRequest(sip.INVITE, uri)
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: host}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: uri, Params: sip.NewParams()})
	ch, cp, _ := net.SplitHostPort(c.sip)
	cport, _ := strconv.Atoi(cp)
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: ch, Port: cport}})
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	rp := c.rtp.LocalAddr().(*net.UDPAddr).Port
	req.SetBody(fmt.Appendf(nil, "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n", rp))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tx, err := c.cl.TransactionRequest(ctx, req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.StatusCode >= 200 {
				return req, res
			}
		case <-ctx.Done():
			c.t.Fatal("no answer to the INVITE")
		}
	}
}

// talk sends RTP to the mailbox until stop closes, 20 ms apart.
func (c *caller) talk(to netip.AddrPort, stop <-chan struct{}) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 8, SequenceNumber: uint16(i), Timestamp: uint32(160 * i), SSRC: 5}, Payload: tone(nil, PCMA, 20, 440)}
		b, _ := p.Marshal()
		_, _ = c.rtp.WriteToUDPAddrPort(b, to)
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// TestDepositEnds leaves a message and ends the box in the middle of it:
// a graceful stop saves what was recorded and says BYE; a box that hands
// over says nothing and saves nothing itself, and the twin that takes
// over (on the same store) keeps what was recorded and says BYE.
func TestDepositEnds(t *testing.T) {
	for _, handover := range []bool{false, true} {
		t.Run(map[bool]string{false: "stop", true: "handover"}[handover], func(t *testing.T) {
			st := NewMemStore()
			s, pbx := testServiceOn(t, st, func(srv *sipgo.Server, s *Service) {
				srv.OnRequest(sip.INVITE, func(req *sip.Request, tx sip.ServerTransaction) {
					s.Deposit(req, tx, Diversion{Mailbox: "201", Caller: "202"})
				})
			})
			c := newCaller(t)
			to := c.call(pbx)
			stop := make(chan struct{})
			defer close(stop)
			go c.talk(to, stop)
			// Wait until more than a second is recorded: past the greeting.
			waitfor.Cond(t, 30*time.Second, "a recording of over a second", func() bool {
				s.mu.Lock()
				defer s.mu.Unlock()
				for _, ss := range s.sessions {
					ss.ep.mu.Lock()
					d := time.Duration(0)
					if ss.ep.rec != nil {
						d = ss.ep.rec.Duration()
					}
					ss.ep.mu.Unlock()
					return d > 1200*time.Millisecond
				}
				return false
			})
			if handover {
				s.Abandon()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			s.Close(ctx)
			msgs, _ := s.Mailboxes().List("201")
			if handover {
				if len(msgs) != 0 || c.byes.Load() != 0 {
					t.Fatalf("after a handover: %d messages, %d BYEs; want none before the twin takes over", len(msgs), c.byes.Load())
				}
				twin, _ := testServiceOn(t, st)
				twin.TakeOver()
				if msgs, _ = twin.Mailboxes().List("201"); len(msgs) != 1 || msgs[0].Duration < time.Second || msgs[0].Caller != "202" {
					t.Fatalf("after the twin took over: %+v, want one message of 202 of over a second", msgs)
				}
				if r, _ := st.VoicemailRecordings(); len(r) != 0 {
					t.Errorf("%d mailbox calls still stored after the twin finished them", len(r))
				}
				waitfor.Cond(t, 20*time.Second, "the twin's BYE", func() bool { return c.byes.Load() == 1 })
				return
			}
			if len(msgs) != 1 || msgs[0].Caller != "202" || msgs[0].Codec != PCMA || msgs[0].Duration < time.Second || !msgs[0].New {
				t.Fatalf("after a stop: %+v, want one new PCMA message of 202 of over a second", msgs)
			}
			waitfor.Cond(t, 20*time.Second, "the BYE", func() bool { return c.byes.Load() == 1 })
		})
	}
}
