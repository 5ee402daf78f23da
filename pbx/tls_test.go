package pbx

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/waitfor"
	"github.com/twinpbx/twinpbx/pbx/pbxtest"
	"github.com/twinpbx/twinpbx/pbx/sdp"
	"github.com/twinpbx/twinpbx/pbx/tlscert"
)

// tlsBox is a PBX listening on UDP and TLS on loopback.
type tlsBox struct {
	p       *PBX
	tlsAddr string
	stop    func()
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func tlsConfig(port int) *config.Config {
	return &config.Config{
		Node: config.Node{Name: "t"},
		SIP: config.SIP{
			Listen:   []string{"tls:127.0.0.1:" + strconv.Itoa(port)},
			RTPPorts: "31100-31139",
		},
		Extensions: []config.Extension{
			{Number: "100", Secret: "secret-100-x"},
			{Number: "101", Secret: "secret-101-x"},
		},
	}
}

// startTLSBox runs a PBX with cfg; stop ends it (also at cleanup).
func startTLSBox(t *testing.T, cfg *config.Config, store Store, seed []byte) *tlsBox {
	t.Helper()
	var w io.Writer = io.Discard
	if testing.Verbose() {
		w = os.Stderr
	}
	p, err := New(Options{Config: cfg, Store: store, AuthKey: seed,
		Logger: slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan []Listener, 1)
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, func(ls []Listener) { ready <- ls }) }()
	b := &tlsBox{p: p}
	stopped := false
	b.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(b.stop)
	select {
	case ls := <-ready:
		for _, l := range ls {
			if l.Transport == "tls" {
				b.tlsAddr = l.Addr
			}
		}
	case err := <-done:
		t.Fatalf("PBX did not start: %v", err)
	}
	if b.tlsAddr == "" {
		t.Fatal("no tls listener bound")
	}
	return b
}

// tlsPhone is a SIP phone over TLS that accepts only the certificate
// with the fingerprint it pinned.
type tlsPhone struct {
	t       *testing.T
	user    string
	pbx     string
	ua      *sipgo.UserAgent
	cl      *sipgo.Client
	dua     *sipgo.DialogUA
	invites chan *sipgo.DialogServerSession
	offers  chan []byte
	answer  func(offer []byte) []byte
	// notifies are the bodies of the NOTIFYs the phone was sent.
	notifies chan string
}

func newTLSPhone(t *testing.T, user, pbxAddr, pin string) *tlsPhone {
	t.Helper()
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 || tlscert.Fingerprint(cs.PeerCertificates[0].Raw) != pin {
			return errors.New("certificate does not match the pinned fingerprint")
		}
		return nil
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("phone-"+user),
		sipgo.WithUserAgenTLSConfig(&tls.Config{InsecureSkipVerify: true, VerifyConnection: verify, MinVersion: tls.VersionTLS12}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	ph := &tlsPhone{t: t, user: user, pbx: pbxAddr, ua: ua, cl: cl,
		invites: make(chan *sipgo.DialogServerSession, 4), offers: make(chan []byte, 4), notifies: make(chan string, 4)}
	contact := sip.ContactHeader{Address: sip.Uri{Scheme: "sips", User: user, Host: "127.0.0.1", Port: 5999}}
	ph.dua = &sipgo.DialogUA{Client: cl, ContactHDR: contact}
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		s, err := ph.dua.ReadInvite(req, tx)
		if err != nil {
			return
		}
		ph.offers <- append([]byte(nil), req.Body()...)
		if ph.answer != nil {
			_ = s.RespondSDP(ph.answer(req.Body()))
		}
		ph.invites <- s
		<-tx.Done()
	})
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {})
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	})
	srv.OnNotify(func(req *sip.Request, tx sip.ServerTransaction) {
		select {
		case ph.notifies <- string(req.Body()):
		default:
		}
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	})
	return ph
}

func (ph *tlsPhone) uri(user string) sip.Uri {
	host, port, _ := net.SplitHostPort(ph.pbx)
	p, _ := strconv.Atoi(port)
	return sip.Uri{Scheme: "sips", User: user, Host: host, Port: p}
}

// register registers the phone over TLS, answering the digest challenge.
func (ph *tlsPhone) register(ctx context.Context) error {
	req := sip.NewRequest(sip.REGISTER, ph.uri(""))
	req.SetTransport("TLS")
	req.AppendHeader(&sip.ToHeader{Address: ph.uri(ph.user)})
	req.AppendHeader(&sip.FromHeader{Address: ph.uri(ph.user), Params: sip.NewParams()})
	req.AppendHeader(&ph.dua.ContactHDR)
	req.AppendHeader(sip.NewHeader("Expires", "300"))
	res, err := ph.cl.Do(ctx, req)
	if err != nil {
		return err
	}
	if res.StatusCode == 401 {
		res, err = ph.cl.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: ph.user, Password: "secret-" + ph.user + "-x"})
		if err != nil {
			return err
		}
	}
	if res.StatusCode != 200 {
		return fmt.Errorf("REGISTER answered %d", res.StatusCode)
	}
	return nil
}

// srtpOffer is an SDES-SRTP offer (RFC 4568) for media on port.
func srtpOffer(port int, key string) []byte {
	return []byte("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio " + strconv.Itoa(port) + " RTP/SAVP 0 101\r\n" +
		"a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n" +
		"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key + "\r\na=sendrecv\r\n")
}

// mediaSocket is a UDP socket a phone receives its media on.
func mediaSocket(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// relayTarget is where an SDP from the PBX tells the phone to send RTP.
func relayTarget(t *testing.T, body []byte) netip.AddrPort {
	t.Helper()
	st, err := sdp.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	return st[sdp.FirstAudio(st)].RTP()
}

// cryptoLines returns the a=crypto lines of body.
func cryptoLines(body []byte) []string {
	var out []string
	for l := range strings.SplitSeq(string(body), "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "a=crypto:") {
			out = append(out, l)
		}
	}
	return out
}

// srtpLikePacket is an RTP header followed by bytes that stand for an
// encrypted payload and its authentication tag.
func srtpLikePacket(seq uint16, ssrc uint32) []byte {
	pkt := []byte{0x80, 0, byte(seq >> 8), byte(seq), 0, 0, 0, 160, byte(ssrc >> 24), byte(ssrc >> 16), byte(ssrc >> 8), byte(ssrc)}
	for i := range 170 {
		pkt = append(pkt, byte(i*7+int(seq)))
	}
	return pkt
}

// relayed sends pkts from one socket to dst and checks they arrive on
// the other byte for byte.
func relayed(t *testing.T, from, to *net.UDPConn, dst netip.AddrPort, ssrc uint32) {
	t.Helper()
	buf := make([]byte, 2048)
	for seq := uint16(1); seq <= 5; seq++ {
		pkt := srtpLikePacket(seq, ssrc)
		if _, err := from.WriteToUDPAddrPort(pkt, dst); err != nil {
			t.Fatal(err)
		}
		_ = to.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, _, err := to.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("packet %d not relayed: %v", seq, err)
		}
		if !bytes.Equal(buf[:n], pkt) {
			t.Fatalf("packet %d changed by the relay:\n got %x\nwant %x", seq, buf[:n], pkt)
		}
	}
}

// TestTLSCallSRTP: two phones register over TLS, pinning the box's
// derived certificate; 100 calls 101 with SDES-SRTP; the crypto
// attributes reach the other side unchanged, the relay forwards the
// packets untouched, and the call over the callee's own connection ends
// with BYE.
func TestTLSCallSRTP(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, 32)
	box := startTLSBox(t, tlsConfig(freeTCPPort(t)), pbxtest.NewStore(), seed)
	st := box.p.Status().TLS
	if st == nil || !st.SelfSigned || st.Fingerprint == "" {
		t.Fatalf("status TLS = %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	caller := newTLSPhone(t, "100", box.tlsAddr, st.Fingerprint)
	callee := newTLSPhone(t, "101", box.tlsAddr, st.Fingerprint)
	for _, ph := range []*tlsPhone{caller, callee} {
		if err := ph.register(ctx); err != nil {
			t.Fatalf("register %s: %v", ph.user, err)
		}
	}
	var b tlsBinding
	for _, bd := range box.p.Status().Registrations {
		if bd.AOR == "101" {
			b.source = bd.Source
		}
	}
	if !strings.HasPrefix(b.source, "tls:127.0.0.1:") {
		t.Fatalf("binding source %q, want the phone's TLS connection", b.source)
	}

	callerMedia, calleeMedia := mediaSocket(t), mediaSocket(t)
	const callerKey = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"
	const calleeKey = "d0RmdmcmVAMIqAQ0bTjZyBJAG3bA3WNzRGz5cAOZ"
	callee.answer = func([]byte) []byte { return srtpOffer(calleeMedia.LocalAddr().(*net.UDPAddr).Port, calleeKey) }

	inv := sip.NewRequest(sip.INVITE, caller.uri("101"))
	inv.SetTransport("TLS")
	from := &sip.FromHeader{Address: caller.uri("100"), Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(8))
	inv.AppendHeader(from)
	inv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	inv.SetBody(srtpOffer(callerMedia.LocalAddr().(*net.UDPAddr).Port, callerKey))
	sess, err := caller.dua.WriteInvite(ctx, inv)
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.WaitAnswer(ctx, sipgo.AnswerOptions{Username: "100", Password: "secret-100-x"}); err != nil {
		t.Fatalf("call: %v", err)
	}
	if err := sess.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	var offer []byte
	select {
	case offer = <-callee.offers:
	case <-ctx.Done():
		t.Fatal("the callee got no INVITE")
	}
	answer := sess.InviteResponse.Body()
	if got := cryptoLines(offer); len(got) != 1 || got[0] != "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"+callerKey {
		t.Errorf("crypto offered to the callee: %q", got)
	}
	if got := cryptoLines(answer); len(got) != 1 || got[0] != "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"+calleeKey {
		t.Errorf("crypto answered to the caller: %q", got)
	}
	for _, body := range [][]byte{offer, answer} {
		if !bytes.Contains(body, []byte(" RTP/SAVP ")) {
			t.Errorf("profile changed:\n%s", body)
		}
	}
	relayed(t, callerMedia, calleeMedia, relayTarget(t, answer), 0x11111111)
	relayed(t, calleeMedia, callerMedia, relayTarget(t, offer), 0x22222222)

	if err := sess.Bye(ctx); err != nil {
		t.Fatalf("BYE: %v", err)
	}
	waitfor.Cond(t, 20*time.Second, "the call to end", func() bool { return len(box.p.Status().Calls) == 0 })

	// A callee that answers the SRTP offer with plain RTP: the relay
	// cannot translate, the caller gets 488.
	callee.answer = func(offer []byte) []byte {
		return bytes.Replace(srtpOffer(calleeMedia.LocalAddr().(*net.UDPAddr).Port, calleeKey), []byte("RTP/SAVP"), []byte("RTP/AVP"), 1)
	}
	inv = sip.NewRequest(sip.INVITE, caller.uri("101"))
	inv.SetTransport("TLS")
	from = &sip.FromHeader{Address: caller.uri("100"), Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(8))
	inv.AppendHeader(from)
	inv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	inv.SetBody(srtpOffer(callerMedia.LocalAddr().(*net.UDPAddr).Port, callerKey))
	sess, err = caller.dua.WriteInvite(ctx, inv)
	if err != nil {
		t.Fatal(err)
	}
	err = sess.WaitAnswer(ctx, sipgo.AnswerOptions{Username: "100", Password: "secret-100-x"})
	var rerr *sipgo.ErrDialogResponse
	if !errors.As(err, &rerr) || rerr.Res.StatusCode != 488 {
		t.Fatalf("SRTP offer answered with RTP: %v, want 488", err)
	}
	waitfor.Cond(t, 20*time.Second, "the refused call to end", func() bool { return len(box.p.Status().Calls) == 0 })
}

type tlsBinding struct{ source string }

// TestTLSPinnedAcrossRestart: the derived certificate is the same after a
// restart, so a phone that pinned it before registers; a phone pinned on
// another certificate cannot.
func TestTLSPinnedAcrossRestart(t *testing.T) {
	seed := bytes.Repeat([]byte{9}, 32)
	cfg := tlsConfig(freeTCPPort(t))
	store := pbxtest.NewStore()
	box := startTLSBox(t, cfg, store, seed)
	pin := box.p.Status().TLS.Fingerprint
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// No phone talks to the first box: New sets the SIP stack's global
	// logger, which any live SIP transaction of a phone would read.
	box.stop()

	box = startTLSBox(t, cfg, store, seed)
	if got := box.p.Status().TLS.Fingerprint; got != pin {
		t.Fatalf("fingerprint after restart %s, want %s", got, pin)
	}
	ph := newTLSPhone(t, "100", box.tlsAddr, pin)
	waitfor.Cond(t, 60*time.Second, "the pinned phone to register again", func() bool {
		actx, acancel := context.WithTimeout(ctx, 3*time.Second)
		defer acancel()
		err := ph.register(actx)
		if err != nil {
			t.Logf("register: %v", err)
		}
		return err == nil
	})

	other := newTLSPhone(t, "101", box.tlsAddr, strings.Repeat("00:", 31)+"00")
	if err := other.register(ctx); err == nil {
		t.Fatal("a phone pinned on another certificate registered")
	}
}

// TestTLSBadClients: plain-text SIP, garbage and a silent client on the
// TLS port do not keep a TLS phone from registering meanwhile.
func TestTLSBadClients(t *testing.T) {
	seed := bytes.Repeat([]byte{5}, 32)
	box := startTLSBox(t, tlsConfig(freeTCPPort(t)), pbxtest.NewStore(), seed)
	var conns []net.Conn
	for _, payload := range []string{
		"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n",
		"\x16\x03\x01\x00\x05hello",
		"", // says nothing
	} {
		c, err := net.Dial("tcp", box.tlsAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if payload != "" {
			if _, err := c.Write([]byte(payload)); err != nil {
				t.Fatal(err)
			}
		}
		conns = append(conns, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ph := newTLSPhone(t, "100", box.tlsAddr, box.p.Status().TLS.Fingerprint)
	if err := ph.register(ctx); err != nil {
		t.Fatalf("register beside bad clients: %v", err)
	}
	// The plain-text client gets no SIP answer: its connection is closed
	// after the failed handshake.
	_ = conns[0].SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 512)
	n, err := conns[0].Read(buf)
	for err == nil {
		if bytes.Contains(buf[:n], []byte("SIP/2.0")) {
			t.Fatalf("plain text answered: %q", buf[:n])
		}
		n, err = conns[0].Read(buf)
	}
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		t.Fatal("the plain-text connection was left open")
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestTLSTwinSameCertificate: both boxes of a twin pair derive the same
// certificate from the shared secret, though each names itself first.
func TestTLSTwinSameCertificate(t *testing.T) {
	box := func(name, peer, local, remote string) *config.Config {
		return &config.Config{
			Node: config.Node{Name: name},
			SIP:  config.SIP{Listen: []string{"tls:0.0.0.0:5061", "udp:0.0.0.0:5060"}, Advertise: "192.168.1.10", RTPPorts: "20000-20999"},
			Cluster: &config.Cluster{Peer: peer, VIP: "192.168.1.10/24",
				LAN:       config.Path{Local: local, Peer: remote},
				Crossover: config.Path{Local: "10.0.0.1", Peer: "10.0.0.2"}},
		}
	}
	seed := bytes.Repeat([]byte{1}, 32)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := newTLS(box("pbx-a", "pbx-b", "192.168.1.11", "192.168.1.12"), seed, log)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newTLS(box("pbx-b", "pbx-a", "192.168.1.12", "192.168.1.11"), seed, log)
	if err != nil {
		t.Fatal(err)
	}
	if a.id.Fingerprint != b.id.Fingerprint {
		t.Fatalf("the twins present different certificates: %s and %s", a.id.Fingerprint, b.id.Fingerprint)
	}
	leaf := a.id.Cert.Leaf
	for _, h := range []string{"192.168.1.10", "192.168.1.11", "192.168.1.12", "pbx-a", "pbx-b"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("SAN: %v", err)
		}
	}
	if err := leaf.VerifyHostname("0.0.0.0"); err == nil {
		t.Error("the wildcard listen address is in the certificate")
	}
	other, err := newTLS(box("pbx-a", "pbx-b", "192.168.1.11", "192.168.1.12"), bytes.Repeat([]byte{2}, 32), log)
	if err != nil {
		t.Fatal(err)
	}
	if other.id.Fingerprint == a.id.Fingerprint {
		t.Error("another pairing secret gave the same certificate")
	}
}

func TestTLSChangeNeedsRestart(t *testing.T) {
	cfg := tlsConfig(freeTCPPort(t))
	box := startTLSBox(t, cfg, pbxtest.NewStore(), bytes.Repeat([]byte{4}, 32))
	same := *cfg
	same.Extensions = append([]config.Extension(nil), cfg.Extensions[:1]...)
	if box.p.SetConfig(&same) {
		t.Error("removing an extension asked for a restart")
	}
	files := same
	files.SIP.TLS = &config.SIPTLS{Cert: "/c.pem", Key: "/k.pem"}
	if !box.p.SetConfig(&files) {
		t.Error("new certificate files did not ask for a restart")
	}
	box.p.SetConfig(&same)
	renamed := same
	renamed.Node.Name = "u"
	if !box.p.SetConfig(&renamed) {
		t.Error("a new name in the derived certificate did not ask for a restart")
	}
}
