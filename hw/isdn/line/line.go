// Package line runs one ISDN span over a card: one goroutine owns the
// span's D-channel Endpoint, feeds it the frames and the clock, sends what it
// queues, and hands call events, B-channel audio and layer-1 state to a
// Handler in that same goroutine. The exchange emulator (network side) and
// the PBX's ISDN gateway (user side) are both Handlers.
package line

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twinpbx/twinpbx/hw/isdn"
	"github.com/twinpbx/twinpbx/hw/isdn/card"
	"github.com/twinpbx/twinpbx/hw/isdn/q931"
)

// FrameInterval is how often Handler.Media runs: one 20 ms audio packet
// (160 A-law samples) per B channel.
const FrameInterval = 20 * time.Millisecond

// Handler is told what happens on the span. Every method runs in the line's
// goroutine, which also owns the Endpoint: a handler may use the Endpoint
// (through its Calls) freely there, and must not block.
type Handler interface {
	// Event reports a call or data-link event.
	Event(now time.Time, ev isdn.Event)
	// Audio delivers A-law samples received on a B channel.
	Audio(now time.Time, channel uint8, samples []byte)
	// Layer1 reports the physical layer's state.
	Layer1(now time.Time, l1 card.L1)
	// Media runs every FrameInterval while the line runs: the time to send
	// generated audio.
	Media(now time.Time)
}

// Line is one span on a card.
type Line struct {
	card card.Card
	span uint8
	ep   *isdn.Endpoint
	net  bool
	log  *slog.Logger
	cmds chan func(time.Time)
	done chan struct{}
}

// Config says which span of which card, and how to run it.
type Config struct {
	Card card.Card
	// Span numbers the card's spans from 0.
	Span     uint8
	Endpoint isdn.Config
	Log      *slog.Logger
}

// New makes the span's Endpoint; Run brings the line up.
func New(cfg Config) (*Line, error) {
	if cfg.Card == nil {
		return nil, errors.New("configuring ISDN line: no card")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Endpoint.Log == nil {
		cfg.Endpoint.Log = cfg.Log
	}
	ep, err := isdn.New(cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("configuring ISDN line: %w", err)
	}
	return &Line{card: cfg.Card, span: cfg.Span, ep: ep, net: cfg.Endpoint.Network, log: cfg.Log,
		cmds: make(chan func(time.Time)), done: make(chan struct{})}, nil
}

// Endpoint is the span's D-channel endpoint; use it only in Handler methods
// or inside Do.
func (l *Line) Endpoint() *isdn.Endpoint { return l.ep }

// Card is the card the line runs on.
func (l *Line) Card() card.Card { return l.card }

// Span is the card's span number of this line.
func (l *Line) Span() uint8 { return l.span }

// ErrStopped is returned by Do after Run has ended.
var ErrStopped = errors.New("ISDN line stopped")

// Do runs fn in the line's goroutine and waits for it. What fn asks of the
// Endpoint is sent when it returns.
func (l *Line) Do(ctx context.Context, fn func(now time.Time, ep *isdn.Endpoint) error) error {
	errc := make(chan error, 1)
	select {
	case l.cmds <- func(now time.Time) { errc <- fn(now, l.ep) }:
	case <-l.done:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-errc
}

// SendAudio sends A-law samples on a B channel. Safe from any goroutine.
func (l *Line) SendAudio(channel uint8, samples []byte) error {
	return l.card.Send(card.Record{Kind: card.Audio, Span: l.span, Channel: channel, Data: samples})
}

// Run drives the line until ctx ends or the card fails. The user side
// starts the D channel (TEI request or SABME); the network side sends its
// span configuration and waits for the terminal.
func (l *Line) Run(ctx context.Context, h Handler) error {
	defer close(l.done)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recs := make(chan card.Record, 64)
	rerr := make(chan error, 1)
	go func() {
		for {
			r, err := l.card.Receive(ctx)
			if err != nil {
				rerr <- err
				return
			}
			if r.Span != l.span {
				continue
			}
			select {
			case recs <- r:
			case <-ctx.Done():
				rerr <- ctx.Err()
				return
			}
		}
	}()
	if err := l.card.Send(card.Record{Kind: card.Config, Span: l.span, Config: card.SpanConfig{Type: l.ep.Type(), Network: l.net}}); err != nil {
		return fmt.Errorf("configuring ISDN span %d: %w", l.span, err)
	}
	l.ep.Start(time.Now())
	// l1Up is the last layer-1 state the card reported; the first report
	// of "up" counts as coming up (Start's TEI requests may have gone
	// unanswered on a line that was down or switched to the twin).
	l1Up := false
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	media := time.NewTicker(FrameInterval)
	defer media.Stop()
	for {
		now := time.Now()
		if err := l.flush(now, h); err != nil {
			return err
		}
		if d, ok := l.ep.Deadline(); ok {
			timer.Reset(max(time.Until(d), 0))
		} else {
			timer.Reset(time.Hour)
		}
		select {
		case r := <-recs:
			now = time.Now()
			switch r.Kind {
			case card.DFrame:
				if err := l.ep.Receive(now, r.Data); err != nil {
					l.log.Debug("D-channel frame dropped", "span", l.span, "err", err)
				}
			case card.Audio:
				h.Audio(now, r.Channel, r.Data)
			case card.Layer1:
				if r.L1.Up && !l1Up {
					l.ep.LineUp(now)
				}
				l1Up = r.L1.Up
				h.Layer1(now, r.L1)
			case card.Config:
				l.log.Debug("card confirmed span configuration", "span", l.span, "config", r.String())
			}
		case fn := <-l.cmds:
			fn(time.Now())
		case <-timer.C:
			l.ep.Tick(time.Now())
		case <-media.C:
			h.Media(time.Now())
		case err := <-rerr:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("reading ISDN span %d: %w", l.span, err)
		}
	}
}

// flush sends queued frames and hands events to h until both are empty
// (a handler reacting to an event may queue more).
func (l *Line) flush(now time.Time, h Handler) error {
	for range 100 {
		frames := l.ep.Outgoing(now)
		for _, f := range frames {
			if err := l.card.Send(card.Record{Kind: card.DFrame, Span: l.span, Data: f}); err != nil {
				return fmt.Errorf("sending on ISDN span %d: %w", l.span, err)
			}
		}
		evs := l.ep.Events(now)
		for _, ev := range evs {
			h.Event(now, ev)
		}
		if len(frames) == 0 && len(evs) == 0 {
			return nil
		}
	}
	return nil
}

// FreeChannel returns a B channel that none of calls holds (1–2 on BRI;
// 1–15 and 17–31 on E1 PRI, timeslot 16 being the D channel), or 0.
func FreeChannel(calls []*q931.Call, typ isdn.SpanType) uint8 {
	used := map[uint8]bool{}
	for _, c := range calls {
		if c.State != q931.Null {
			used[c.Channel.Channel] = true
		}
	}
	last := uint8(2)
	if typ == isdn.PRI {
		last = 31
	}
	for ch := uint8(1); ch <= last; ch++ {
		if typ == isdn.PRI && ch == 16 {
			continue
		}
		if !used[ch] {
			return ch
		}
	}
	return 0
}
