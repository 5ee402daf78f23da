// Package isdngw is the PBX's ISDN trunk: a SIP user agent on a loopback
// port that turns calls on an ISDN span into SIP calls to the PBX and back.
// To the PBX it is a trunk of type isdn: no registration, trusted by its
// source address.
//
// A SETUP from the line becomes an INVITE to the PBX whose Request-URI
// user is the called number (MSN or DDI) and whose From user is the calling
// number (anonymous when presentation is restricted), offering PCMA and
// PCMU on an RTP port of the gateway. 180 and 200 become ALERTING and
// CONNECT. An INVITE from the PBX becomes a SETUP to the Request-URI user.
// BYE and CANCEL become DISCONNECT and back; failures are mapped between
// Q.850 causes and SIP responses after RFC 3398. The B channel's A-law
// travels as RTP, passed through as PCMA or converted to PCMU.
package isdngw

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"

	"github.com/twinpbx/twinpbx/hw/isdn"
	"github.com/twinpbx/twinpbx/hw/isdn/card"
	"github.com/twinpbx/twinpbx/hw/isdn/g711"
	"github.com/twinpbx/twinpbx/hw/isdn/line"
	"github.com/twinpbx/twinpbx/hw/isdn/q931"
	"github.com/twinpbx/twinpbx/pbx/sdp"
	"github.com/twinpbx/twinpbx/pbx/sipreason"
)

// Config sets up a gateway.
type Config struct {
	// Listen is the gateway's SIP address (UDP), such as 127.0.0.1:5070.
	// Its IP is also where the gateway's RTP ports are.
	Listen netip.AddrPort
	// PBX is where calls from the line are sent, and the only source whose
	// INVITEs the gateway accepts.
	PBX netip.AddrPort
	// Type is the span type; Span the card's span number.
	Type isdn.SpanType
	Span uint8
	// Overlap waits for more digits of the called number unless the SETUP
	// says the number is complete (DDI lines that send the number digit by
	// digit). A SETUP without any number is always waited on.
	Overlap bool
	// DialTimeout is T302, how long to wait for another digit; 0 is
	// Q.931's 15 s.
	DialTimeout time.Duration
	// OnLayer1, when set, is told every layer-1 state the card reports
	// (the PSTN line monitor). It runs in the line's goroutine: it must
	// not block.
	OnLayer1 func(card.L1)
	Log      *slog.Logger
}

// Gateway joins one ISDN span to the PBX.
type Gateway struct {
	cfg  Config
	log  *slog.Logger
	line *line.Line
	ua   *sipgo.UserAgent
	srv  *sipgo.Server
	cli  *sipgo.Client
	dcc  *sipgo.DialogClientCache
	dsc  *sipgo.DialogServerCache
	conn net.PacketConn

	// calls is owned by the line's goroutine.
	calls map[*q931.Call]*gwCall
	up    atomic.Bool // layer 1
	// For Status, updated by the line's goroutine.
	alarms   atomic.Uint32
	dataLink atomic.Bool
	active   atomic.Int32

	mu       sync.Mutex
	byCallID map[string]*gwCall // for requests inside a call's dialog
	// released is closed, and replaced, whenever the line releases a
	// call: an emergency call waiting for a B channel looks again.
	released chan struct{}
}

// gwCall is one call across the gateway.
type gwCall struct {
	g       *Gateway
	q       *q931.Call    // touched only in the line's goroutine
	inbound bool          // from the line
	channel atomic.Uint32 // B channel
	rtp     *net.UDPConn
	pt      atomic.Uint32 // payload type: 8 PCMA or 0 PCMU
	remote  atomic.Pointer[netip.AddrPort]
	seq     uint16
	ts      uint32
	ssrc    uint32
	out     []byte // sendRTP's packet buffer, owned by the line's goroutine

	// dialling: the line is still sending the called number (overlap
	// receiving); owned by the line's goroutine.
	dialling bool
	// answered is closed once media may flow.
	answered chan struct{}
	once     sync.Once
	// sipDone is closed once the SIP side has ended.
	sipDone chan struct{}
	endOnce sync.Once
	// sipq runs what the line asks of the SIP side, in order, off the
	// line's goroutine.
	sipq chan func()

	mu      sync.Mutex
	client  *sipgo.DialogClientSession
	server  *sipgo.DialogServerSession
	cancel  context.CancelFunc
	cleared bool // the line has cleared the call
	// byeCause is the Q.850 cause the PBX's BYE carried (0: none), and
	// cancelCause, for a call to the line, its CANCEL's: the line's call
	// is cleared with it.
	byeCause    uint8
	cancelCause *atomic.Uint32
}

// New prepares a gateway on span cfg.Span of c; Run starts it.
func New(c card.Card, cfg Config) (*Gateway, error) {
	if !cfg.Listen.IsValid() || !cfg.PBX.IsValid() {
		return nil, errors.New("configuring ISDN gateway: listen and PBX addresses are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	calls := q931.DefaultConfig(false, cfg.Type == isdn.PRI)
	if cfg.DialTimeout > 0 {
		calls.T302 = cfg.DialTimeout
	}
	l, err := line.New(line.Config{Card: c, Span: cfg.Span, Log: cfg.Log, Endpoint: isdn.Config{
		Type:  cfg.Type,
		Calls: &calls,
		Rand:  func() uint16 { var b [2]byte; _, _ = rand.Read(b[:]); return binary.BigEndian.Uint16(b[:]) },
	}})
	if err != nil {
		return nil, fmt.Errorf("configuring ISDN gateway: %w", err)
	}
	g := &Gateway{cfg: cfg, log: cfg.Log, line: l, calls: map[*q931.Call]*gwCall{}, byCallID: map[string]*gwCall{}}
	host := cfg.Listen.Addr().String()
	// sipgo logs through the gateway's logger, tagged as its own.
	sipLog := cfg.Log.With("part", "isdn-gateway-sip")
	if g.ua, err = sipgo.NewUA(sipgo.WithUserAgent("twinpbx-isdn"), sipgo.WithUserAgentHostname(host),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(sipLog))); err != nil {
		return nil, fmt.Errorf("configuring ISDN gateway: %w", err)
	}
	if g.srv, err = sipgo.NewServer(g.ua, sipgo.WithServerLogger(sipLog)); err != nil {
		return nil, fmt.Errorf("configuring ISDN gateway: %w", err)
	}
	if g.cli, err = sipgo.NewClient(g.ua, sipgo.WithClientHostname(host), sipgo.WithClientPort(int(cfg.Listen.Port())),
		sipgo.WithClientLogger(sipLog)); err != nil {
		return nil, fmt.Errorf("configuring ISDN gateway: %w", err)
	}
	contact := sip.ContactHeader{Address: sip.Uri{Host: host, Port: int(cfg.Listen.Port())}}
	g.dcc = sipgo.NewDialogClientCache(g.cli, contact)
	g.dsc = sipgo.NewDialogServerCache(g.cli, contact)
	g.srv.OnInvite(g.onInvite)
	g.srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { _ = g.dsc.ReadAck(req, tx) })
	g.srv.OnBye(g.onBye)
	g.srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	})
	return g, nil
}

// Run serves SIP and drives the span until ctx ends.
func (g *Gateway) Run(ctx context.Context) error {
	defer g.ua.Close()
	var lc net.ListenConfig
	conn, err := lc.ListenPacket(ctx, "udp", g.cfg.Listen.String())
	if err != nil {
		return fmt.Errorf("ISDN gateway: listening for SIP: %w", err)
	}
	g.conn = conn
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sipErr := make(chan error, 1)
	go func() { sipErr <- g.srv.ServeUDP(conn) }()
	// Calls from the line leave from this socket (see inviteOut): take
	// none before sipgo knows it.
	if err := g.waitListening(ctx, conn.LocalAddr().String()); err != nil {
		_ = conn.Close()
		<-sipErr
		return err
	}
	lineErr := make(chan error, 1)
	go func() { lineErr <- g.line.Run(ctx, (*handler)(g)) }()
	g.log.Info("ISDN gateway running", "sip", g.cfg.Listen, "pbx", g.cfg.PBX, "span", g.cfg.Span)
	var lineDone bool
	select {
	case <-ctx.Done():
	case err = <-sipErr:
		err = fmt.Errorf("ISDN gateway: serving SIP: %w", err)
	case err = <-lineErr:
		lineDone = true
	}
	cancel()
	_ = conn.Close()
	if !lineDone {
		<-lineErr
	}
	// The line is stopped: its calls are ours now. Their SIP sides are
	// dropped without a word (the PBX times them out); free their ports.
	for _, c := range g.calls {
		c.abandon()
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// waitListening waits until sipgo's transport layer has the listening
// socket in its pool.
func (g *Gateway) waitListening(ctx context.Context, addr string) error {
	for {
		if pool := g.cli.TransportLayer().Pool("udp"); pool != nil {
			if c := pool.Get(addr); c != nil {
				_, _ = c.TryClose() // Get took a reference
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ISDN gateway: waiting for the SIP socket: %w", ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

// LineUp reports whether the span's layer 1 is up, as the card last said.
func (g *Gateway) LineUp() bool { return g.up.Load() }

// Status is the gateway's state, for the status view.
type Status struct {
	// LineUp and Alarms are layer 1 as the card last reported it.
	LineUp bool
	Alarms card.Alarm
	// DataLink is set while the D channel's data link is established.
	DataLink bool
	// Calls counts the calls on the span.
	Calls int
}

// Status reports the gateway's state. Safe from any goroutine.
func (g *Gateway) Status() Status {
	return Status{LineUp: g.up.Load(), Alarms: card.Alarm(g.alarms.Load()), DataLink: g.dataLink.Load(), Calls: int(g.active.Load())}
}

// Line gives the span's line (for its Endpoint's state, in Do).
func (g *Gateway) Line() *line.Line { return g.line }

func (g *Gateway) newCall(q *q931.Call, inbound bool, channel uint8) (*gwCall, error) {
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(g.cfg.Listen.Addr(), 0)))
	if err != nil {
		return nil, fmt.Errorf("opening RTP port: %w", err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	c := &gwCall{g: g, q: q, inbound: inbound, rtp: conn, ssrc: binary.BigEndian.Uint32(b[:]),
		answered: make(chan struct{}), sipDone: make(chan struct{}), sipq: make(chan func(), 8)}
	c.channel.Store(uint32(channel))
	c.pt.Store(8)
	go c.runSIP()
	return c, nil
}

func (c *gwCall) runSIP() {
	for {
		select {
		case fn := <-c.sipq:
			fn()
		case <-c.sipDone:
			return
		}
	}
}

// toSIP queues fn for the call's SIP worker. Called in the line's
// goroutine, it never blocks: a call gets at most a ringing, an answer and
// an end.
func (c *gwCall) toSIP(fn func()) {
	select {
	case c.sipq <- fn:
	default:
		c.g.log.Warn("ISDN gateway: SIP queue of a call full, request dropped")
	}
}

// offer is the SDP of our side: PCMA and PCMU, or the one codec chosen.
func (c *gwCall) sdp(pts ...uint8) []byte {
	ap := netip.MustParseAddrPort(c.rtp.LocalAddr().String())
	var m, a strings.Builder
	for _, pt := range pts {
		name := "PCMA"
		if pt == 0 {
			name = "PCMU"
		}
		fmt.Fprintf(&m, " %d", pt)
		fmt.Fprintf(&a, "a=rtpmap:%d %s/8000\r\n", pt, name)
	}
	addr := ap.Addr().Unmap()
	ip := "IP4 " + addr.String()
	if !addr.Is4() {
		ip = "IP6 " + addr.String()
	}
	return []byte("v=0\r\no=twinpbx-isdn " + strconv.FormatUint(uint64(c.ssrc), 10) + " 1 IN " + ip + "\r\ns=-\r\nc=IN " + ip +
		"\r\nt=0 0\r\nm=audio " + strconv.Itoa(int(ap.Port())) + " RTP/AVP" + m.String() + "\r\n" + a.String() + "a=ptime:20\r\na=sendrecv\r\n")
}

// takeSDP reads the peer's description: where to send and which law.
func (c *gwCall) takeSDP(body []byte) error {
	streams, err := sdp.Parse(body)
	if err != nil {
		return err
	}
	for _, s := range streams {
		if s.Media != "audio" || !s.RTP().IsValid() {
			continue
		}
		for _, pt := range s.PayloadTypes {
			if pt == 8 || pt == 0 {
				c.pt.Store(uint32(pt))
				r := s.RTP()
				c.remote.Store(&r)
				return nil
			}
		}
	}
	return errors.New("no PCMA or PCMU audio stream in the session description")
}

// startMedia lets audio flow: RTP in goes to the B channel.
func (c *gwCall) startMedia() {
	c.once.Do(func() {
		close(c.answered)
		go c.readRTP()
	})
}

func (c *gwCall) readRTP() {
	buf := make([]byte, 1500)
	alaw := make([]byte, 1500)
	var p rtp.Packet
	for {
		n, from, err := c.rtp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if err := p.Unmarshal(buf[:n]); err != nil || len(p.Payload) == 0 {
			continue
		}
		// Symmetric RTP: answer where the audio comes from.
		if r := c.remote.Load(); r == nil || *r != from {
			c.remote.Store(&from)
		}
		var samples []byte
		switch p.PayloadType {
		case 8:
			samples = p.Payload
		case 0:
			samples = g711.ULawToALaw(alaw, p.Payload)
		default:
			continue // DTMF events and comfort noise have no place in the B channel
		}
		if err := c.g.line.SendAudio(uint8(c.channel.Load()), samples); err != nil {
			return
		}
	}
}

// sendRTP sends B-channel audio to the SIP side. Runs in the line's
// goroutine.
func (c *gwCall) sendRTP(samples []byte) {
	select {
	case <-c.answered:
	default:
		return
	}
	r := c.remote.Load()
	if r == nil || r.Addr().IsUnspecified() {
		return // not known yet, or on hold the old way (c=0.0.0.0)
	}
	pt := uint8(c.pt.Load())
	c.seq++
	h := rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: c.seq, Timestamp: c.ts, SSRC: c.ssrc}
	c.ts += uint32(len(samples))
	hl := h.MarshalSize()
	c.out = slices.Grow(c.out[:0], hl+len(samples))[:hl+len(samples)]
	if _, err := h.MarshalTo(c.out); err != nil {
		return
	}
	if pt == 0 {
		g711.ALawToULaw(c.out[hl:], samples)
	} else {
		copy(c.out[hl:], samples)
	}
	_, _ = c.rtp.WriteToUDPAddrPort(c.out, *r)
}

// endSIP ends the SIP side once: BYE after an answer, CANCEL or a failure
// response before it.
func (c *gwCall) endSIP(cause uint8) {
	c.endOnce.Do(func() {
		defer close(c.sipDone)
		c.mu.Lock()
		cl, sv, cancel := c.client, c.server, c.cancel
		c.mu.Unlock()
		ctx, stop := context.WithTimeout(context.Background(), 32*time.Second)
		defer stop()
		switch {
		case cl != nil && cl.LoadState() >= sip.DialogStateEstablished && cl.LoadState() != sip.DialogStateEnded:
			if err := cl.Bye(ctx); err != nil {
				c.g.log.Debug("ISDN gateway: BYE", "err", err)
			}
		case cancel != nil:
			cancel() // WaitAnswer sends CANCEL
		case sv != nil && sv.LoadState() >= sip.DialogStateEstablished && sv.LoadState() != sip.DialogStateEnded:
			if err := sv.Bye(ctx); err != nil {
				c.g.log.Debug("ISDN gateway: BYE", "err", err)
			}
		case sv != nil && sv.LoadState() < sip.DialogStateEstablished:
			st := SIPStatus(cause)
			_ = sv.Respond(st, phrase(st), nil, sip.NewHeader("Reason", fmt.Sprintf("Q.850;cause=%d", cause)))
		}
	})
}

func (c *gwCall) close() {
	_ = c.rtp.Close()
	c.g.mu.Lock()
	for id, x := range c.g.byCallID {
		if x == c {
			delete(c.g.byCallID, id)
		}
	}
	c.g.mu.Unlock()
}

// index makes the call findable by the Call-ID of its dialog.
func (g *Gateway) index(callID string, c *gwCall) {
	g.mu.Lock()
	g.byCallID[callID] = c
	g.mu.Unlock()
}

// reinvite answers an INVITE inside a call's dialog (hold, resume, a
// new media address): the gateway takes the new description and answers
// with its own, unchanged port. The ISDN side does not hear of it.
func (g *Gateway) reinvite(req *sip.Request, tx sip.ServerTransaction) {
	g.mu.Lock()
	c := g.byCallID[req.CallID().Value()]
	g.mu.Unlock()
	if c == nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
		return
	}
	if len(req.Body()) > 0 {
		if err := c.takeSDP(req.Body()); err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, "Not Acceptable Here", nil))
			return
		}
	}
	res := sip.NewSDPResponseFromRequest(req, c.sdp(uint8(c.pt.Load())))
	res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Host: g.cfg.Listen.Addr().String(), Port: int(g.cfg.Listen.Port())}})
	_ = tx.Respond(res)
}

// abandon drops a call that never reached the line: its RTP port and its
// SIP worker.
func (c *gwCall) abandon() {
	c.close()
	c.endOnce.Do(func() { close(c.sipDone) })
}

// hangup clears the line side of a call, from a SIP goroutine.
func (g *Gateway) hangup(c *gwCall, cause uint8) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := g.line.Do(ctx, func(now time.Time, ep *isdn.Endpoint) error {
		if c.q == nil || c.q.State == q931.Null {
			return nil
		}
		return ep.Calls().Hangup(now, c.q, cause)
	})
	if err != nil && !errors.Is(err, line.ErrStopped) {
		g.log.Warn("ISDN gateway: clearing call", "err", err)
	}
}

// watch clears the line side when the SIP dialog ends (BYE or CANCEL
// from the PBX).
func (g *Gateway) watch(c *gwCall, d *sipgo.Dialog) {
	<-d.Context().Done()
	select {
	case <-c.sipDone:
		return // we ended it
	default:
	}
	c.endOnce.Do(func() { close(c.sipDone) })
	cause := uint8(q931.CauseNormalClearing)
	c.mu.Lock()
	switch {
	case c.byeCause != 0:
		cause = c.byeCause
	case c.cancelCause != nil && c.cancelCause.Load() != 0:
		cause = uint8(c.cancelCause.Load())
	}
	c.mu.Unlock()
	g.hangup(c, cause)
}

// handler is the gateway as the line sees it.
type handler Gateway

func (h *handler) Layer1(now time.Time, l1 card.L1) {
	g := (*Gateway)(h)
	g.up.Store(l1.Up)
	g.alarms.Store(uint32(l1.Alarms))
	g.log.Info("ISDN gateway: layer 1", "up", l1.Up, "alarms", l1.Alarms.String())
	if g.cfg.OnLayer1 != nil {
		g.cfg.OnLayer1(l1)
	}
}

func (h *handler) Media(time.Time) {}

func (h *handler) Audio(now time.Time, ch uint8, samples []byte) {
	for _, c := range h.calls {
		if uint8(c.channel.Load()) == ch {
			c.sendRTP(samples)
			return
		}
	}
}

func (h *handler) Event(now time.Time, ev isdn.Event) {
	g := (*Gateway)(h)
	defer func() { g.active.Store(int32(len(g.calls))) }()
	if ev.Call == nil {
		switch ev.Link {
		case "up":
			g.dataLink.Store(true)
		case "down":
			g.dataLink.Store(false)
		}
		g.log.Debug("ISDN gateway: data link", "tei", ev.TEI, "change", ev.Link)
		return
	}
	q := ev.Call.Call
	if ev.Call.Kind == q931.EventIncoming {
		g.incoming(now, q)
		return
	}
	c := g.calls[q]
	if c == nil {
		return
	}
	switch ev.Call.Kind {
	case q931.EventInfo:
		if c.dialling && q.SendingComplete {
			g.callPBX(now, c)
		}
	case q931.EventDialEnd:
		if c.dialling {
			g.callPBX(now, c)
		}
	case q931.EventAlerting:
		c.mu.Lock()
		sv := c.server
		c.mu.Unlock()
		if sv != nil {
			c.toSIP(func() { _ = sv.Respond(sip.StatusRinging, "Ringing", nil) })
		}
	case q931.EventConnected:
		if q.Channel.Channel != 0 {
			c.channel.Store(uint32(q.Channel.Channel))
		}
		c.mu.Lock()
		sv := c.server
		c.mu.Unlock()
		if sv != nil {
			answer := c.sdp(uint8(c.pt.Load()))
			c.toSIP(func() {
				if err := sv.RespondSDP(answer); err != nil {
					g.log.Warn("ISDN gateway: answering the PBX", "err", err)
					go g.hangup(c, q931.CauseRecoveryOnTimerExpiry)
				}
			})
			c.startMedia()
		}
	case q931.EventDisconnected, q931.EventReleased:
		c.mu.Lock()
		c.cleared = true
		c.mu.Unlock()
		cause := ev.Call.Cause.Value
		c.toSIP(func() { c.endSIP(cause) })
		if ev.Call.Kind == q931.EventReleased {
			delete(g.calls, q)
			c.close()
			g.signalReleased()
			g.log.Info("ISDN gateway: call ended", "calling", q.Calling.Digits, "called", q.Called.Digits, "cause", cause)
		}
	}
}

// incoming takes a SETUP from the line and calls the PBX.
func (g *Gateway) incoming(now time.Time, q *q931.Call) {
	calls := g.line.Endpoint().Calls()
	ch := q.Channel.Channel
	if ch == 0 {
		if ch = line.FreeChannel(calls.Calls(), g.cfg.Type); ch == 0 {
			_ = calls.Hangup(now, q, q931.CauseNoChannel)
			return
		}
		_ = calls.SelectChannel(q, ch)
	}
	if q.Bearer.Capability == q931.UnrestrictedDig {
		_ = calls.Hangup(now, q, 65) // bearer capability not implemented
		return
	}
	c, err := g.newCall(q, true, ch)
	if err != nil {
		g.log.Error("ISDN gateway: incoming call", "err", err)
		_ = calls.Hangup(now, q, 47)
		return
	}
	g.calls[q] = c
	if !q.SendingComplete && (g.cfg.Overlap || q.Called.Digits == "") {
		// The number comes digit by digit: wait for it (EventInfo with
		// sending complete, or EventDialEnd when T302 runs out).
		if err := calls.SetupAck(now, q); err != nil {
			g.log.Warn("ISDN gateway: SETUP ACKNOWLEDGE", "err", err)
		}
		c.dialling = true
		return
	}
	g.callPBX(now, c)
}

// callPBX sends a call from the line, its number complete, to the PBX.
func (g *Gateway) callPBX(now time.Time, c *gwCall) {
	q := c.q
	c.dialling = false
	if err := g.line.Endpoint().Calls().Proceeding(now, q); err != nil {
		g.log.Warn("ISDN gateway: CALL PROCEEDING", "err", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	c.cancel = cancel
	c.mu.Unlock()
	ch := c.channel.Load()
	called, calling := q.Called.Digits, q.Calling.Digits
	restricted := q.Calling.Presentation == q931.PresentationRestricted
	g.log.Info("ISDN gateway: call from the line", "calling", calling, "called", called, "channel", ch, "restricted", restricted)
	go g.inviteOut(ctx, c, called, calling, restricted)
}

func (g *Gateway) inviteOut(ctx context.Context, c *gwCall, called, calling string, restricted bool) {
	c.mu.Lock()
	cancel := c.cancel
	c.mu.Unlock()
	defer cancel()
	to := sip.Uri{User: called, Host: g.cfg.PBX.Addr().String(), Port: int(g.cfg.PBX.Port())}
	from := sip.Uri{User: calling, Host: g.cfg.Listen.Addr().String(), Port: int(g.cfg.Listen.Port())}
	name := ""
	var hdrs []sip.Header
	if restricted || calling == "" {
		from = sip.Uri{User: "anonymous", Host: "anonymous.invalid"}
		name = "Anonymous"
		if restricted {
			hdrs = append(hdrs, sip.NewHeader("Privacy", "id"))
		}
	}
	fromH := &sip.FromHeader{DisplayName: name, Address: from, Params: sip.NewParams()}
	fromH.Params.Add("tag", sip.GenerateTagN(16))
	hdrs = append(hdrs, fromH, sip.NewHeader("Content-Type", "application/sdp"))
	req := sip.NewRequest(sip.INVITE, to)
	req.SetBody(c.sdp(8, 0))
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	// Leave from the listening socket: the PBX knows the trunk by its
	// address and port (sipgo would otherwise use a fresh socket).
	req.Laddr = sip.Addr{IP: net.IP(g.cfg.Listen.Addr().AsSlice()), Port: int(g.cfg.Listen.Port())}
	sess, err := g.dcc.WriteInvite(ctx, req)
	if err != nil {
		g.log.Warn("ISDN gateway: INVITE to the PBX", "err", err)
		g.hangup(c, q931.CauseTemporaryFailure)
		return
	}
	g.index(sess.InviteRequest.CallID().Value(), c)
	c.mu.Lock()
	c.client = sess
	cleared := c.cleared
	c.mu.Unlock()
	if cleared {
		c.cancel()
	}
	err = sess.WaitAnswer(ctx, sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
		if res.StatusCode == sip.StatusRinging || res.StatusCode == sip.StatusSessionInProgress {
			go g.alert(c)
		}
		return nil
	}})
	var de *sipgo.ErrDialogResponse
	switch {
	case errors.As(err, &de):
		g.hangup(c, failureCause(de.Res))
		return
	case err != nil:
		// Cancelled because the line cleared, or the transaction failed.
		if ctx.Err() == nil {
			g.hangup(c, q931.CauseRecoveryOnTimerExpiry)
		}
		return
	}
	c.mu.Lock()
	c.cancel = nil
	c.mu.Unlock()
	if err := c.takeSDP(sess.InviteResponse.Body()); err != nil {
		g.log.Warn("ISDN gateway: the PBX's answer", "err", err)
	}
	if err := sess.Ack(context.Background()); err != nil {
		g.log.Warn("ISDN gateway: ACK", "err", err)
	}
	go g.watch(c, &sess.Dialog)
	connected := false
	err = g.line.Do(context.Background(), func(now time.Time, ep *isdn.Endpoint) error {
		if c.q.State == q931.Null {
			return nil
		}
		connected = true
		return ep.Calls().Answer(now, c.q)
	})
	if err != nil || !connected {
		c.endSIP(q931.CauseNormalClearing)
		return
	}
	c.startMedia()
}

func (g *Gateway) alert(c *gwCall) {
	err := g.line.Do(context.Background(), func(now time.Time, ep *isdn.Endpoint) error {
		if c.q.State == q931.IncomingProceeding {
			return ep.Calls().Alert(now, c.q)
		}
		return nil
	})
	if err != nil {
		g.log.Debug("ISDN gateway: ALERTING", "err", err)
	}
}

// onInvite takes a call from the PBX to the line.
func (g *Gateway) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	src, err := netip.ParseAddrPort(req.Source())
	if err != nil || src.Addr().Unmap() != g.cfg.PBX.Addr().Unmap() {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusForbidden, "Forbidden", nil))
		return
	}
	if to := req.To(); to != nil {
		if tag, ok := to.Params.Get("tag"); ok && tag != "" {
			g.reinvite(req, tx)
			return
		}
	}
	// The CANCEL's cause is kept before the dialog ends on it (callbacks
	// run in the order they are set), so that watch finds it.
	cancelCause := new(atomic.Uint32)
	tx.OnCancel(func(r *sip.Request) { cancelCause.Store(uint32(reasonCause(r))) })
	dlg, err := g.dsc.ReadInvite(req, tx)
	if err != nil {
		g.log.Warn("ISDN gateway: reading INVITE", "err", err)
		return
	}
	defer dlg.Close()
	c, err := g.newCall(nil, false, 0)
	if err != nil {
		_ = dlg.Respond(sip.StatusServiceUnavailable, "Service Unavailable", nil)
		return
	}
	c.cancelCause = cancelCause
	if err := c.takeSDP(req.Body()); err != nil {
		c.abandon()
		g.log.Info("ISDN gateway: INVITE refused", "err", err)
		_ = dlg.Respond(sip.StatusNotAcceptableHere, "Not Acceptable Here", nil)
		return
	}
	c.server = dlg
	g.index(req.CallID().Value(), c)
	called := req.Recipient.User
	calling := req.From().Address.User
	restricted := calling == "anonymous" || req.GetHeader("Privacy") != nil && strings.Contains(req.GetHeader("Privacy").Value(), "id")
	if restricted && calling == "anonymous" {
		calling = ""
	}
	_ = dlg.Respond(sip.StatusTrying, "Trying", nil)
	// An emergency call that finds every B channel busy waits a moment
	// for one: the PBX clears an ordinary call to make room for it, and
	// the line releases that call's channel a little after its BYE.
	wait, stop := context.WithTimeout(dlg.Context(), emergencyWait)
	defer stop()
	emergency := isEmergency(req)
	setup := func() error {
		return g.line.Do(dlg.Context(), func(now time.Time, ep *isdn.Endpoint) error {
			tei, ok := ep.TEI()
			if !ok {
				return errors.New("no TEI assigned")
			}
			ch := line.FreeChannel(ep.Calls().Calls(), g.cfg.Type)
			if ch == 0 {
				return errNoChannel
			}
			pres := uint8(q931.PresentationAllowed)
			if restricted {
				pres = q931.PresentationRestricted
			}
			q, err := ep.Calls().Setup(now, int(tei), q931.SetupParams{
				Bearer:          q931.BearerCapability{Capability: q931.Speech, Layer1: q931.ALawG711},
				Channel:         q931.ChannelID{Channel: ch, Exclusive: g.cfg.Type == isdn.PRI},
				Calling:         q931.PartyNumber{Plan: q931.PlanISDN, Presentation: pres, Digits: calling},
				Called:          q931.PartyNumber{Plan: q931.PlanISDN, Digits: called},
				SendingComplete: true,
			})
			if err != nil {
				return err
			}
			c.q = q
			c.channel.Store(uint32(ch))
			g.calls[q] = c
			return nil
		})
	}
	var released <-chan struct{}
	if emergency {
		released = g.releasedChan()
	}
	err = setup()
	for emergency && errors.Is(err, errNoChannel) {
		select {
		case <-released:
		case <-wait.Done():
		}
		if wait.Err() != nil {
			break
		}
		released = g.releasedChan()
		err = setup()
	}
	if err != nil {
		c.abandon()
		cause := q931.CauseTemporaryFailure
		if errors.Is(err, errNoChannel) {
			cause = q931.CauseNoChannel
		}
		st := SIPStatus(uint8(cause))
		g.log.Warn("ISDN gateway: call to the line", "called", called, "err", err)
		_ = dlg.Respond(st, phrase(st), nil, sip.NewHeader("Reason", fmt.Sprintf("Q.850;cause=%d", cause)))
		return
	}
	g.log.Info("ISDN gateway: call to the line", "calling", calling, "called", called, "channel", c.channel.Load())
	g.watch(c, &dlg.Dialog)
}

var errNoChannel = errors.New("every B channel is busy")

// onBye ends a dialog either way; watch clears the line side, with the
// Q.850 cause of the BYE's Reason header if it has one (8, preemption,
// when the PBX makes room for an emergency call).
func (g *Gateway) onBye(req *sip.Request, tx sip.ServerTransaction) {
	if cause, cid := reasonCause(req), req.CallID(); cause != 0 && cid != nil {
		g.mu.Lock()
		c := g.byCallID[cid.Value()]
		g.mu.Unlock()
		if c != nil {
			c.mu.Lock()
			c.byeCause = cause
			c.mu.Unlock()
		}
	}
	if err := g.dcc.ReadBye(req, tx); err == nil {
		return
	}
	if err := g.dsc.ReadBye(req, tx); err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
	}
}

// phrase is the reason phrase of status; a code without one is answered
// as a server error would be.
func phrase(status int) string {
	if p := sipreason.Phrase(status); p != "" {
		return p
	}
	return "Server Internal Error"
}

// emergencyWait bounds how long an emergency call waits for a B channel
// to come free.
const emergencyWait = 5 * time.Second

// releasedChan is closed when the line next releases a call.
func (g *Gateway) releasedChan() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.released == nil {
		g.released = make(chan struct{})
	}
	return g.released
}

// signalReleased wakes the emergency calls waiting for a B channel.
func (g *Gateway) signalReleased() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.released != nil {
		close(g.released)
		g.released = nil
	}
}
