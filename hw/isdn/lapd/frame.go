// Package lapd implements ITU-T Q.921 (LAPD), the data-link layer of the
// ISDN D channel: frame encoding and decoding, the data-link state machine
// for multiple-frame operation (user and network side) and TEI management
// for point-to-multipoint BRI.
//
// The package does no I/O and keeps no goroutines. A Link is driven by
// calls that carry the current time (Receive, Tick, Establish, Send, ...);
// it queues the frames to transmit (Outgoing) and what it reports to layer 3
// (Indications), and says when its next timer runs out (Deadline). The
// caller owns the clock and the wire, so tests run timers in virtual time.
package lapd

import (
	"errors"
	"fmt"
)

// Kind is the type of a LAPD frame.
type Kind uint8

// Frame kinds: the information frame, the supervisory frames and the
// unnumbered frames.
const (
	I Kind = iota + 1
	RR
	RNR
	REJ
	SABME
	DM
	UI
	DISC
	UA
	FRMR
	XID
)

var kindNames = [...]string{"", "I", "RR", "RNR", "REJ", "SABME", "DM", "UI", "DISC", "UA", "FRMR", "XID"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && k != 0 {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Unnumbered control octets with the P/F bit clear.
var uControl = map[Kind]byte{SABME: 0x6f, DM: 0x0f, UI: 0x03, DISC: 0x43, UA: 0x63, FRMR: 0x87, XID: 0xaf}

// Supervisory control octets.
var sControl = map[Kind]byte{RR: 0x01, RNR: 0x05, REJ: 0x09}

// Well-known SAPI and TEI values.
const (
	SAPICallControl = 0  // Q.931
	SAPITEIMgmt     = 63 // TEI management
	TEIGroup        = 127
)

// N201 is the default maximum number of octets in an information field.
const N201 = 260

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed LAPD frame")

// Frame is one LAPD frame without flags and FCS.
type Frame struct {
	SAPI uint8 // 0–63
	// CR is the command/response bit as sent: a command from the network
	// side and a response from the user side carry 1.
	CR   bool
	TEI  uint8 // 0–127
	Kind Kind
	NS   uint8 // send sequence number (I), modulo 128
	NR   uint8 // receive sequence number (I and supervisory), modulo 128
	PF   bool  // poll/final bit
	Info []byte
}

// CRBit returns the C/R bit for a frame sent by the network side (network
// true) or the user side, as a command or as a response.
func CRBit(network, command bool) bool { return network == command }

// IsCommand reports whether f is a command, given that it was sent by the
// network side (fromNetwork true) or by the user side.
func (f Frame) IsCommand(fromNetwork bool) bool { return f.CR == fromNetwork }

func (f Frame) String() string {
	s := fmt.Sprintf("%v sapi=%d tei=%d cr=%v", f.Kind, f.SAPI, f.TEI, b2i(f.CR))
	switch f.Kind {
	case I:
		s += fmt.Sprintf(" ns=%d nr=%d", f.NS, f.NR)
	case RR, RNR, REJ:
		s += fmt.Sprintf(" nr=%d", f.NR)
	}
	if f.PF {
		s += " pf"
	}
	if len(f.Info) > 0 {
		s += fmt.Sprintf(" info=%d", len(f.Info))
	}
	return s
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Append encodes f and appends it to b.
func (f Frame) Append(b []byte) ([]byte, error) {
	if f.SAPI > 63 || f.TEI > 127 || f.NS > 127 || f.NR > 127 {
		return b, fmt.Errorf("encoding %v: field out of range", f)
	}
	a0 := f.SAPI << 2
	if f.CR {
		a0 |= 0x02
	}
	b = append(b, a0, f.TEI<<1|1)
	var pf byte
	if f.PF {
		pf = 1
	}
	switch f.Kind {
	case I:
		b = append(b, f.NS<<1, f.NR<<1|pf)
		return append(b, f.Info...), nil
	case RR, RNR, REJ:
		if len(f.Info) > 0 {
			return b, fmt.Errorf("encoding %v: supervisory frame with information", f)
		}
		return append(b, sControl[f.Kind], f.NR<<1|pf), nil
	case SABME, DM, UI, DISC, UA, FRMR, XID:
		if len(f.Info) > 0 && f.Kind != UI && f.Kind != FRMR && f.Kind != XID {
			return b, fmt.Errorf("encoding %v: %v with information", f, f.Kind)
		}
		b = append(b, uControl[f.Kind]|pf<<4)
		return append(b, f.Info...), nil
	}
	return b, fmt.Errorf("encoding frame: unknown %v", f.Kind)
}

// Marshal encodes f.
func (f Frame) Marshal() ([]byte, error) { return f.Append(nil) }

// Parse decodes a frame. Info aliases b.
func Parse(b []byte) (Frame, error) {
	if len(b) < 3 {
		return Frame{}, fmt.Errorf("%w: %d octets", ErrMalformed, len(b))
	}
	if b[0]&1 != 0 || b[1]&1 != 1 {
		return Frame{}, fmt.Errorf("%w: address is not two octets (EA bits %d %d)", ErrMalformed, b[0]&1, b[1]&1)
	}
	f := Frame{SAPI: b[0] >> 2, CR: b[0]&2 != 0, TEI: b[1] >> 1}
	c := b[2]
	switch {
	case c&1 == 0: // I
		if len(b) < 4 {
			return Frame{}, fmt.Errorf("%w: I frame without second control octet", ErrMalformed)
		}
		f.Kind, f.NS, f.NR, f.PF = I, c>>1, b[3]>>1, b[3]&1 != 0
		if len(b) > 4 {
			f.Info = b[4:]
		}
	case c&3 == 1: // S
		if len(b) != 4 {
			return Frame{}, fmt.Errorf("%w: supervisory frame of %d octets", ErrMalformed, len(b))
		}
		for k, v := range sControl {
			if v == c {
				f.Kind = k
			}
		}
		if f.Kind == 0 {
			return Frame{}, fmt.Errorf("%w: unknown supervisory control %#02x", ErrMalformed, c)
		}
		f.NR, f.PF = b[3]>>1, b[3]&1 != 0
	default: // U
		for k, v := range uControl {
			if v == c&^0x10 {
				f.Kind = k
			}
		}
		if f.Kind == 0 {
			return Frame{}, fmt.Errorf("%w: unknown unnumbered control %#02x", ErrMalformed, c)
		}
		f.PF = c&0x10 != 0
		if len(b) > 3 {
			if f.Kind != UI && f.Kind != FRMR && f.Kind != XID {
				return Frame{}, fmt.Errorf("%w: %v with information", ErrMalformed, f.Kind)
			}
			f.Info = b[3:]
		}
	}
	return f, nil
}
