// Package testphone is a SIP phone for tests that run boxes in network
// namespaces (internal/testbed): a sipgo user agent whose one UDP socket
// is opened in a phone's namespace, so every request leaves from there,
// with one call at a time and a G.711 RTP stream of 20 ms packets whose
// arrivals it records. The twin's audio-across-failover test and the
// site's forwarding test use it; sipp serves where scripted messages are
// enough.
package testphone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/testbed"
	"github.com/twinpbx/twinpbx/internal/waitfor"
)

// Options places a phone's sockets; zero fields take the defaults.
type Options struct {
	SIPPort int // 5060
	RTPPort int // 40000
	// Server is where Register and Call send their requests (port 5060):
	// the bed's VIP when not set.
	Server netip.Addr
}

// Phone is one phone for one extension on one node of a bed.
type Phone struct {
	t      testing.TB
	node   testbed.Node
	ext    config.Extension
	sip    netip.AddrPort
	server netip.Addr

	client *sipgo.Client
	dua    *sipgo.DialogUA
	// Media is the phone's RTP stream.
	Media *RTP

	mu     sync.Mutex
	caller *sipgo.DialogClientSession // the call this phone made
	callee *sipgo.DialogServerSession // the call this phone answered
	byes   chan struct{}
	answer chan netip.AddrPort
}

// New starts a phone for ext on node; it stops in t.Cleanup.
func New(t testing.TB, bed *testbed.Bed, node testbed.Node, ext config.Extension, opt Options) *Phone {
	t.Helper()
	if opt.SIPPort == 0 {
		opt.SIPPort = 5060
	}
	if opt.RTPPort == 0 {
		opt.RTPPort = 40000
	}
	if !opt.Server.IsValid() {
		opt.Server = bed.VIP().Addr()
	}
	addr := bed.Addr(node)
	p := &Phone{t: t, node: node, ext: ext, sip: netip.AddrPortFrom(addr, uint16(opt.SIPPort)),
		server: opt.Server, byes: make(chan struct{}, 4), answer: make(chan netip.AddrPort, 1)}
	var conn *net.UDPConn
	err := bed.InNS(bed.NS(node), func() error {
		var err error
		if conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(p.sip)); err != nil {
			return err
		}
		p.Media, err = ListenRTP(netip.AddrPortFrom(addr, uint16(opt.RTPPort)))
		return err
	})
	if err != nil {
		if conn != nil {
			_ = conn.Close()
		}
		t.Fatalf("opening phone %s's sockets: %v", node, err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(ext.Number), sipgo.WithUserAgentHostname(addr.String()))
	if err != nil {
		t.Fatal(err)
	}
	// Every request leaves from the socket opened in the namespace: a
	// socket sipgo opened itself would be in the test's namespace.
	p.client, err = sipgo.NewClient(ua, sipgo.WithClientLogger(log), sipgo.WithClientAddr(p.sip.String()),
		sipgo.WithClientConnectionAddr(p.sip.String()))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	p.dua = &sipgo.DialogUA{Client: p.client, ContactHDR: sip.ContactHeader{
		Address: sip.Uri{Scheme: "sip", User: ext.Number, Host: addr.String(), Port: opt.SIPPort}}}
	srv.OnInvite(p.onInvite)
	srv.OnAck(p.onAck)
	srv.OnBye(p.onBye)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.ServeUDP(conn)
	}()
	// Requests find the socket in sipgo's pool once ServeUDP has put it
	// there; until then sipgo would try to open its own.
	waitfor.Cond(t, 10*time.Second, "phone "+string(node)+"'s SIP socket in use", func() bool {
		c, err := ua.TransportLayer().GetConnection("udp", p.sip.String())
		return err == nil && c != nil
	})
	t.Cleanup(func() {
		p.Media.Close()
		_ = ua.Close()
		_ = conn.Close()
		<-served
	})
	return p
}

// testWriter sends sipgo's warnings to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// Node is the bed node the phone runs on.
func (p *Phone) Node() testbed.Node { return p.node }

// Contact is the phone's Contact header.
func (p *Phone) Contact() *sip.ContactHeader { return &p.dua.ContactHDR }

// Do sends a request of the test's own making from the phone's socket
// and returns the final answer.
func (p *Phone) Do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	return p.client.Do(ctx, req)
}

// Answered delivers the PBX's media address of each call the phone
// answered.
func (p *Phone) Answered() <-chan netip.AddrPort { return p.answer }

// Byes delivers one value per BYE from the PBX the phone answered.
func (p *Phone) Byes() <-chan struct{} { return p.byes }

// sdp is this phone's offer or answer: PCMU from its RTP socket.
func (p *Phone) sdp() []byte {
	a := p.Media.Local.Addr().String()
	return fmt.Appendf(nil, "v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n", a, a, p.Media.Local.Port())
}

// Register registers the phone's contact with the server, digest
// authenticated.
func (p *Phone) Register(ctx context.Context) error {
	aor := sip.Uri{Scheme: "sip", User: p.ext.Number, Host: p.server.String()}
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: p.server.String(), Port: 5060})
	from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: aor, Params: sip.NewParams()})
	req.AppendHeader(&p.dua.ContactHDR)
	req.AppendHeader(sip.NewHeader("Expires", "600"))
	res, err := p.client.Do(ctx, req)
	if err != nil {
		return fmt.Errorf("registering %s: %w", p.ext.Number, err)
	}
	if res.StatusCode == sip.StatusUnauthorized {
		res, err = p.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: p.ext.Number, Password: p.ext.Secret})
		if err != nil {
			return fmt.Errorf("registering %s with credentials: %w", p.ext.Number, err)
		}
	}
	if res.StatusCode != sip.StatusOK {
		return fmt.Errorf("registering %s: %d %s", p.ext.Number, res.StatusCode, res.Reason)
	}
	return nil
}

// Call calls number through the server and returns once the call is
// answered and acknowledged, with the PBX's media address.
func (p *Phone) Call(ctx context.Context, number string) (netip.AddrPort, error) {
	return p.CallVia(ctx, p.server, number)
}

// CallVia is Call through another box than the phone's server.
func (p *Phone) CallVia(ctx context.Context, box netip.Addr, number string) (netip.AddrPort, error) {
	to := sip.Uri{Scheme: "sip", User: number, Host: box.String(), Port: 5060}
	from := &sip.FromHeader{DisplayName: p.ext.Name, Address: sip.Uri{Scheme: "sip", User: p.ext.Number, Host: box.String()}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(10))
	dlg, err := p.dua.Invite(ctx, to, p.sdp(), from, &sip.ToHeader{Address: to, Params: sip.NewParams()},
		sip.NewHeader("Content-Type", "application/sdp"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("calling %s: %w", number, err)
	}
	if err := dlg.WaitAnswer(ctx, sipgo.AnswerOptions{Username: p.ext.Number, Password: p.ext.Secret}); err != nil {
		return netip.AddrPort{}, fmt.Errorf("waiting for %s to answer: %w", number, err)
	}
	if err := dlg.Ack(ctx); err != nil {
		return netip.AddrPort{}, fmt.Errorf("acknowledging the answer: %w", err)
	}
	p.mu.Lock()
	p.caller = dlg
	p.mu.Unlock()
	media, err := MediaAddr(dlg.InviteResponse.Body())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("reading the answer's SDP: %w", err)
	}
	return media, nil
}

// onInvite answers a call from the PBX with this phone's SDP, or a
// re-INVITE within it with the same SDP.
func (p *Phone) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", p.sdp())
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		res.AppendHeader(&p.dua.ContactHDR)
		_ = tx.Respond(res)
		return
	}
	dlg, err := p.dua.ReadInvite(req, tx)
	if err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusBadRequest, err.Error(), nil))
		return
	}
	media, err := MediaAddr(req.Body())
	if err != nil {
		_ = dlg.Respond(sip.StatusNotAcceptable, "Not Acceptable Here", nil)
		return
	}
	p.mu.Lock()
	p.callee = dlg
	p.mu.Unlock()
	select {
	case p.answer <- media:
	default:
	}
	// RespondSDP returns once the ACK came.
	if err := dlg.RespondSDP(p.sdp()); err != nil {
		p.t.Logf("phone %s: answering: %v", p.node, err)
	}
}

func (p *Phone) onAck(req *sip.Request, tx sip.ServerTransaction) {
	p.mu.Lock()
	dlg := p.callee
	p.mu.Unlock()
	if dlg != nil {
		_ = dlg.ReadAck(req, tx)
	}
}

func (p *Phone) onBye(req *sip.Request, tx sip.ServerTransaction) {
	p.mu.Lock()
	caller, callee := p.caller, p.callee
	p.mu.Unlock()
	var err error
	switch {
	case caller != nil && req.CallID().Value() == caller.InviteRequest.CallID().Value():
		err = caller.ReadBye(req, tx)
	case callee != nil && req.CallID().Value() == callee.InviteRequest.CallID().Value():
		err = callee.ReadBye(req, tx)
	default:
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
		p.t.Logf("phone %s: BYE for an unknown call %s", p.node, req.CallID().Value())
		return
	}
	if err != nil {
		p.t.Logf("phone %s: answering a BYE: %v", p.node, err)
		return
	}
	select {
	case p.byes <- struct{}{}:
	default: // a retransmitted BYE
	}
}

// HangUp sends a BYE on the phone's call and returns the final status.
func (p *Phone) HangUp(ctx context.Context) (int, error) {
	p.mu.Lock()
	caller, callee := p.caller, p.callee
	p.mu.Unlock()
	var res *sip.Response
	var err error
	switch {
	case caller != nil:
		res, err = caller.Do(ctx, sip.NewRequest(sip.BYE, caller.InviteResponse.Contact().Address))
	case callee != nil:
		res, err = callee.Do(ctx, sip.NewRequest(sip.BYE, callee.InviteRequest.Contact().Address))
	default:
		return 0, errors.New("hanging up: no call")
	}
	if err != nil {
		return 0, fmt.Errorf("sending BYE: %w", err)
	}
	return res.StatusCode, nil
}
