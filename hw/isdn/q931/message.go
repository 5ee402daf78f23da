// Package q931 implements ITU-T Q.931 (ETSI EN 300 403) basic call control
// on the ISDN D channel: message and information element encoding and
// decoding, and the call state machines of the user side (U0–U19) and the
// network side (N0–N19) with their timers.
//
// Like package lapd it does no I/O and keeps no goroutines: a Controller is
// driven by calls carrying the current time, queues the messages to send
// (Outgoing) and the call events for the layer above (Events), and tells
// when its next timer runs out (Deadline).
package q931

import (
	"errors"
	"fmt"
)

// ProtocolDiscriminator is Q.931's protocol discriminator.
const ProtocolDiscriminator = 0x08

// MessageType is a Q.931 message type.
type MessageType uint8

// Message types of basic call control.
const (
	Alerting        MessageType = 0x01
	CallProceeding  MessageType = 0x02
	Progress        MessageType = 0x03
	Setup           MessageType = 0x05
	Connect         MessageType = 0x07
	SetupAck        MessageType = 0x0d
	ConnectAck      MessageType = 0x0f
	Disconnect      MessageType = 0x45
	Restart         MessageType = 0x46
	Release         MessageType = 0x4d
	RestartAck      MessageType = 0x4e
	ReleaseComplete MessageType = 0x5a
	StatusEnquiry   MessageType = 0x75
	Information     MessageType = 0x7b
	Status          MessageType = 0x7d
)

var typeNames = map[MessageType]string{
	Alerting: "ALERTING", CallProceeding: "CALL PROCEEDING", Progress: "PROGRESS",
	Setup: "SETUP", Connect: "CONNECT", SetupAck: "SETUP ACKNOWLEDGE", ConnectAck: "CONNECT ACKNOWLEDGE",
	Disconnect: "DISCONNECT", Restart: "RESTART", Release: "RELEASE", RestartAck: "RESTART ACKNOWLEDGE",
	ReleaseComplete: "RELEASE COMPLETE", StatusEnquiry: "STATUS ENQUIRY", Information: "INFORMATION", Status: "STATUS",
}

func (t MessageType) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("message(%#02x)", uint8(t))
}

// Known reports whether t is one of the message types above.
func (t MessageType) Known() bool { _, ok := typeNames[t]; return ok }

// CallRef is a call reference.
type CallRef struct {
	// Len is the length in octets: 0 for the dummy call reference, 1 on
	// BRI, 2 on PRI.
	Len int
	// Value is the call reference value (7 bits on BRI, 15 on PRI).
	Value uint16
	// Flag is false in messages sent by the side that allocated the call
	// reference, true in messages sent to it.
	Flag bool
}

// Global returns the global call reference (value 0) of the given length.
func Global(n int) CallRef { return CallRef{Len: n} }

func (c CallRef) String() string {
	if c.Len == 0 {
		return "dummy"
	}
	return fmt.Sprintf("%d/%d", c.Value, b2i(c.Flag))
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// IE is one information element as on the wire. Single-octet elements
// (identifier with bit 8 set, such as sending complete 0xa1) have no Data.
type IE struct {
	ID   uint8
	Data []byte
}

// SingleOctet reports whether the identifier is a single-octet element.
func SingleOctet(id uint8) bool { return id&0x80 != 0 }

// Message is one Q.931 message.
type Message struct {
	CallRef CallRef
	Type    MessageType
	IEs     []IE
}

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed Q.931 message")

// Append encodes m and appends it to b.
func (m Message) Append(b []byte) ([]byte, error) {
	cr := m.CallRef
	switch {
	case cr.Len < 0 || cr.Len > 2:
		return b, fmt.Errorf("encoding %v: call reference of %d octets", m.Type, cr.Len)
	case cr.Len == 1 && cr.Value > 0x7f, cr.Len == 2 && cr.Value > 0x7fff, cr.Len == 0 && cr.Value != 0:
		return b, fmt.Errorf("encoding %v: call reference %d too large for %d octets", m.Type, cr.Value, cr.Len)
	case m.Type&0x80 != 0:
		return b, fmt.Errorf("encoding message type %#02x: bit 8 set", uint8(m.Type))
	}
	b = append(b, ProtocolDiscriminator, byte(cr.Len))
	var flag byte
	if cr.Flag {
		flag = 0x80
	}
	switch cr.Len {
	case 1:
		b = append(b, flag|byte(cr.Value))
	case 2:
		b = append(b, flag|byte(cr.Value>>8), byte(cr.Value))
	}
	b = append(b, byte(m.Type))
	for _, ie := range m.IEs {
		if SingleOctet(ie.ID) {
			if len(ie.Data) > 0 {
				return b, fmt.Errorf("encoding %v: single-octet element %#02x with data", m.Type, ie.ID)
			}
			b = append(b, ie.ID)
			continue
		}
		if len(ie.Data) > 255 {
			return b, fmt.Errorf("encoding %v: element %#02x of %d octets", m.Type, ie.ID, len(ie.Data))
		}
		b = append(b, ie.ID, byte(len(ie.Data)))
		b = append(b, ie.Data...)
	}
	return b, nil
}

// Marshal encodes m.
func (m Message) Marshal() ([]byte, error) { return m.Append(nil) }

// Parse decodes a message. IE data aliases b.
func Parse(b []byte) (Message, error) {
	if len(b) < 3 {
		return Message{}, fmt.Errorf("%w: %d octets", ErrMalformed, len(b))
	}
	if b[0] != ProtocolDiscriminator {
		return Message{}, fmt.Errorf("%w: protocol discriminator %#02x", ErrMalformed, b[0])
	}
	n := int(b[1])
	if b[1]&0xf0 != 0 || n > 2 {
		return Message{}, fmt.Errorf("%w: call reference length octet %#02x", ErrMalformed, b[1])
	}
	if len(b) < 3+n {
		return Message{}, fmt.Errorf("%w: truncated call reference", ErrMalformed)
	}
	var m Message
	m.CallRef.Len = n
	switch n {
	case 1:
		m.CallRef.Flag, m.CallRef.Value = b[2]&0x80 != 0, uint16(b[2]&0x7f)
	case 2:
		m.CallRef.Flag, m.CallRef.Value = b[2]&0x80 != 0, uint16(b[2]&0x7f)<<8|uint16(b[3])
	}
	p := 2 + n
	if b[p]&0x80 != 0 {
		return Message{}, fmt.Errorf("%w: message type %#02x with bit 8 set", ErrMalformed, b[p])
	}
	m.Type = MessageType(b[p])
	p++
	for p < len(b) {
		id := b[p]
		if SingleOctet(id) {
			m.IEs = append(m.IEs, IE{ID: id})
			p++
			continue
		}
		if p+1 >= len(b) {
			return Message{}, fmt.Errorf("%w: element %#02x without length", ErrMalformed, id)
		}
		l := int(b[p+1])
		if p+2+l > len(b) {
			return Message{}, fmt.Errorf("%w: element %#02x of %d octets, %d left", ErrMalformed, id, l, len(b)-p-2)
		}
		m.IEs = append(m.IEs, IE{ID: id, Data: b[p+2 : p+2+l]})
		p += 2 + l
	}
	return m, nil
}

// Find returns the first element with the identifier.
func (m Message) Find(id uint8) (IE, bool) {
	for _, ie := range m.IEs {
		if ie.ID == id {
			return ie, true
		}
	}
	return IE{}, false
}

func (m Message) String() string {
	return fmt.Sprintf("%v cr=%v ies=%d", m.Type, m.CallRef, len(m.IEs))
}
