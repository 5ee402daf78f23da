// Package isdn ties the D-channel layers together for one side of one ISDN
// span: frames in and out, Q.921 data links (one per TEI), TEI management
// on point-to-multipoint BRI, and Q.931 call control on top.
//
// An Endpoint does no I/O and keeps no goroutines: the caller feeds it
// received frames and the current time, sends what Outgoing returns, and
// calls Tick when Deadline is reached. A transport (the serial HDLC card,
// or an in-memory pair in tests) and a clock are all it needs.
package isdn

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/twinpbx/twinpbx/hw/isdn/lapd"
	"github.com/twinpbx/twinpbx/hw/isdn/q931"
)

// SpanType is the kind of line.
type SpanType int

// Span types, as board profiles name them (bri-ptp, bri-ptmp, pri-e1).
const (
	BRIPointToPoint SpanType = iota + 1
	BRIPointToMultipoint
	PRI
)

// ParseSpanType maps a board profile's span type to a SpanType.
func ParseSpanType(s string) (SpanType, error) {
	switch s {
	case "bri-ptp":
		return BRIPointToPoint, nil
	case "bri-ptmp":
		return BRIPointToMultipoint, nil
	case "pri-e1":
		return PRI, nil
	}
	return 0, fmt.Errorf("unknown ISDN span type %q (want bri-ptp, bri-ptmp or pri-e1)", s)
}

// Config sets up an Endpoint.
type Config struct {
	Type    SpanType
	Network bool
	// Link and Calls adjust the defaults (lapd.PRIConfig/BRIConfig and
	// q931.DefaultConfig) when set; Network, SAPI, TEI and PRI are always
	// taken from the span.
	Link  *lapd.Config
	Calls *q931.Config
	// Rand draws TEI management reference numbers (user side, BRI
	// point-to-multipoint). Required there.
	Rand func() uint16
	Log  *slog.Logger
}

// Event is something the layer above should know: a call event, or a data
// link or TEI change (Call is then nil and Link says what happened).
type Event struct {
	Call *q931.Event
	TEI  uint8
	Link string
}

// Endpoint is one side of one D channel. Not safe for concurrent use.
type Endpoint struct {
	cfg    Config
	log    *slog.Logger
	calls  *q931.Controller
	links  map[uint8]*lapd.Link
	teiU   *lapd.TEIUser
	teiN   *lapd.TEINetwork
	out    [][]byte
	events []Event
}

// New returns an endpoint. On a point-to-point span (BRI or PRI) TEI 0 is
// used; on point-to-multipoint the user side asks for a TEI with Start.
func New(cfg Config) (*Endpoint, error) {
	pri := cfg.Type == PRI
	if cfg.Type < BRIPointToPoint || cfg.Type > PRI {
		return nil, fmt.Errorf("configuring ISDN endpoint: unknown span type %d", cfg.Type)
	}
	cc := q931.DefaultConfig(cfg.Network, pri)
	if cfg.Calls != nil {
		cc = *cfg.Calls
	}
	cc.Network, cc.PRI = cfg.Network, pri
	calls, err := q931.NewController(cc)
	if err != nil {
		return nil, fmt.Errorf("configuring ISDN endpoint: %w", err)
	}
	e := &Endpoint{cfg: cfg, log: cfg.Log, calls: calls, links: map[uint8]*lapd.Link{}}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Type == BRIPointToMultipoint {
		if cfg.Network {
			e.teiN = lapd.NewTEINetwork()
		} else {
			if cfg.Rand == nil {
				return nil, fmt.Errorf("configuring ISDN endpoint: point-to-multipoint user side needs Rand")
			}
			e.teiU = lapd.NewTEIUser(cfg.Rand)
		}
		return e, nil
	}
	if _, err := e.link(0); err != nil {
		return nil, err
	}
	return e, nil
}

// link returns the data link for a TEI, creating it.
func (e *Endpoint) link(tei uint8) (*lapd.Link, error) {
	if l, ok := e.links[tei]; ok {
		return l, nil
	}
	var lc lapd.Config
	if e.cfg.Type == PRI {
		lc = lapd.PRIConfig(e.cfg.Network)
	} else {
		lc = lapd.BRIConfig(e.cfg.Network, tei)
	}
	if e.cfg.Link != nil {
		lc = *e.cfg.Link
	}
	lc.Network, lc.SAPI, lc.TEI = e.cfg.Network, lapd.SAPICallControl, tei
	l, err := lapd.NewLink(lc)
	if err != nil {
		return nil, fmt.Errorf("creating data link for TEI %d: %w", tei, err)
	}
	e.links[tei] = l
	return l, nil
}

// Calls returns the call controller: place, answer and clear calls on it.
// A call's Link is the TEI of its data link. What is requested goes out
// with the next Outgoing.
func (e *Endpoint) Calls() *q931.Controller { return e.calls }

// Type is the span type the endpoint runs.
func (e *Endpoint) Type() SpanType { return e.cfg.Type }

// Network is true on the network side.
func (e *Endpoint) Network() bool { return e.cfg.Network }

// Link returns the data link of a TEI, if there is one.
func (e *Endpoint) Link(tei uint8) (*lapd.Link, bool) { l, ok := e.links[tei]; return l, ok }

// TEI returns the user side's TEI: 0 on point-to-point spans, the assigned
// one on point-to-multipoint; ok is false while none is assigned.
func (e *Endpoint) TEI() (uint8, bool) {
	if e.teiU != nil {
		return e.teiU.TEI()
	}
	return 0, !e.cfg.Network
}

// Start brings the D channel up from the user side: it asks for a TEI on
// point-to-multipoint spans (the data link is established once one is
// assigned), or establishes the TEI 0 link. The network side waits.
func (e *Endpoint) Start(now time.Time) {
	if e.cfg.Network {
		return
	}
	if e.teiU != nil {
		e.teiU.Request(now)
	} else {
		e.links[0].Establish(now)
	}
	e.pump(now)
}

// LineUp is told when layer 1 has come up (again): the user side, if it
// holds no TEI on a point-to-multipoint span, asks for one afresh (the
// requests at Start may have gone unanswered while the line was
// elsewhere, e.g. with the twin on the other side of the PSTN relay, and
// the last of them may still be waiting for T202), and on a
// point-to-point span it establishes a released TEI 0 link. A link that
// is up is left alone.
func (e *Endpoint) LineUp(now time.Time) {
	if e.cfg.Network {
		return
	}
	if e.teiU != nil {
		e.teiU.Renew(now)
	} else if l := e.links[0]; l != nil && l.State() == lapd.Released {
		l.Establish(now)
	}
	e.pump(now)
}

// Receive processes one received frame (address, control, information; no
// flags or FCS). Malformed frames are dropped with an error.
func (e *Endpoint) Receive(now time.Time, frame []byte) error {
	f, err := lapd.Parse(frame)
	if err != nil {
		return fmt.Errorf("receiving D-channel frame: %w", err)
	}
	switch f.SAPI {
	case lapd.SAPITEIMgmt:
		switch {
		case e.teiU != nil:
			err = e.teiU.Receive(now, f)
		case e.teiN != nil:
			err = e.teiN.Receive(now, f)
		}
	case lapd.SAPICallControl:
		var l *lapd.Link
		if e.cfg.Type == BRIPointToMultipoint && f.TEI == lapd.TEIGroup {
			// Broadcast call offering (UI on the group TEI): the user side
			// answers on its own data link.
			if f.Kind == lapd.UI && !e.cfg.Network {
				if tei, ok := e.TEI(); ok {
					e.deliver(now, tei, f.Info)
				} else if e.teiU != nil {
					// A call is offered and we cannot answer it: ask
					// for a TEI, in time for the network's repeat
					// of the SETUP (T303).
					e.teiU.Request(now)
				}
			}
			break
		}
		if l, err = e.routeLink(f.TEI); err == nil && l != nil {
			l.Receive(now, f)
		}
	default:
		e.log.Debug("frame for an unsupported SAPI dropped", "sapi", f.SAPI)
	}
	e.pump(now)
	if err != nil {
		return fmt.Errorf("receiving D-channel frame: %w", err)
	}
	return nil
}

// routeLink finds the link for a frame's TEI; the network side makes one
// for a TEI it assigned (or any on point-to-point).
func (e *Endpoint) routeLink(tei uint8) (*lapd.Link, error) {
	if l, ok := e.links[tei]; ok {
		return l, nil
	}
	if e.cfg.Network && e.teiN != nil && tei >= 64 && tei < lapd.TEIGroup {
		return e.link(tei)
	}
	return nil, fmt.Errorf("frame for TEI %d, which has no data link", tei)
}

// Tick runs every timer that ran out by now.
func (e *Endpoint) Tick(now time.Time) {
	if e.teiU != nil {
		e.teiU.Tick(now)
	}
	for _, l := range e.links {
		l.Tick(now)
	}
	e.calls.Tick(now)
	e.pump(now)
}

// Deadline returns when Tick should next run.
func (e *Endpoint) Deadline() (t time.Time, ok bool) {
	add := func(d time.Time, ok bool) {
		if ok && (t.IsZero() || d.Before(t)) {
			t = d
		}
	}
	if e.teiU != nil {
		add(e.teiU.Deadline())
	}
	for _, l := range e.links {
		add(l.Deadline())
	}
	add(e.calls.Deadline())
	return t, !t.IsZero()
}

// Outgoing returns and clears the encoded frames to transmit, in order,
// after passing on what was requested through Calls since the last call.
func (e *Endpoint) Outgoing(now time.Time) [][]byte {
	e.pump(now)
	o := e.out
	e.out = nil
	return o
}

// Events returns and clears what happened since the last call.
func (e *Endpoint) Events(now time.Time) []Event {
	e.pump(now)
	ev := e.events
	e.events = nil
	return ev
}

// pump moves work between the layers until nothing is left: call control
// messages down to the links, link indications up, frames out.
func (e *Endpoint) pump(now time.Time) {
	for range 1000 {
		busy := false
		for _, o := range e.calls.Outgoing() {
			busy = true
			b, err := o.Msg.Marshal()
			if err != nil {
				e.log.Error("encoding Q.931 message", "msg", o.Msg.String(), "err", err)
				continue
			}
			if o.Link == q931.GroupLink && e.cfg.Type == BRIPointToMultipoint && e.cfg.Network {
				if f, ok := e.broadcast(b); ok {
					e.out = append(e.out, f)
				}
				continue
			}
			l, ok := e.links[uint8(o.Link)]
			if !ok {
				e.log.Warn("Q.931 message for a TEI without data link dropped", "tei", o.Link, "msg", o.Msg.String())
				continue
			}
			if err := l.Send(now, b); err != nil {
				e.log.Error("sending Q.931 message", "msg", o.Msg.String(), "err", err)
			}
		}
		for _, ev := range e.calls.Events() {
			ev := ev
			e.events = append(e.events, Event{Call: &ev})
		}
		if e.teiU != nil {
			busy = e.emit(e.teiU.Outgoing()) || busy
			for _, ev := range e.teiU.Events() {
				busy = true
				if ev.Assigned {
					if l, err := e.link(ev.TEI); err == nil {
						l.Establish(now)
					}
				} else if ev.TEI != lapd.TEIGroup {
					if l, ok := e.links[ev.TEI]; ok {
						l.Release(now)
						delete(e.links, ev.TEI)
					}
				}
				e.events = append(e.events, Event{TEI: ev.TEI, Link: "TEI " + ev.Reason})
			}
		}
		if e.teiN != nil {
			busy = e.emit(e.teiN.Outgoing()) || busy
			for _, ev := range e.teiN.Events() {
				e.events = append(e.events, Event{TEI: ev.TEI, Link: "TEI " + ev.Reason})
			}
		}
		for _, tei := range slices.Sorted(maps.Keys(e.links)) {
			l := e.links[tei]
			busy = e.emit(l.Outgoing()) || busy
			for _, ind := range l.Indications() {
				busy = true
				switch ind.Kind {
				case lapd.Data:
					e.deliver(now, tei, ind.Data)
				case lapd.Up, lapd.Down:
					if ind.Kind == lapd.Up {
						e.calls.LinkUp(now, int(tei))
					} else {
						e.calls.LinkDown(now, int(tei))
					}
					e.events = append(e.events, Event{TEI: tei, Link: ind.Kind.String()})
				case lapd.Error:
					e.log.Debug("data link error", "tei", tei, "code", string(ind.Code), "reason", ind.Reason)
				}
			}
		}
		if !busy {
			return
		}
	}
	e.log.Error("D-channel layers did not settle")
}

func (e *Endpoint) deliver(now time.Time, tei uint8, info []byte) {
	m, err := q931.Parse(info)
	if err != nil {
		e.log.Warn("malformed Q.931 message dropped", "tei", tei, "err", err)
		return
	}
	e.calls.Receive(now, int(tei), m)
}

// broadcast encodes a Q.931 message as a UI command on the group TEI,
// which every terminal of a point-to-multipoint line receives.
func (e *Endpoint) broadcast(msg []byte) ([]byte, bool) {
	f := lapd.Frame{SAPI: lapd.SAPICallControl, TEI: lapd.TEIGroup, CR: lapd.CRBit(true, true), Kind: lapd.UI, Info: msg}
	b, err := f.Marshal()
	if err != nil {
		e.log.Error("encoding broadcast frame", "err", err)
		return nil, false
	}
	return b, true
}

func (e *Endpoint) emit(frames []lapd.Frame) bool {
	for _, f := range frames {
		b, err := f.Marshal()
		if err != nil {
			e.log.Error("encoding LAPD frame", "frame", f.String(), "err", err)
			continue
		}
		e.out = append(e.out, b)
	}
	return len(frames) > 0
}
