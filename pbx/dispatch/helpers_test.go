package dispatch

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/internal/waitfor"
)

// fakeBackend is a PBX stand-in on a loopback UDP socket: it answers
// INVITE with 100 and 200 (or 180 only when ringOnly), and every other
// request but ACK with 200, unless silent (a dead box) or dropInvites.
type fakeBackend struct {
	conn        *net.UDPConn
	addr        netip.AddrPort
	silent      atomic.Bool
	dropInvites atomic.Bool
	ringOnly    atomic.Bool
	// loseInvites is how many of the next INVITEs it gets are lost on
	// the way (not recorded, not answered).
	loseInvites atomic.Int32
	// loseOthers is the same for a phone's other requests (not ACK).
	loseOthers atomic.Int32
	// finalStatus, when set, is its final answer to an INVITE instead of
	// 200 (after 180 when ringOnly).
	finalStatus atomic.Int32
	// contactHost, when set, is the host of its Contact instead of its
	// address: a name only the dispatcher's Route can resolve.
	contactHost string

	// dropOthers leaves a phone's requests other than INVITE unanswered;
	// otherStatus, when set, is its final answer to them.
	dropOthers  atomic.Bool
	otherStatus atomic.Int32
	// options counts the OPTIONS it got.
	options atomic.Int32
	// streams are the connections of a backend over TCP or TLS
	// (stream_backend_test.go); conn is nil then.
	streams *fakeStreams

	mu  sync.Mutex
	got []*sip.Request // every request but the probes, in order
	at  []time.Time
	// stamps are the kernel's receive stamps of requests over UDP by
	// "METHOD Call-ID" (the last of each), when stampReceives was called.
	stamps    map[string]time.Time
	responses map[string]int // last status by Call-ID
}

func newFakeBackend(t *testing.T, contactHost ...string) *fakeBackend {
	t.Helper()
	return newFakeBackendAt(t, netip.MustParseAddrPort("127.0.0.1:0"), contactHost...)
}

// newFakeBackendAt is newFakeBackend on the address at.
func newFakeBackendAt(t *testing.T, at netip.AddrPort, contactHost ...string) *fakeBackend {
	t.Helper()
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(at))
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBackend{conn: conn, addr: conn.LocalAddr().(*net.UDPAddr).AddrPort(), responses: map[string]int{},
		stamps: map[string]time.Time{}}
	if len(contactHost) > 0 {
		b.contactHost = contactHost[0]
	}
	done := make(chan struct{})
	t.Cleanup(func() { _ = conn.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, _, at, err := readStamped(conn, buf)
			if err != nil {
				return
			}
			m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
			if err != nil {
				continue
			}
			switch m := m.(type) {
			case *sip.Request:
				if !at.IsZero() {
					b.mu.Lock()
					b.stamps[string(m.Method)+" "+m.CallID().Value()] = at
					b.mu.Unlock()
				}
				b.serve(m)
			case *sip.Response:
				b.mu.Lock()
				b.responses[m.CallID().Value()] = m.StatusCode
				b.mu.Unlock()
			}
		}
	}()
	return b
}

func (b *fakeBackend) serve(req *sip.Request) {
	b.serveOn(req, func(raw []byte, to netip.AddrPort) { _, _ = b.conn.WriteToUDPAddrPort(raw, to) })
}

// serveOn answers req, writing each answer with write (to the address
// its Via names).
func (b *fakeBackend) serveOn(req *sip.Request, write func(raw []byte, to netip.AddrPort)) {
	if req.Method == sip.OPTIONS {
		b.options.Add(1)
	}
	if req.IsInvite() && b.loseInvites.Add(-1) >= 0 {
		return
	}
	if !req.IsInvite() && !req.IsAck() && !strings.HasPrefix(req.CallID().Value(), "dp-") && b.loseOthers.Add(-1) >= 0 {
		return
	}
	if req.Method != sip.OPTIONS || !strings.HasPrefix(req.CallID().Value(), "dp-") {
		b.mu.Lock()
		b.got = append(b.got, req)
		b.at = append(b.at, time.Now())
		b.mu.Unlock()
	}
	if b.silent.Load() || req.IsAck() || req.IsInvite() && b.dropInvites.Load() {
		return
	}
	answer := func(code int, reason string) {
		res := sip.NewResponseFromRequest(req, code, reason, nil)
		res.AppendHeader(sip.NewHeader("Server", "fake-backend"))
		if code >= 300 && req.IsInvite() {
			res.To().Params.Add("tag", "be"+b.addr.String())
		}
		if code == 200 && req.IsInvite() {
			res.To().Params.Add("tag", "be"+b.addr.String())
			ct := sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: int(b.addr.Port())}
			if b.contactHost != "" {
				ct = sip.Uri{Scheme: "sip", User: "200", Host: b.contactHost}
			}
			res.AppendHeader(&sip.ContactHeader{Address: ct})
		}
		if code == 200 && req.Method == sip.REGISTER {
			// A registrar lists the bindings with their expiry; an
			// Expires of 0 removes them.
			for _, h := range req.GetHeaders("Contact") {
				if e := req.GetHeader("Expires"); e != nil && e.Value() == "0" {
					break
				}
				if ct, ok := h.(*sip.ContactHeader); ok {
					ct = ct.Clone()
					ct.Params.Add("expires", "300")
					res.AppendHeader(ct)
				}
			}
		}
		to, err := viaAddr(res.Via())
		if err != nil {
			return
		}
		write([]byte(res.String()), to)
	}
	if !req.IsInvite() && !strings.HasPrefix(req.CallID().Value(), "dp-") {
		// A phone's request other than INVITE (not a probe).
		if b.dropOthers.Load() {
			return
		}
		if st := b.otherStatus.Load(); st != 0 {
			answer(int(st), "Refused")
			return
		}
	}
	if req.IsInvite() {
		answer(100, "Trying")
		fs := int(b.finalStatus.Load())
		if b.ringOnly.Load() {
			answer(180, "Ringing")
			if fs == 0 {
				return
			}
		}
		if fs != 0 {
			answer(fs, "Failed")
			return
		}
	}
	answer(200, "OK")
}

// stamp is the kernel's receive stamp of the last request "METHOD
// Call-ID" (zero: none, or not stamped).
func (b *fakeBackend) stamp(key string) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stamps[key]
}

// answered is the last status the backend got for callID (0: none).
func (b *fakeBackend) answered(callID string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.responses[callID]
}

// sendTo sends raw from the backend's socket (over TCP or TLS: over the
// connection that came last, whatever to says).
func (b *fakeBackend) sendTo(to netip.AddrPort, raw string) error {
	if b.streams != nil {
		return b.streams.write([]byte(raw))
	}
	_, err := b.conn.WriteToUDPAddrPort([]byte(raw), to)
	return err
}

// requests returns the Call-IDs and methods the backend got since t0.
func (b *fakeBackend) requests(since time.Time) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for i, r := range b.got {
		if !b.at[i].Before(since) {
			out = append(out, string(r.Method)+" "+r.CallID().Value())
		}
	}
	return out
}

// last returns the last request with this method and Call-ID, or nil.
func (b *fakeBackend) last(method sip.RequestMethod, callID string) *sip.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.got) - 1; i >= 0; i-- {
		if r := b.got[i]; r.Method == method && r.CallID().Value() == callID {
			return r
		}
	}
	return nil
}

// phoneWait is how long the phone waits for a message: generous, for a
// loaded machine and for calls that wait out a backend's tx_timeout.
const phoneWait = 20 * time.Second

// phone is the caller's side: raw requests out, responses in.
type phone struct {
	t    *testing.T
	conn *net.UDPConn
	addr netip.AddrPort
}

func newPhone(t *testing.T) *phone {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &phone{t: t, conn: conn, addr: conn.LocalAddr().(*net.UDPAddr).AddrPort()}
}

func (p *phone) send(to netip.AddrPort, raw string) {
	p.t.Helper()
	if _, err := p.conn.WriteToUDPAddrPort([]byte(raw), to); err != nil {
		p.t.Fatal(err)
	}
}

// final waits for the final response with this Call-ID and CSeq method.
func (p *phone) final(callID string, method sip.RequestMethod) *sip.Response {
	p.t.Helper()
	buf := make([]byte, 65535)
	deadline := time.Now().Add(phoneWait)
	for {
		_ = p.conn.SetReadDeadline(deadline)
		n, _, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			p.t.Fatalf("waiting for the final response to %s %s: %v", method, callID, err)
		}
		m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
		if err != nil {
			p.t.Fatalf("unparseable response: %v\n%s", err, buf[:n])
		}
		res, ok := m.(*sip.Response)
		if ok && res.StatusCode >= 200 && res.CallID().Value() == callID && res.CSeq().MethodName == method {
			return res
		}
	}
}

// nextRequest waits for a request to the phone and returns it with the
// address it came from.
func (p *phone) nextRequest() *sip.Request {
	p.t.Helper()
	buf := make([]byte, 65535)
	deadline := time.Now().Add(phoneWait)
	for {
		_ = p.conn.SetReadDeadline(deadline)
		n, _, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			p.t.Fatalf("waiting for a request: %v", err)
		}
		m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
		if err != nil {
			p.t.Fatalf("unparseable message: %v\n%s", err, buf[:n])
		}
		if req, ok := m.(*sip.Request); ok {
			return req
		}
	}
}

// response waits for a response with this Call-ID and status (0: any).
func (p *phone) response(callID string, status int) *sip.Response {
	p.t.Helper()
	buf := make([]byte, 65535)
	deadline := time.Now().Add(phoneWait)
	for {
		_ = p.conn.SetReadDeadline(deadline)
		n, _, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			p.t.Fatalf("waiting for %d to %s: %v", status, callID, err)
		}
		m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
		if err != nil {
			continue
		}
		if res, ok := m.(*sip.Response); ok && (status == 0 || res.StatusCode == status) && res.CallID().Value() == callID {
			return res
		}
	}
}

// until returns the responses with this Call-ID up to and including the
// first with this status.
func (p *phone) until(callID string, status int) []*sip.Response {
	p.t.Helper()
	var out []*sip.Response
	for {
		res := p.response(callID, 0)
		out = append(out, res)
		if res.StatusCode == status {
			return out
		}
	}
}

// drain returns the responses that arrive until none has for wait.
func (p *phone) drain(wait time.Duration) []*sip.Response {
	p.t.Helper()
	var out []*sip.Response
	buf := make([]byte, 65535)
	for {
		_ = p.conn.SetReadDeadline(time.Now().Add(wait))
		n, _, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return out
		}
		if m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...)); err == nil {
			if res, ok := m.(*sip.Response); ok {
				out = append(out, res)
			}
		}
	}
}

// call is one dialog as the phone sees it.
type call struct {
	id     string
	seq    int
	toTag  string
	route  []string // Record-Route of the 200, as the Route set
	remote string   // Contact of the 200
}

// request builds a request of the phone; an initial one when c.toTag is
// empty.
func (p *phone) request(d netip.AddrPort, c *call, method sip.RequestMethod, branch string, extra ...string) string {
	c.seq++
	if method == sip.ACK || method == sip.CANCEL {
		c.seq--
	}
	ruri := "sip:200@" + d.String()
	to := "<sip:200@" + d.String() + ">"
	var b strings.Builder
	if c.toTag != "" {
		ruri = c.remote
		to += ";tag=" + c.toTag
	}
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", method, ruri)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\n", p.addr, branch)
	if c.toTag != "" {
		for _, r := range c.route {
			fmt.Fprintf(&b, "Route: %s\r\n", r)
		}
	}
	fmt.Fprintf(&b, "From: <sip:100@example.com>;tag=ph%s\r\nTo: %s\r\n", c.id, to)
	fmt.Fprintf(&b, "Call-ID: %s\r\nCSeq: %d %s\r\n", c.id, c.seq, method)
	fmt.Fprintf(&b, "Contact: <sip:100@%s>\r\n", p.addr)
	for _, e := range extra {
		b.WriteString(e + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

// establish sends an INVITE through d, expects 200 and sends the ACK.
func (p *phone) establish(d netip.AddrPort, id string) *call {
	p.t.Helper()
	c := &call{id: id}
	p.send(d, p.request(d, c, sip.INVITE, "inv"+id))
	res := p.final(id, sip.INVITE)
	if res.StatusCode != 200 {
		p.t.Fatalf("INVITE %s: %d %s", id, res.StatusCode, res.Reason)
	}
	c.toTag, _ = res.To().Params.Get("tag")
	for _, h := range res.GetHeaders("Record-Route") {
		c.route = append(c.route, h.Value())
	}
	if ct := res.Contact(); ct != nil {
		c.remote = ct.Address.String()
	}
	p.send(d, p.request(d, c, sip.ACK, "ack"+id))
	return c
}

// startDispatcher runs a dispatcher on loopback until the test ends.
func startDispatcher(t *testing.T, cfg Config, backends ...*fakeBackend) (*Dispatcher, netip.AddrPort) {
	t.Helper()
	d, addrs := startDispatcherAll(t, cfg, backends...)
	return d, netip.MustParseAddrPort(addrs[0])
}

// startDispatcherAll is startDispatcher that returns every listener's
// address as Run's ready gets them.
func startDispatcherAll(t *testing.T, cfg Config, backends ...*fakeBackend) (*Dispatcher, []string) {
	t.Helper()
	for _, b := range backends {
		cfg.Backends = append(cfg.Backends, Backend{Addr: b.addr, Weight: 1})
	}
	if len(cfg.Listen) == 0 {
		cfg.Listen = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d, runDispatcher(t, d)
}

// runDispatcher runs d until the test ends and returns its listeners'
// addresses as Run's ready gets them.
func runDispatcher(t *testing.T, d *Dispatcher) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan []string, 1)
	done := make(chan error, 1)
	go func() {
		done <- d.Run(ctx, func(addrs []string) { ready <- addrs })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dispatcher: %v", err)
		}
	})
	select {
	case a := <-ready:
		return a
	case err := <-done:
		t.Fatalf("dispatcher did not start: %v", err)
	}
	return nil
}

// waitFor polls cond until it holds or 10 s have passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitfor.Cond(t, 10*time.Second, what, cond)
}

func backendUp(d *Dispatcher, i int) func() bool {
	return func() bool { return d.Status().Backends[i].Up }
}

func backendDown(d *Dispatcher, i int) func() bool {
	return func() bool { return !d.Status().Backends[i].Up }
}
