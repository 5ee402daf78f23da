// Package trunktest runs a small SIP provider for tests of trunks: a
// registrar and call server on a loopback UDP port that asks digest
// authentication for REGISTER (401) and INVITE (407) with the PBX's own
// authenticator, answers calls with a fixed SDP, and records what it saw.
package trunktest

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/auth"
)

// Provider is a running fake provider.
type Provider struct {
	// Addr is "127.0.0.1:port" of its UDP socket.
	Addr string
	ua   *sipgo.UserAgent
	srv  *sipgo.Server

	mu        sync.Mutex
	registers []*sip.Request // authenticated REGISTERs
	invites   []*sip.Request // authenticated INVITEs
	byes      []*sip.Request // BYEs answered 200
	challenge int
	code      int
	expires   int
}

// Options of a Provider.
type Options struct {
	// User and Password of the account; empty User: no authentication.
	User, Password string
	// Expires granted to registrations (default what was asked).
	Expires int
	// Code answers INVITEs (default 200 with SDP).
	Code int
	// ChallengeBYE asks digest (407) for BYEs too.
	ChallengeBYE bool
}

// SDP is the provider's answer body.
const SDP = "v=0\r\no=prov 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"

// Start runs a provider until the test ends.
func Start(t testing.TB, o Options) *Provider {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{Addr: conn.LocalAddr().String(), code: o.Code, expires: o.Expires}
	if p.code == 0 {
		p.code = 200
	}
	var dg *auth.Digest
	if o.User != "" {
		dg, err = auth.New(auth.Options{Realm: "provider.test", Secrets: func(u string) (string, bool) {
			return o.Password, u == o.User
		}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
	}
	check := func(req *sip.Request, tx sip.ServerTransaction, proxy bool) bool {
		if dg == nil {
			return true
		}
		if _, ok := dg.Authenticate(req, challengeCounter{tx, p}, proxy); !ok {
			return false
		}
		return true
	}
	p.ua, err = sipgo.NewUA(sipgo.WithUserAgent("provider"))
	if err != nil {
		t.Fatal(err)
	}
	p.srv, err = sipgo.NewServer(p.ua)
	if err != nil {
		t.Fatal(err)
	}
	p.srv.OnRegister(func(req *sip.Request, tx sip.ServerTransaction) {
		if !check(req, tx, false) {
			return
		}
		p.mu.Lock()
		p.registers = append(p.registers, req)
		exp := p.expires
		p.mu.Unlock()
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		if c := req.Contact(); c != nil {
			cc := c.Clone()
			if exp > 0 {
				cc.Params.Add("expires", strconv.Itoa(exp))
			}
			res.AppendHeader(cc)
		}
		_ = tx.Respond(res)
	})
	p.srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		if !check(req, tx, true) {
			return
		}
		p.mu.Lock()
		p.invites = append(p.invites, req)
		code := p.code
		p.mu.Unlock()
		var body []byte
		if code == 200 {
			body = []byte(SDP)
		}
		res := sip.NewResponseFromRequest(req, code, "Provider", body)
		if code == 200 {
			res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "prov", Host: "127.0.0.1", Port: conn.LocalAddr().(*net.UDPAddr).Port}})
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		}
		_ = tx.Respond(res)
	})
	p.srv.OnAck(func(*sip.Request, sip.ServerTransaction) {})
	p.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if o.ChallengeBYE && !check(req, tx, true) {
			return
		}
		p.mu.Lock()
		p.byes = append(p.byes, req)
		p.mu.Unlock()
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	p.srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.srv.ServeUDP(conn)
	}()
	t.Cleanup(func() {
		_ = conn.Close()
		_ = p.ua.Close()
		<-done
	})
	return p
}

// SetCode changes the answer to the next INVITEs.
func (p *Provider) SetCode(code int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.code = code
}

// Registers returns the authenticated REGISTERs so far.
func (p *Provider) Registers() []*sip.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*sip.Request(nil), p.registers...)
}

// Invites returns the authenticated INVITEs so far.
func (p *Provider) Invites() []*sip.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*sip.Request(nil), p.invites...)
}

// Byes returns the BYEs answered 200 so far.
func (p *Provider) Byes() []*sip.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*sip.Request(nil), p.byes...)
}

// Challenges counts the requests answered with a challenge.
func (p *Provider) Challenges() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.challenge
}

// Port is the provider's UDP port.
func (p *Provider) Port() int {
	_, port, _ := net.SplitHostPort(p.Addr)
	n, _ := strconv.Atoi(port)
	return n
}

// String names the provider for logs.
func (p *Provider) String() string { return fmt.Sprintf("provider at %s", p.Addr) }

// challengeCounter counts the challenges (401, 407) a transaction sends
// before they leave, so that a test that sees the request sent again
// with credentials also sees the challenge counted.
type challengeCounter struct {
	sip.ServerTransaction
	p *Provider
}

func (c challengeCounter) Respond(res *sip.Response) error {
	if res.StatusCode == 401 || res.StatusCode == 407 {
		c.p.mu.Lock()
		c.p.challenge++
		c.p.mu.Unlock()
	}
	return c.ServerTransaction.Respond(res)
}
