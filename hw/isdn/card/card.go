// Package card is the boundary between the ISDN stack and the line: a Card
// carries D-channel frames, B-channel audio (A-law) and layer-1 state for
// one or more spans. Two transports implement it: Serial, an ISDN card
// attached to a serial port that speaks async-HDLC framed records, and
// Pipe, an in-memory pair for tests and for the exchange emulator of the
// simulated board.
package card

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/twinpbx/twinpbx/hw/isdn"
)

// ErrClosed is returned by a card, or by the far end of a pipe, after Close.
var ErrClosed = errors.New("isdn card closed")

// ErrMalformed wraps every reason a record is refused.
var ErrMalformed = errors.New("malformed card record")

// Card is one ISDN card: records in and out. Receive is meant for one
// goroutine; Send may be called from several; Close ends a blocked Receive.
type Card interface {
	// Receive waits for the next record from the line.
	Receive(ctx context.Context) (Record, error)
	// Send passes one record to the line.
	Send(r Record) error
	Close() error
}

// Kind is what a record carries.
type Kind uint8

// Record kinds, as numbered on the wire.
const (
	// DFrame: one D-channel frame (address, control, information; no
	// flags, no FCS), either way.
	DFrame Kind = 1
	// Audio: A-law samples of one B channel, either way (8000 a second).
	Audio Kind = 2
	// Layer1: the span's physical layer state, card to host.
	Layer1 Kind = 3
	// Config: how the host wants the span run, host to card (and echoed
	// back by cards that accept it).
	Config Kind = 4
)

func (k Kind) String() string {
	switch k {
	case DFrame:
		return "D-frame"
	case Audio:
		return "audio"
	case Layer1:
		return "layer-1"
	case Config:
		return "config"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Alarm is a set of layer-1 alarms.
type Alarm uint8

// Layer-1 alarms.
const (
	// LOS: loss of signal (no line, cable pulled, relay on the twin).
	LOS Alarm = 1 << iota
	// AIS: alarm indication signal (all ones from the exchange).
	AIS
	// RAI: remote alarm indication (the far end sees a problem).
	RAI
)

func (a Alarm) String() string {
	if a == 0 {
		return "none"
	}
	var s []string
	for _, x := range []struct {
		a Alarm
		n string
	}{{LOS, "LOS"}, {AIS, "AIS"}, {RAI, "RAI"}} {
		if a&x.a != 0 {
			s = append(s, x.n)
		}
	}
	if a&^(LOS|AIS|RAI) != 0 {
		s = append(s, fmt.Sprintf("0x%02x", uint8(a&^(LOS|AIS|RAI))))
	}
	return strings.Join(s, "+")
}

// L1 is a span's physical layer state.
type L1 struct {
	// Up: the line is activated (INFO 4 on BRI, frame alignment on E1).
	Up     bool
	Alarms Alarm
}

// SpanConfig is how a span is to be run.
type SpanConfig struct {
	Type isdn.SpanType
	// Network: the card drives the network side (NT mode, for the exchange
	// emulator or a phone plugged into the box); otherwise the user side.
	Network bool
}

// Record is one unit on a card: which span, and what.
type Record struct {
	Kind Kind
	// Span numbers the card's spans from 0.
	Span uint8
	// Channel is the B channel of an Audio record: 1–2 on BRI, 1–31 on
	// PRI.
	Channel uint8
	// Data is the D-channel frame or the A-law samples.
	Data   []byte
	L1     L1
	Config SpanConfig
}

func (r Record) String() string {
	switch r.Kind {
	case DFrame:
		return fmt.Sprintf("span %d D-frame % x", r.Span, r.Data)
	case Audio:
		return fmt.Sprintf("span %d B%d %d samples", r.Span, r.Channel, len(r.Data))
	case Layer1:
		return fmt.Sprintf("span %d layer 1 up=%t alarms=%s", r.Span, r.L1.Up, r.L1.Alarms)
	case Config:
		return fmt.Sprintf("span %d config type=%d network=%t", r.Span, r.Config.Type, r.Config.Network)
	}
	return fmt.Sprintf("span %d %s", r.Span, r.Kind)
}

// On the wire a record is kind, span, then what the kind carries:
//
//	D-frame: the frame (at least 3 octets: address and control)
//	audio:   B-channel number, samples (at least one)
//	layer 1: one octet: bit 0 up, bits 1–3 LOS, AIS, RAI
//	config:  span type (1 BRI point-to-point, 2 BRI point-to-multipoint,
//	         3 PRI), flags (bit 0 network side)

// Append appends r's wire form (without framing) to b.
func (r Record) Append(b []byte) ([]byte, error) {
	if err := r.validate(); err != nil {
		return b, err
	}
	b = append(b, byte(r.Kind), r.Span)
	switch r.Kind {
	case DFrame:
		b = append(b, r.Data...)
	case Audio:
		b = append(append(b, r.Channel), r.Data...)
	case Layer1:
		o := byte(r.L1.Alarms&(LOS|AIS|RAI)) << 1
		if r.L1.Up {
			o |= 1
		}
		b = append(b, o)
	case Config:
		var f byte
		if r.Config.Network {
			f = 1
		}
		b = append(b, byte(r.Config.Type), f)
	}
	return b, nil
}

func (r Record) validate() error {
	switch r.Kind {
	case DFrame:
		if len(r.Data) < 3 {
			return fmt.Errorf("%w: D-frame of %d octets", ErrMalformed, len(r.Data))
		}
	case Audio:
		if r.Channel < 1 || r.Channel > 31 {
			return fmt.Errorf("%w: B channel %d", ErrMalformed, r.Channel)
		}
		if len(r.Data) == 0 {
			return fmt.Errorf("%w: audio without samples", ErrMalformed)
		}
	case Layer1:
		if r.L1.Alarms&^(LOS|AIS|RAI) != 0 {
			return fmt.Errorf("%w: unknown alarms %s", ErrMalformed, r.L1.Alarms)
		}
	case Config:
		if r.Config.Type < isdn.BRIPointToPoint || r.Config.Type > isdn.PRI {
			return fmt.Errorf("%w: span type %d", ErrMalformed, r.Config.Type)
		}
	default:
		return fmt.Errorf("%w: unknown kind %d", ErrMalformed, uint8(r.Kind))
	}
	if len(r.Data) > MaxPayload-3 {
		return fmt.Errorf("%w: %d octets of data", ErrMalformed, len(r.Data))
	}
	return nil
}

// ParseRecord decodes a record's wire form. Data is copied.
func ParseRecord(b []byte) (Record, error) {
	if len(b) < 2 {
		return Record{}, fmt.Errorf("%w: %d octets", ErrMalformed, len(b))
	}
	r := Record{Kind: Kind(b[0]), Span: b[1]}
	body := b[2:]
	switch r.Kind {
	case DFrame:
		r.Data = append([]byte(nil), body...)
	case Audio:
		if len(body) < 1 {
			return Record{}, fmt.Errorf("%w: audio without channel", ErrMalformed)
		}
		r.Channel = body[0]
		r.Data = append([]byte(nil), body[1:]...)
	case Layer1:
		if len(body) != 1 || body[0]&^0x0f != 0 {
			return Record{}, fmt.Errorf("%w: layer-1 state % x", ErrMalformed, body)
		}
		r.L1 = L1{Up: body[0]&1 != 0, Alarms: Alarm(body[0] >> 1)}
	case Config:
		if len(body) != 2 || body[1]&^1 != 0 {
			return Record{}, fmt.Errorf("%w: span config % x", ErrMalformed, body)
		}
		r.Config = SpanConfig{Type: isdn.SpanType(body[0]), Network: body[1]&1 != 0}
	}
	if err := r.validate(); err != nil {
		return Record{}, err
	}
	return r, nil
}
