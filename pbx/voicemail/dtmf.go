package voicemail

import (
	"encoding/binary"
	"errors"
)

// Event is one RFC 4733 telephone-event payload.
type Event struct {
	Code     uint8 // 0-9, 10 = *, 11 = #, 12-15 = A-D
	End      bool
	Volume   uint8
	Duration uint16
}

// errShortEvent: a telephone-event payload has four bytes.
var errShortEvent = errors.New("telephone-event payload shorter than 4 bytes")

// ParseEvent reads the first event of an RFC 4733 payload.
func ParseEvent(b []byte) (Event, error) {
	if len(b) < 4 {
		return Event{}, errShortEvent
	}
	return Event{Code: b[0], End: b[1]&0x80 != 0, Volume: b[1] & 0x3F, Duration: binary.BigEndian.Uint16(b[2:4])}, nil
}

// Digit is the key of a DTMF event: '0'-'9', '*', '#', 'A'-'D'; 0 for
// other events (tones, flash).
func (e Event) Digit() byte {
	switch {
	case e.Code <= 9:
		return '0' + e.Code
	case e.Code == 10:
		return '*'
	case e.Code == 11:
		return '#'
	case e.Code <= 15:
		return 'A' + e.Code - 12
	}
	return 0
}

// digits turns the stream of telephone-event packets into key presses:
// a phone sends each event in many packets with the same RTP timestamp
// (and the end packet three times); the key counts once, when its first
// packet arrives.
type digits struct {
	seen bool
	ts   uint32
}

// press returns the key of the packet with RTP timestamp ts, or 0 when
// the packet belongs to an event already reported or is not a key.
func (d *digits) press(ts uint32, payload []byte) byte {
	ev, err := ParseEvent(payload)
	if err != nil {
		return 0
	}
	if d.seen && d.ts == ts {
		return 0
	}
	d.seen, d.ts = true, ts
	return ev.Digit()
}
