// Package exchange is an emulated ISDN exchange: the network side of a BRI
// or E1 PRI span over a card, for the simulated board (so that `twinpbx
// run` on a laptop has a PSTN line), for tests and for demonstrations.
//
// It places calls to the box (Dial), answers, rings or refuses the calls the
// box places according to a dial plan (Config.Plan), plays dial, ring and
// talk tones into the B channels in A-law, and keeps what it heard on each
// call so a test can check the box's audio.
package exchange

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twinpbx/twinpbx/hw/isdn"
	"github.com/twinpbx/twinpbx/hw/isdn/card"
	"github.com/twinpbx/twinpbx/hw/isdn/line"
	"github.com/twinpbx/twinpbx/hw/isdn/q931"
)

// Reply is what the exchange does with a call the box places.
type Reply struct {
	// Reject clears the call at once with this Q.850 cause (17 user busy,
	// 1 unallocated number, ...); 0 accepts it.
	Reject uint8
	// Ring is how long the far end rings (ring tone in the B channel)
	// before it answers.
	Ring time.Duration
	// NoAnswer rings until the box gives up.
	NoAnswer bool
}

// Config sets up an exchange.
type Config struct {
	Type isdn.SpanType
	// Span is the card's span the exchange drives.
	Span uint8
	// Tone is the frequency the far end "says" into every answered call
	// (Hz); 0 is 1000 Hz.
	Tone float64
	// Plan decides the calls the box places, by called number; nil answers
	// every call after one second of ringing.
	Plan func(called string) Reply
	// MaxHeard bounds the audio kept per call (samples); 0 is one minute.
	MaxHeard int
	// DialTimeout is T302: how long the exchange waits for another digit
	// of a number the box dials digit by digit; 0 is Q.931's 15 s.
	DialTimeout time.Duration
	Log         *slog.Logger
}

// Exchange is the network side of one span.
type Exchange struct {
	cfg    Config
	line   *line.Line
	placed chan *Call

	// Owned by the line's goroutine.
	calls map[*q931.Call]*Call
	links map[uint8]bool

	mu    sync.Mutex
	ready chan struct{} // closed while a data link is up
	up    bool

	done chan struct{} // closed when Run returns
}

// Done is closed once Run has returned.
func (x *Exchange) Done() <-chan struct{} { return x.done }

// Status is how far a call got.
type Status int

// Call statuses, in the order a call passes them.
const (
	Setup Status = iota
	Proceeding
	Alerting
	Connected
	Released
)

var statusNames = [...]string{"setup", "proceeding", "alerting", "connected", "released"}

func (s Status) String() string {
	if s < 0 || int(s) >= len(statusNames) {
		return fmt.Sprintf("status(%d)", int(s))
	}
	return statusNames[s]
}

// Call is one call on the exchange, either way. Its methods are safe from
// any goroutine.
type Call struct {
	x *Exchange
	// FromBox is set on calls the box placed.
	FromBox bool
	// Calling and Called are the numbers of the call (for a call the box
	// dials digit by digit, Called is complete once the call is in
	// Placed).
	Calling, Called string
	// Restricted: the calling party asked for its number to be withheld.
	Restricted bool

	// Owned by the line's goroutine.
	q        *q931.Call
	pending  string // digits to send once the box acknowledges the SETUP
	tone     *Tone
	toneAt   int
	answerAt time.Time

	mu      sync.Mutex
	status  Status
	cause   uint8
	channel uint8
	heard   []byte
	changed chan struct{}
}

// New returns an exchange on span cfg.Span of c.
func New(c card.Card, cfg Config) (*Exchange, error) {
	if cfg.Tone == 0 {
		cfg.Tone = 1000
	}
	if cfg.MaxHeard == 0 {
		cfg.MaxHeard = 60 * SampleRate
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	calls := q931.DefaultConfig(true, cfg.Type == isdn.PRI)
	if cfg.DialTimeout > 0 {
		calls.T302 = cfg.DialTimeout
	}
	l, err := line.New(line.Config{Card: c, Span: cfg.Span, Log: cfg.Log,
		Endpoint: isdn.Config{Type: cfg.Type, Network: true, Calls: &calls}})
	if err != nil {
		return nil, fmt.Errorf("starting exchange: %w", err)
	}
	return &Exchange{cfg: cfg, line: l, placed: make(chan *Call, 16), calls: map[*q931.Call]*Call{},
		links: map[uint8]bool{}, ready: make(chan struct{}), done: make(chan struct{})}, nil
}

// Run drives the span until ctx ends or the card fails. It may be called
// once.
func (x *Exchange) Run(ctx context.Context) error {
	defer close(x.done)
	if err := x.SetLayer1(card.L1{Up: true}); err != nil {
		return err
	}
	return x.line.Run(ctx, (*handler)(x))
}

// SetLayer1 sends the box a layer-1 state, as a card reports the line:
// LOS when the cable is pulled, AIS or RAI for faults, Up when it is back.
func (x *Exchange) SetLayer1(l1 card.L1) error {
	if err := x.line.Card().Send(card.Record{Kind: card.Layer1, Span: x.cfg.Span, L1: l1}); err != nil {
		return fmt.Errorf("exchange: sending layer-1 state: %w", err)
	}
	return nil
}

// WaitReady waits until the box has a data link up.
func (x *Exchange) WaitReady(ctx context.Context) error {
	for {
		x.mu.Lock()
		up, ch := x.up, x.ready
		x.mu.Unlock()
		if up {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the box's data link: %w", ctx.Err())
		}
	}
}

// Placed delivers the calls the box places, as they arrive. Calls are
// handled by the plan whether or not anyone reads this; when nobody does,
// the oldest are dropped from it.
func (x *Exchange) Placed() <-chan *Call { return x.placed }

// DialParams are the numbers of a call to the box.
type DialParams struct {
	Calling string
	// Called is the box's number (MSN or DDI).
	Called string
	// Restricted withholds the calling number (presentation restricted).
	Restricted bool
	// Overlap sends the called number digit by digit: SETUP with its first
	// two digits and no sending complete, the rest in one INFORMATION once
	// the box acknowledges the SETUP.
	Overlap bool
}

// ErrNoLink is returned by Dial when no data link to the box is up.
var ErrNoLink = errors.New("exchange: no data link to the box")

// ErrNoChannel is returned by Dial when every B channel is busy.
var ErrNoChannel = errors.New("exchange: every B channel is busy")

// Dial places a call to the box on a free B channel; on BRI
// point-to-multipoint it is offered by broadcast to every terminal.
func (x *Exchange) Dial(ctx context.Context, p DialParams) (*Call, error) {
	var call *Call
	err := x.line.Do(ctx, func(now time.Time, ep *isdn.Endpoint) error {
		tei, ok := x.link()
		if !ok {
			return ErrNoLink
		}
		ch := line.FreeChannel(ep.Calls().Calls(), x.cfg.Type)
		if ch == 0 {
			return ErrNoChannel
		}
		pres := uint8(q931.PresentationAllowed)
		if p.Restricted {
			pres = q931.PresentationRestricted
		}
		first, rest := p.Called, ""
		if p.Overlap && len(first) > 2 {
			first, rest = p.Called[:2], p.Called[2:]
		}
		link := int(tei)
		if x.cfg.Type == isdn.BRIPointToMultipoint {
			link = q931.GroupLink // offered to every terminal of the bus
		}
		q, err := ep.Calls().Setup(now, link, q931.SetupParams{
			Bearer:          q931.BearerCapability{Capability: q931.Speech, Layer1: q931.ALawG711},
			Channel:         q931.ChannelID{Exclusive: true, Channel: ch},
			Calling:         q931.PartyNumber{Type: q931.TypeNational, Plan: q931.PlanISDN, Presentation: pres, Screening: q931.NetworkProvided, Digits: p.Calling},
			Called:          q931.PartyNumber{Type: q931.TypeUnknown, Plan: q931.PlanISDN, Digits: first},
			SendingComplete: !p.Overlap,
		})
		if err != nil {
			return err
		}
		call = x.newCall(q, false)
		call.pending = rest
		call.Calling, call.Called, call.Restricted = p.Calling, p.Called, p.Restricted
		call.channel = ch
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("placing a call to %s: %w", p.Called, err)
	}
	x.cfg.Log.Info("exchange: calling the box", "from", p.Calling, "to", p.Called, "channel", call.channel)
	return call, nil
}

// link returns the TEI of a data link that is up (the lowest).
func (x *Exchange) link() (uint8, bool) {
	best, ok := uint8(0), false
	for tei, up := range x.links {
		if up && (!ok || tei < best) {
			best, ok = tei, true
		}
	}
	return best, ok
}

func (x *Exchange) newCall(q *q931.Call, fromBox bool) *Call {
	c := &Call{x: x, q: q, FromBox: fromBox, changed: make(chan struct{})}
	x.calls[q] = c
	return c
}

// Status is how far the call got.
func (c *Call) Status() Status { c.mu.Lock(); defer c.mu.Unlock(); return c.status }

// Cause is the Q.850 cause the call was cleared with (0 while it lasts).
func (c *Call) Cause() uint8 { c.mu.Lock(); defer c.mu.Unlock(); return c.cause }

// Channel is the call's B channel.
func (c *Call) Channel() uint8 { c.mu.Lock(); defer c.mu.Unlock(); return c.channel }

// Heard returns a copy of the A-law audio the box sent on the call.
func (c *Call) Heard() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.heard...)
}

// Wait waits until the call has reached s. It fails when the call is
// released before (with its cause) or ctx ends.
func (c *Call) Wait(ctx context.Context, s Status) error {
	for {
		c.mu.Lock()
		st, cause, ch := c.status, c.cause, c.changed
		c.mu.Unlock()
		if st >= s && (st != Released || s == Released) {
			return nil
		}
		if st == Released {
			return fmt.Errorf("call to %s released with cause %d before it was %s", c.Called, cause, s)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for call to %s to be %s (it is %s): %w", c.Called, s, st, ctx.Err())
		}
	}
}

// Hangup clears the call with a Q.850 cause (16 normal clearing).
func (c *Call) Hangup(ctx context.Context, cause uint8) error {
	return c.x.line.Do(ctx, func(now time.Time, ep *isdn.Endpoint) error {
		if c.q.State == q931.Null {
			return nil
		}
		c.tone = nil
		return ep.Calls().Hangup(now, c.q, cause)
	})
}

func (c *Call) set(s Status, cause uint8) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.status == Released || (s <= c.status && s != Released) {
		return
	}
	c.status = s
	if cause != 0 {
		c.cause = cause
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Call) play(t *Tone) {
	if c.tone == nil || t == nil || *c.tone != *t {
		c.toneAt = 0
	}
	c.tone = t
}

// handler is the exchange as the line sees it; its methods run in the
// line's goroutine.
type handler Exchange

func (h *handler) Event(now time.Time, ev isdn.Event) {
	x := (*Exchange)(h)
	if ev.Call == nil {
		switch ev.Link {
		case "up":
			x.links[ev.TEI] = true
		case "down":
			delete(x.links, ev.TEI)
		}
		_, up := x.link()
		x.mu.Lock()
		if up && !x.up {
			close(x.ready)
		} else if !up && x.up {
			x.ready = make(chan struct{})
		}
		x.up = up
		x.mu.Unlock()
		x.cfg.Log.Debug("exchange: data link", "tei", ev.TEI, "change", ev.Link)
		return
	}
	q := ev.Call.Call
	cc := x.calls[q]
	if cc == nil && ev.Call.Kind != q931.EventIncoming {
		return
	}
	switch ev.Call.Kind {
	case q931.EventIncoming:
		x.incoming(now, q)
	case q931.EventInfo:
		if cc.FromBox && q.State == q931.OverlapSending {
			cc.Called += ev.Call.Digits
		}
	case q931.EventDialEnd:
		// T302: no more digits; the number is what came.
		if cc.FromBox && q.State == q931.OverlapSending {
			cc.tone = nil
			x.route(now, cc)
		}
	case q931.EventSetupAcked:
		if cc.pending != "" {
			if err := x.line.Endpoint().Calls().Info(now, q, cc.pending); err != nil {
				x.cfg.Log.Warn("exchange: INFORMATION", "err", err)
			}
			cc.pending = ""
		}
	case q931.EventProceeding:
		cc.set(Proceeding, 0)
	case q931.EventAlerting:
		cc.set(Alerting, 0)
	case q931.EventConnected:
		cc.set(Connected, 0)
		cc.play(&Tone{Freq: x.cfg.Tone})
	case q931.EventDisconnected:
		cc.tone = nil
	case q931.EventReleased:
		cc.tone = nil
		delete(x.calls, q)
		cc.set(Released, ev.Call.Cause.Value)
		x.cfg.Log.Info("exchange: call cleared", "from", cc.Calling, "to", cc.Called, "cause", ev.Call.Cause.Value, "reason", ev.Call.Reason)
	}
}

// incoming takes a call the box placed.
func (x *Exchange) incoming(now time.Time, q *q931.Call) {
	ep := x.line.Endpoint()
	c := x.newCall(q, true)
	c.Calling, c.Called = q.Calling.Digits, q.Called.Digits
	c.Restricted = q.Calling.Presentation == q931.PresentationRestricted
	ch := q.Channel.Channel
	taken := false
	for _, o := range ep.Calls().Calls() {
		if o != q && o.Channel.Channel == ch {
			taken = true
		}
	}
	if ch == 0 || taken {
		if q.Channel.Exclusive && ch != 0 {
			_ = ep.Calls().Hangup(now, q, q931.CauseChannelUnavailable)
			return
		}
		if ch = line.FreeChannel(ep.Calls().Calls(), x.cfg.Type); ch == 0 {
			_ = ep.Calls().Hangup(now, q, q931.CauseNoChannel)
			return
		}
		if err := ep.Calls().SelectChannel(q, ch); err != nil {
			x.cfg.Log.Warn("exchange: selecting channel", "err", err)
		}
	}
	c.mu.Lock()
	c.channel = ch
	c.mu.Unlock()
	x.cfg.Log.Info("exchange: the box calls", "from", c.Calling, "to", c.Called, "channel", ch)
	if c.Called == "" {
		// Overlap sending: dial tone until the digits come.
		if err := ep.Calls().SetupAck(now, q); err != nil {
			x.cfg.Log.Warn("exchange: SETUP ACKNOWLEDGE", "err", err)
		}
		c.play(&DialTone)
		return
	}
	x.route(now, c)
}

// route applies the plan to a call the box placed whose number is known,
// and tells Placed about it.
func (x *Exchange) route(now time.Time, c *Call) {
	select {
	case x.placed <- c:
	default:
		select {
		case <-x.placed:
		default:
		}
		x.placed <- c
	}
	calls := x.line.Endpoint().Calls()
	r := Reply{Ring: time.Second}
	if x.cfg.Plan != nil {
		r = x.cfg.Plan(c.Called)
	}
	if r.Reject != 0 {
		c.tone = nil
		if err := calls.Hangup(now, c.q, r.Reject); err != nil {
			x.cfg.Log.Warn("exchange: refusing call", "err", err)
		}
		return
	}
	if err := calls.Proceeding(now, c.q); err != nil {
		x.cfg.Log.Warn("exchange: CALL PROCEEDING", "err", err)
	}
	c.set(Proceeding, 0)
	if err := calls.Alert(now, c.q); err != nil {
		x.cfg.Log.Warn("exchange: ALERTING", "err", err)
	}
	c.set(Alerting, 0)
	c.play(&RingTone)
	if !r.NoAnswer {
		c.answerAt = now.Add(r.Ring)
	}
}

func (h *handler) Audio(now time.Time, channel uint8, samples []byte) {
	x := (*Exchange)(h)
	for _, c := range x.calls {
		c.mu.Lock()
		if c.channel == channel {
			keep := min(len(samples), x.cfg.MaxHeard-len(c.heard))
			c.heard = append(c.heard, samples[:max(keep, 0)]...)
		}
		c.mu.Unlock()
	}
}

func (h *handler) Layer1(now time.Time, l1 card.L1) {
	(*Exchange)(h).cfg.Log.Info("exchange: layer 1 from the box", "up", l1.Up, "alarms", l1.Alarms.String())
}

func (h *handler) Media(now time.Time) {
	x := (*Exchange)(h)
	for _, c := range x.calls {
		if !c.answerAt.IsZero() && !now.Before(c.answerAt) {
			c.answerAt = time.Time{}
			if err := x.line.Endpoint().Calls().Answer(now, c.q); err != nil {
				x.cfg.Log.Warn("exchange: answering", "err", err)
				continue
			}
			c.set(Connected, 0)
			c.play(&Tone{Freq: x.cfg.Tone})
		}
		if c.tone == nil {
			continue
		}
		buf := make([]byte, SampleRate*int(line.FrameInterval)/int(time.Second))
		c.tone.Fill(buf, c.toneAt)
		c.toneAt += len(buf)
		if err := x.line.SendAudio(c.Channel(), buf); err != nil {
			x.cfg.Log.Debug("exchange: sending audio", "err", err)
		}
	}
}
