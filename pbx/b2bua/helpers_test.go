package b2bua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/google/uuid"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/waitfor"
	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/location"
	"github.com/twinpbx/twinpbx/pbx/media"
	"github.com/twinpbx/twinpbx/pbx/sipdo"
)

func TestMain(m *testing.M) {
	// Short SIP timers so that "no ACK within 64×T1" is testable; set once
	// here because sipgo keeps them in package variables.
	sip.SetTimers(50*time.Millisecond, 200*time.Millisecond, 250*time.Millisecond)
	sip.SetDefaultLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 4})))
	os.Exit(m.Run())
}

// waitFor bounds every wait of these tests for something that must
// happen. Generous: the no-ACK teardown alone takes 64×T1 = 3.2 s, and a
// loaded machine (CI runs the packages in parallel) adds to every timer.
const waitFor = 20 * time.Second

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitfor.Cond(t, waitFor, what, cond)
}

// --- fakes ---

type fakeLocator struct {
	mu sync.Mutex
	m  map[string][]location.Binding
}

func (l *fakeLocator) Lookup(aor string) []location.Binding {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]location.Binding(nil), l.m[aor]...)
}

func (l *fakeLocator) add(aor string, p *phone) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string][]location.Binding{}
	}
	l.m[aor] = append(l.m[aor], location.Binding{
		AOR:     aor,
		Contact: p.contact.String(),
		Source:  map[bool]string{false: "udp:", true: "tcp:"}[p.tcp] + p.addr,
		Expires: time.Now().Add(time.Hour),
	})
}

type fakeDirectory map[string]config.Extension

var off = false

func (d fakeDirectory) Extension(n string) (config.Extension, bool) {
	e, ok := d[n]
	return e, ok
}

// fakeAuth accepts everybody as the From user; with challenge set it
// first answers 407 to every INVITE without Proxy-Authorization.
type fakeAuth struct {
	challenge bool
	mu        sync.Mutex
	asked     int
}

// setChallenge turns challenges on or off while the PBX runs; a test
// that assigns challenge directly after newEnv races with the handlers
// (a UDP packet is no happens-before edge for the race detector).
func (a *fakeAuth) setChallenge(on bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.challenge = on
}

func (a *fakeAuth) Authenticate(req *sip.Request, tx sip.ServerTransaction, proxy bool) (string, bool) {
	a.mu.Lock()
	challenge := a.challenge
	a.mu.Unlock()
	if challenge && req.GetHeader("Proxy-Authorization") == nil {
		a.mu.Lock()
		a.asked++
		a.mu.Unlock()
		res := sip.NewResponseFromRequest(req, 407, "Proxy Authentication Required", nil)
		res.AppendHeader(sip.NewHeader("Proxy-Authenticate", `Digest realm="test", nonce="n1", algorithm=MD5`))
		_ = tx.Respond(res)
		return "", false
	}
	return req.From().Address.User, true
}

// fakeMedia marks every rewrite with the leg it came from, refuses SDP
// containing "bad", and counts open sessions.
type fakeMedia struct {
	mu       sync.Mutex
	open     map[string]bool
	opened   int
	restored int
	// lateOffers counts LateOffer calls; answers records the bodies
	// Rewrite got from leg A.
	lateOffers int
	answers    []string
	// joined counts joins (attended transfers).
	joined int
}

type fakeSession struct {
	m  *fakeMedia
	id string
	// gone: closed, or joined into another session.
	gone bool
}

func (m *fakeMedia) Open(id string) (MediaSession, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.open == nil {
		m.open = map[string]bool{}
	}
	if m.open[id] {
		return nil, fmt.Errorf("session %s already open", id)
	}
	m.open[id] = true
	m.opened++
	return &fakeSession{m: m, id: id}, nil
}

// Restore reopens a session by id, as the relay would on the twin.
func (m *fakeMedia) Restore(st media.SessionState) (MediaSession, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.open == nil {
		m.open = map[string]bool{}
	}
	if m.open[st.ID] {
		return nil, fmt.Errorf("session %s already open", st.ID)
	}
	m.open[st.ID] = true
	m.restored++
	return &fakeSession{m: m, id: st.ID}, nil
}

func (m *fakeMedia) sessions() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.open)
}

var errBadSDP = errors.New("no common codec")

func (s *fakeSession) Rewrite(from Leg, body []byte) ([]byte, error) {
	if strings.Contains(string(body), "bad") {
		return nil, errBadSDP
	}
	if from == LegA {
		s.m.mu.Lock()
		s.m.answers = append(s.m.answers, string(body))
		s.m.mu.Unlock()
	}
	name := "A"
	if from == LegB {
		name = "B"
	}
	return append(append([]byte(nil), body...), fmt.Sprintf("a=relayed-from:%s\r\n", name)...), nil
}

// JoinSession joins two fake sessions: both close, a new one opens as id.
func (s *fakeSession) JoinSession(id string, _ Leg, with MediaSession, _ Leg) (MediaSession, error) {
	w, ok := with.(*fakeSession)
	if !ok || w == s {
		return nil, errors.New("not two fake sessions")
	}
	s.m.mu.Lock()
	if !s.m.open[s.id] || !s.m.open[w.id] {
		s.m.mu.Unlock()
		return nil, errors.New("joining a closed session")
	}
	delete(s.m.open, s.id)
	delete(s.m.open, w.id)
	s.gone, w.gone = true, true
	s.m.open[id] = true
	s.m.joined++
	s.m.mu.Unlock()
	return &fakeSession{m: s.m, id: id}, nil
}

func (s *fakeSession) LateOffer(from Leg) ([]byte, error) {
	s.m.mu.Lock()
	s.m.lateOffers++
	s.m.mu.Unlock()
	return s.Rewrite(from, []byte("v=0\r\ns=late offer of the PBX\r\n"))
}

func (s *fakeSession) State() media.SessionState {
	return media.SessionState{ID: s.id}
}

func (s *fakeSession) Close() error {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if s.gone {
		return nil
	}
	s.gone = true
	delete(s.m.open, s.id)
	return nil
}

type fakeCDR struct {
	mu   sync.Mutex
	recs []cdr.Record
}

func (f *fakeCDR) WriteCDR(r cdr.Record) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recs = append(f.recs, r)
	return nil
}

func (f *fakeCDR) wait(t *testing.T, n int) []cdr.Record {
	t.Helper()
	var out []cdr.Record
	eventually(t, fmt.Sprintf("%d CDRs", n), func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		out = append([]cdr.Record(nil), f.recs...)
		return len(out) >= n
	})
	return out
}

// --- the PBX under test ---

type env struct {
	t    *testing.T
	b    *B2BUA
	addr string // PBX "ip:port" (UDP)
	// tcpAddr is the PBX's TCP listener.
	tcpAddr string
	loc     *fakeLocator
	auth    *fakeAuth
	media   *fakeMedia
	cdrs    *fakeCDR

	ua   *sipgo.UserAgent
	conn net.PacketConn
	ln   net.Listener
}

// crash stops the box as a power cut would: its SIP sockets close and its
// calls are forgotten without a BYE or a CDR.
func (e *env) crash() {
	_ = e.ua.Close()
	_ = e.conn.Close()
	_ = e.ln.Close()
	e.b.Abandon()
}

type envOpt func(*Options)

func newEnv(t *testing.T, opts ...envOpt) *env {
	t.Helper()
	return newEnvAt(t, "127.0.0.1:0", opts...)
}

// newEnvAt starts a PBX whose UDP listener is udpAddr: a twin taking over
// listens where the box that died did.
func newEnvAt(t *testing.T, udpAddr string, opts ...envOpt) *env {
	t.Helper()
	logTo := newTestWriter(t)
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("twinpbx-test"), sipgo.WithUserAgentHostname("127.0.0.1"))
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
	conn, err := net.ListenPacket("udp", udpAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	port := conn.LocalAddr().(*net.UDPAddr).Port
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	tcpPort := ln.Addr().(*net.TCPAddr).Port
	e := &env{t: t, addr: conn.LocalAddr().String(), tcpAddr: ln.Addr().String(), loc: &fakeLocator{}, auth: &fakeAuth{}, media: &fakeMedia{}, cdrs: &fakeCDR{},
		ua: ua, conn: conn, ln: ln}
	o := Options{
		Client: cl, Locator: e.loc, Auth: e.auth, Media: e.media, CDR: e.cdrs,
		// Call waiting is off for 100 to 400, whose tests count on a
		// second call being busy; 500 has the default (on).
		Directory: fakeDirectory{
			"100": {Number: "100", Name: "Alice", CallWaiting: &off},
			"200": {Number: "200", Name: "Bob", CallWaiting: &off},
			"300": {Number: "300", Name: "Carol", CallWaiting: &off},
			"400": {Number: "400", Name: "Dave", CallWaiting: &off},
			"500": {Number: "500", Name: "Erin"},
		},
		RingTimeout: 3 * time.Second,
		Contact: func(tp string) sip.Uri {
			if tp == "tcp" {
				return sip.Uri{Scheme: "sip", User: "pbx", Host: "127.0.0.1", Port: tcpPort,
					UriParams: sip.HeaderParams{{K: "transport", V: "tcp"}}}
			}
			return sip.Uri{Scheme: "sip", User: "pbx", Host: "127.0.0.1", Port: port}
		},
		Logger: slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, f := range opts {
		f(&o)
	}
	e.b, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.b.Register(srv)
	go func() { _ = srv.ServeUDP(conn) }()
	go func() { _ = srv.ServeTCP(ln) }()
	waitServing(t, ua, e.addr)
	t.Cleanup(e.hangupAll)
	return e
}

func (e *env) hangupAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.b.HangupAll(ctx)
}

// testWriter passes the B2BUA's log to t until the test's cleanups are
// done; later lines (a handler sipgo started before the listeners closed)
// are dropped, since logging to a finished test is a data race.
type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

// newTestWriter registers its cleanup before any other of the env's, so
// that it runs last.
func newTestWriter(t *testing.T) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.done = true
	})
	return w
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// --- phones ---

// phone is a scripted SIP UA on its own socket. On an incoming INVITE it
// does what mode says: "answer" (180 then 200 with SDP), "ring" (180,
// then waits for CANCEL), or a final code such as "486".
type phone struct {
	t       *testing.T
	number  string
	addr    string
	contact sip.Uri
	pbx     string
	cl      *sipgo.Client
	tcp     bool

	mu   sync.Mutex
	mode string
	sdp  string
	got  []*sip.Request
	wire map[string]int // requests by method as they arrived, answered by handlers or not
	d    *Dialog        // the current call's dialog
	// hold, when set, delays the answer to a re-INVITE until it closes.
	hold chan struct{}
	// glare is how many re-INVITEs to refuse with 491, as if each had
	// crossed one of the phone's own.
	glare int
	// refused counts in-dialog requests refused for an old CSeq.
	refused int
}

func newPhone(t *testing.T, e *env, number, mode string) *phone {
	t.Helper()
	return startPhone(t, e, number, mode, false)
}

// newTCPPhone is a phone that talks SIP over TCP.
func newTCPPhone(t *testing.T, e *env, number, mode string) *phone {
	t.Helper()
	return startPhone(t, e, number, mode, true)
}

func startPhone(t *testing.T, e *env, number, mode string, tcp bool) *phone {
	t.Helper()
	p := &phone{}
	// Count requests as they arrive on the wire: sipgo answers some (a
	// CANCEL of a finished INVITE) inside its transaction layer, where no
	// handler sees them.
	wire := sip.WithTransportLayerReadFilter(func(_ sip.TransportReadProps, data []byte) ([]byte, error) {
		if m, _, ok := strings.Cut(string(data[:min(len(data), 16)]), " "); ok {
			p.mu.Lock()
			if p.wire == nil {
				p.wire = map[string]int{}
			}
			p.wire[m]++
			p.mu.Unlock()
		}
		return data, nil
	})
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("phone-"+number), sipgo.WithUserAgentHostname("127.0.0.1"),
		sipgo.WithUserAgentTransportLayerOptions(wire))
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
	p.t, p.number, p.pbx, p.cl, p.mode, p.tcp = t, number, e.addr, cl, mode, tcp
	p.sdp = fmt.Sprintf("v=0\r\no=%s 1 1 IN IP4 127.0.0.1\r\ns=-\r\n", number)
	var serve func() error
	if tcp {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ln.Close() })
		p.addr, p.pbx = ln.Addr().String(), e.tcpAddr
		p.contact = sip.Uri{Scheme: "sip", User: number, Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port,
			UriParams: sip.HeaderParams{{K: "transport", V: "tcp"}}}
		serve = func() error { return srv.ServeTCP(ln) }
	} else {
		conn, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		p.addr = conn.LocalAddr().String()
		p.contact = sip.Uri{Scheme: "sip", User: number, Host: "127.0.0.1", Port: conn.LocalAddr().(*net.UDPAddr).Port}
		serve = func() error { return srv.ServeUDP(conn) }
	}
	srv.OnInvite(p.serveInvite)
	srv.OnAck(p.record)
	srv.OnBye(p.okAndRecord)
	srv.OnInfo(p.okAndRecord)
	srv.OnNotify(p.okAndRecord)
	srv.OnUpdate(p.serveInvite)
	srv.OnPrack(p.okAndRecord)
	go func() { _ = serve() }()
	if !tcp {
		waitServing(t, ua, p.addr)
	}
	// Cleanups run last-first: end the calls while the phones still answer.
	t.Cleanup(e.hangupAll)
	return p
}

// waitServing waits until sipgo has registered the listener, so that
// requests can name it as their local address.
func waitServing(t *testing.T, ua *sipgo.UserAgent, addr string) {
	t.Helper()
	eventually(t, "listener "+addr, func() bool {
		c := ua.TransportLayer().Pool("udp").Get(addr)
		if c == nil {
			return false
		}
		_, _ = c.TryClose()
		return true
	})
}

func (p *phone) record(req *sip.Request, _ sip.ServerTransaction) {
	p.mu.Lock()
	p.got = append(p.got, req)
	p.mu.Unlock()
}

// onWire counts the requests of method that reached the phone's socket.
func (p *phone) onWire(method sip.RequestMethod) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.wire[string(method)]
}

func (p *phone) okAndRecord(req *sip.Request, tx sip.ServerTransaction) {
	p.record(req, tx)
	if !p.freshSeq(req) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 500, "CSeq Out of Order", nil))
		return
	}
	_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
}

// freshSeq checks, as RFC 3261 §12.2.2 wants, that an in-dialog request of
// the phone's current call carries a CSeq higher than any before it, and
// remembers it.
func (p *phone) freshSeq(req *sip.Request) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	cid, cs := req.CallID(), req.CSeq()
	if p.d == nil || cid == nil || cs == nil || cid.Value() != p.d.CallID {
		return true
	}
	if p.d.RemoteSeq != 0 && cs.SeqNo <= p.d.RemoteSeq {
		p.refused++
		return false
	}
	p.d.RemoteSeq = cs.SeqNo
	return true
}

func (p *phone) setSDP(sdp string) {
	p.mu.Lock()
	p.sdp = sdp
	p.mu.Unlock()
}

// count returns how many requests of method the phone received.
func (p *phone) count(method sip.RequestMethod) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, r := range p.got {
		if r.Method == method {
			n++
		}
	}
	return n
}

// await is wait for the phone's own handlers: it reports whether n
// requests of method arrived in time instead of failing the test.
func (p *phone) await(method sip.RequestMethod, n int) bool {
	deadline := time.Now().Add(waitFor)
	for p.count(method) < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// wait returns the n-th (1-based) request of method, waiting for it.
func (p *phone) wait(method sip.RequestMethod, n int) *sip.Request {
	p.t.Helper()
	var out *sip.Request
	eventually(p.t, fmt.Sprintf("%s #%d at %s", method, n, p.number), func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		k := 0
		for _, r := range p.got {
			if r.Method == method {
				k++
				if k == n {
					out = r
					return true
				}
			}
		}
		return false
	})
	return out
}

func (p *phone) serveInvite(req *sip.Request, tx sip.ServerTransaction) {
	p.record(req, tx)
	if to := req.To(); to != nil && to.Params.Has("tag") {
		// re-INVITE or UPDATE: answer with our SDP.
		p.mu.Lock()
		hold := p.hold
		p.mu.Unlock()
		if hold != nil {
			<-hold
		}
		if !p.freshSeq(req) {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 500, "CSeq Out of Order", nil))
			return
		}
		p.mu.Lock()
		body := []byte(p.sdp + "a=reanswer\r\n")
		glare := p.glare > 0
		if glare {
			p.glare--
		}
		p.mu.Unlock()
		if glare {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 491, "Request Pending", nil))
			return
		}
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		res.AppendHeader(&sip.ContactHeader{Address: p.contact})
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		res.SetBody(body)
		_ = tx.Respond(res)
		return
	}
	tx.OnCancel(func(r *sip.Request) { p.record(r, nil) })
	p.mu.Lock()
	mode := p.mode
	p.mu.Unlock()
	d, err := uasDialog(req, sip.GenerateTagN(8))
	if err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 400, "Bad Request", nil))
		return
	}
	mk := func(code int, reason string, body []byte) *sip.Response {
		res := sip.NewResponseFromRequest(req, code, reason, nil)
		res.To().Params.Add("tag", d.LocalTag)
		res.AppendHeader(&sip.ContactHeader{Address: p.contact})
		if body != nil {
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		}
		res.SetBody(body)
		return res
	}
	switch mode {
	case "answer":
		_ = tx.Respond(mk(180, "Ringing", nil))
		p.mu.Lock()
		p.d = &d
		body := []byte(p.sdp)
		p.mu.Unlock()
		_ = tx.Respond(mk(200, "OK", body))
	case "reliable":
		// Reliable 180, then 183 with early media (RFC 3262), each
		// sent twice as over UDP, each waiting for its PRACK; then 200.
		if !hasOption(req, "Supported", "100rel") {
			_ = tx.Respond(mk(421, "Extension Required", nil))
			return
		}
		p.mu.Lock()
		body := []byte(p.sdp)
		p.mu.Unlock()
		for i, r := range []*sip.Response{mk(180, "Ringing", nil), mk(183, "Session Progress", body)} {
			r.AppendHeader(sip.NewHeader("Require", "100rel"))
			r.AppendHeader(sip.NewHeader("RSeq", fmt.Sprint(i+1)))
			_ = tx.Respond(r)
			_ = tx.Respond(r)
			if !p.await(sip.PRACK, i+1) {
				_ = tx.Respond(mk(500, "No PRACK", nil))
				return
			}
		}
		p.mu.Lock()
		p.d = &d
		p.mu.Unlock()
		_ = tx.Respond(mk(200, "OK", body))
	case "ring":
		_ = tx.Respond(mk(180, "Ringing", nil))
		<-tx.Done()
	case "early":
		p.mu.Lock()
		body := []byte(p.sdp)
		p.mu.Unlock()
		_ = tx.Respond(mk(183, "Session Progress", body))
		<-tx.Done()
	case "noline":
		// An ISDN gateway whose line has no free B channel: 503 with
		// Q.850 cause 34, as pbx/isdngw answers.
		res := mk(503, "Service Unavailable", nil)
		res.AppendHeader(sip.NewHeader("Reason", "Q.850;cause=34"))
		_ = tx.Respond(res)
	default:
		// Ring first, as real phones do before they refuse: a fork with
		// a provisional answer is one the B2BUA could wrongly CANCEL.
		var code int
		_, _ = fmt.Sscanf(mode, "%d", &code)
		_ = tx.Respond(mk(180, "Ringing", nil))
		// A person takes a moment to press "reject"; without the pause
		// sipgo may fold the 180 into the final answer.
		time.Sleep(50 * time.Millisecond)
		_ = tx.Respond(mk(code, "Nope", nil))
	}
}

// outCall is a call the phone placed.
type outCall struct {
	p     *phone
	inv   *sip.Request
	tx    sip.ClientTransaction
	d     Dialog
	prov  chan *sip.Response
	final chan *sip.Response
	// ackBody is sent in the ACK of a 2xx: the answer of a late offer.
	ackBody []byte
	// hdrs are added to the INVITE.
	hdrs []sip.Header
}

func (p *phone) via() sip.Uri { return p.contact }

func (p *phone) prepare(req *sip.Request) {
	if p.tcp {
		return // TCP reuses the connection to the PBX
	}
	req.Laddr = sip.Addr{IP: net.ParseIP("127.0.0.1"), Port: p.contact.Port}
}

// dial sends an INVITE to number through the PBX; body nil means p.sdp.
// An empty body is a late offer: p.sdp goes in the ACK as the answer.
func (p *phone) dial(number string, body []byte, hdrs ...sip.Header) *outCall {
	p.t.Helper()
	oc := &outCall{p: p, prov: make(chan *sip.Response, 16), final: make(chan *sip.Response, 1), hdrs: hdrs}
	if body == nil {
		body = []byte(p.sdp)
	} else if len(body) == 0 {
		oc.ackBody = []byte(p.sdp)
	}
	oc.d = Dialog{
		CallID:       uuid.NewString(),
		LocalTag:     sip.GenerateTagN(8),
		LocalURI:     "sip:" + p.number + "@127.0.0.1",
		LocalName:    "Phone " + p.number,
		RemoteURI:    "sip:" + number + "@127.0.0.1",
		RemoteTarget: "sip:" + number + "@" + p.pbx,
		Transport:    map[bool]string{false: "UDP", true: "TCP"}[p.tcp],
		Peer:         p.pbx,
	}
	oc.send(body, false)
	return oc
}

func (oc *outCall) send(body []byte, withAuth bool) {
	p := oc.p
	oc.d.LocalSeq++
	inv, err := oc.d.buildRequest(sip.INVITE, oc.d.LocalSeq, p.via())
	if err != nil {
		p.t.Fatal(err)
	}
	if withAuth {
		inv.AppendHeader(sip.NewHeader("Proxy-Authorization", `Digest username="`+p.number+`"`))
	}
	for _, h := range oc.hdrs {
		inv.AppendHeader(sip.HeaderClone(h))
	}
	if len(body) > 0 {
		inv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	inv.SetBody(body)
	p.prepare(inv)
	tx, err := p.cl.TransactionRequest(context.Background(), inv, sipdo.Unchanged)
	if err != nil {
		p.t.Fatal(err)
	}
	oc.inv, oc.tx = inv, tx
	go func() {
		for {
			select {
			case res := <-tx.Responses():
				if res.IsProvisional() {
					oc.prov <- res
					continue
				}
				if res.StatusCode == 407 && !withAuth {
					oc.send(body, true)
					return
				}
				if res.IsSuccess() {
					oc.d.confirm(res)
					ack, err := oc.d.ack(res.CSeq().SeqNo, p.via(), oc.ackBody)
					if err == nil {
						p.prepare(ack)
						_ = p.cl.WriteRequest(ack, sipdo.Unchanged)
					}
					p.mu.Lock()
					d := oc.d
					p.d = &d
					p.mu.Unlock()
				}
				oc.final <- res
				return
			case <-tx.Done():
				close(oc.final)
				return
			}
		}
	}()
}

// result waits for the final response.
func (oc *outCall) result() *sip.Response {
	oc.p.t.Helper()
	select {
	case res, ok := <-oc.final:
		if !ok {
			oc.p.t.Fatalf("phone %s: INVITE transaction ended without a final response", oc.p.number)
		}
		return res
	case <-time.After(waitFor):
		oc.p.t.Fatalf("phone %s: no final response", oc.p.number)
	}
	return nil
}

// waitProvisional waits for a provisional response with the given code.
func (oc *outCall) waitProvisional(code int) *sip.Response {
	oc.p.t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case res := <-oc.prov:
			if res.StatusCode == code {
				return res
			}
		case <-deadline:
			oc.p.t.Fatalf("phone %s: no %d", oc.p.number, code)
			return nil
		}
	}
}

// cancel sends CANCEL for the pending INVITE.
func (oc *outCall) cancel() *sip.Response {
	oc.p.t.Helper()
	req := cancelFor(oc.inv)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	res, err := oc.p.cl.Do(ctx, req, sipdo.Unchanged)
	if err != nil {
		oc.p.t.Fatalf("CANCEL: %v", err)
	}
	return res
}

// request sends an in-dialog request of the current call and returns the
// final response (ACKing a 2xx to INVITE).
func (p *phone) request(method sip.RequestMethod, body []byte, hdrs ...sip.Header) *sip.Response {
	p.t.Helper()
	p.mu.Lock()
	d := p.d
	p.mu.Unlock()
	if d == nil {
		p.t.Fatalf("phone %s has no call", p.number)
	}
	return p.requestOn(d, method, body, hdrs...)
}

// call returns a copy of the phone's current dialog, for requestOn once
// the phone has placed another call.
func (p *phone) call() *Dialog {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.d == nil {
		p.t.Fatalf("phone %s has no call", p.number)
	}
	d := *p.d
	return &d
}

// requestOn is request on dialog d, which may be another than the
// current call's.
func (p *phone) requestOn(dlg *Dialog, method sip.RequestMethod, body []byte, hdrs ...sip.Header) *sip.Response {
	p.t.Helper()
	p.mu.Lock()
	req, err := dlg.newRequest(method, p.via())
	d := *dlg
	p.mu.Unlock()
	if err != nil {
		p.t.Fatal(err)
	}
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	if len(body) > 0 && req.GetHeader("Content-Type") == nil {
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	req.SetBody(body)
	p.prepare(req)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	tx, err := p.cl.TransactionRequest(ctx, req, sipdo.Unchanged)
	if err != nil {
		p.t.Fatal(err)
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			if method == sip.INVITE && res.IsSuccess() {
				ack, err := d.ack(req.CSeq().SeqNo, p.via(), nil)
				if err == nil {
					p.prepare(ack)
					_ = p.cl.WriteRequest(ack, sipdo.Unchanged)
				}
			}
			return res
		case <-tx.Done():
			p.t.Fatalf("phone %s: %s failed: %v", p.number, method, tx.Err())
		case <-ctx.Done():
			p.t.Fatalf("phone %s: %s timed out", p.number, method)
		}
	}
}

// notifies waits for the NOTIFY that ends a transfer's subscription and
// returns every NOTIFY of the transfer in order: the first must be
// "100 Trying" and those between it and the last "180 Ringing".
func (p *phone) notifies(t *testing.T) []*sip.Request {
	t.Helper()
	var out []*sip.Request
	eventually(t, "the final NOTIFY at "+p.number, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		out = out[:0]
		for _, r := range p.got {
			if r.Method != sip.NOTIFY {
				continue
			}
			out = append(out, r)
			if h := r.GetHeader("Subscription-State"); h != nil && strings.HasPrefix(h.Value(), "terminated") {
				return true
			}
		}
		return false
	})
	for i, n := range out {
		want := "SIP/2.0 180 Ringing"
		switch {
		case i == len(out)-1:
			continue
		case i == 0:
			want = "SIP/2.0 100 Trying"
		}
		if !strings.Contains(string(n.Body()), want) {
			t.Errorf("NOTIFY %d of %d: %q, want %q", i+1, len(out), n.Body(), want)
		}
	}
	return out
}
