package lapd

import (
	"fmt"
	"time"
)

// TEIMsgType is a TEI management message type (Q.921 table 8).
type TEIMsgType uint8

// TEI management messages.
const (
	IdentityRequest  TEIMsgType = 1
	IdentityAssigned TEIMsgType = 2
	IdentityDenied   TEIMsgType = 3
	CheckRequest     TEIMsgType = 4
	CheckResponse    TEIMsgType = 5
	IdentityRemove   TEIMsgType = 6
	IdentityVerify   TEIMsgType = 7
)

func (t TEIMsgType) String() string {
	n := [...]string{"", "identity request", "identity assigned", "identity denied",
		"check request", "check response", "identity remove", "identity verify"}
	if int(t) < len(n) && t != 0 {
		return n[t]
	}
	return fmt.Sprintf("TEI message(%d)", uint8(t))
}

// teiEntity is the management entity identifier of layer management.
const teiEntity = 0x0f

// TEIMessage is a TEI management message, carried in a UI frame on SAPI 63
// and the group TEI 127.
type TEIMessage struct {
	Type TEIMsgType
	Ri   uint16 // reference number
	Ai   uint8  // action indicator: a TEI, or 127 for "any" / "all"
}

// Append encodes m as the information field of a UI frame.
func (m TEIMessage) Append(b []byte) []byte {
	return append(b, teiEntity, byte(m.Ri>>8), byte(m.Ri), byte(m.Type), m.Ai<<1|1)
}

// Frame returns m as a UI command frame sent by the network or user side.
func (m TEIMessage) Frame(network bool) Frame {
	return Frame{SAPI: SAPITEIMgmt, TEI: TEIGroup, CR: CRBit(network, true), Kind: UI, Info: m.Append(nil)}
}

// ParseTEI decodes a TEI management message from a UI frame's information.
func ParseTEI(info []byte) (TEIMessage, error) {
	if len(info) != 5 {
		return TEIMessage{}, fmt.Errorf("%w: TEI management message of %d octets, want 5", ErrMalformed, len(info))
	}
	if info[0] != teiEntity {
		return TEIMessage{}, fmt.Errorf("%w: management entity %#02x, want %#02x", ErrMalformed, info[0], teiEntity)
	}
	if info[4]&1 != 1 {
		return TEIMessage{}, fmt.Errorf("%w: action indicator without extension bit", ErrMalformed)
	}
	m := TEIMessage{Ri: uint16(info[1])<<8 | uint16(info[2]), Type: TEIMsgType(info[3]), Ai: info[4] >> 1}
	if m.Type < IdentityRequest || m.Type > IdentityVerify {
		return TEIMessage{}, fmt.Errorf("%w: unknown TEI message type %d", ErrMalformed, info[3])
	}
	return m, nil
}

// TEI management timers and counts of the user side (Q.921 defaults).
const (
	T202 = 2 * time.Second
	N202 = 3
)

// TEIUser is the user side's TEI management for point-to-multipoint: it
// asks the network for a TEI, answers identity checks and obeys removals.
// Like Link it does no I/O: frames go out through Outgoing.
type TEIUser struct {
	rand func() uint16

	tei    uint8 // TEIGroup while unassigned
	ri     uint16
	asking bool
	tries  int
	t202   time.Time
	out    []Frame
	events []TEIEvent
}

// TEIEvent reports a change of the assigned TEI.
type TEIEvent struct {
	Assigned bool  // true: TEI assigned; false: removed or denied
	TEI      uint8 // the TEI assigned or removed
	Reason   string
}

// NewTEIUser returns an unassigned TEI management entity. rand draws the
// reference numbers (Ri); tests pass a fixed sequence.
func NewTEIUser(rand func() uint16) *TEIUser {
	return &TEIUser{rand: rand, tei: TEIGroup}
}

// TEI returns the assigned TEI; ok is false while none is.
func (u *TEIUser) TEI() (tei uint8, ok bool) { return u.tei, u.tei != TEIGroup }

// Request asks for a TEI (MDL-ASSIGN) unless one is assigned or asked for.
func (u *TEIUser) Request(now time.Time) {
	if u.tei != TEIGroup || u.asking {
		return
	}
	u.asking, u.tries = true, 0
	u.ask(now)
}

// Renew asks for a TEI afresh unless one is assigned: a request under way
// starts over with all N202 tries. For layer 1 coming up: requests sent
// while the line was down went nowhere, and the last of them must not use
// up the tries the line now needs.
func (u *TEIUser) Renew(now time.Time) {
	if u.tei != TEIGroup {
		return
	}
	u.asking, u.tries = true, 0
	u.ask(now)
}

func (u *TEIUser) ask(now time.Time) {
	u.tries++
	u.ri = u.rand()
	u.out = append(u.out, TEIMessage{Type: IdentityRequest, Ri: u.ri, Ai: TEIGroup}.Frame(false))
	u.t202 = now.Add(T202)
}

// Deadline returns when T202 runs out; ok is false when it is stopped.
func (u *TEIUser) Deadline() (time.Time, bool) { return u.t202, !u.t202.IsZero() }

// Tick retransmits the identity request when T202 ran out, and gives up
// after N202 tries.
func (u *TEIUser) Tick(now time.Time) {
	if u.t202.IsZero() || now.Before(u.t202) {
		return
	}
	u.t202 = time.Time{}
	if u.tries >= N202 {
		u.asking = false
		u.events = append(u.events, TEIEvent{Reason: "no answer to identity request"})
		return
	}
	u.ask(now)
}

// Receive processes a UI frame on SAPI 63.
func (u *TEIUser) Receive(now time.Time, f Frame) error {
	if f.SAPI != SAPITEIMgmt || f.Kind != UI {
		return nil
	}
	m, err := ParseTEI(f.Info)
	if err != nil {
		return fmt.Errorf("receiving TEI management: %w", err)
	}
	switch m.Type {
	case IdentityAssigned:
		if u.asking && m.Ri == u.ri && m.Ai >= 64 && m.Ai < TEIGroup {
			u.asking, u.t202, u.tei = false, time.Time{}, m.Ai
			u.events = append(u.events, TEIEvent{Assigned: true, TEI: m.Ai, Reason: "assigned"})
		}
	case IdentityDenied:
		if u.asking && m.Ri == u.ri {
			u.asking, u.t202 = false, time.Time{}
			u.events = append(u.events, TEIEvent{Reason: "denied"})
		}
	case CheckRequest:
		if u.tei != TEIGroup && (m.Ai == TEIGroup || m.Ai == u.tei) {
			u.out = append(u.out, TEIMessage{Type: CheckResponse, Ri: u.rand(), Ai: u.tei}.Frame(false))
		}
	case IdentityRemove:
		if u.tei != TEIGroup && (m.Ai == TEIGroup || m.Ai == u.tei) {
			old := u.tei
			u.tei = TEIGroup
			u.events = append(u.events, TEIEvent{TEI: old, Reason: "removed by the network"})
		}
	}
	return nil
}

// Outgoing returns and clears the frames to transmit.
func (u *TEIUser) Outgoing() []Frame { o := u.out; u.out = nil; return o }

// Events returns and clears the TEI changes.
func (u *TEIUser) Events() []TEIEvent { e := u.events; u.events = nil; return e }

// TEINetwork is the network side's TEI management: it assigns automatic
// TEIs from 64–126, checks and removes them.
type TEINetwork struct {
	used   [128]bool
	out    []Frame
	events []TEIEvent
}

// NewTEINetwork returns an assigner with every automatic TEI free.
func NewTEINetwork() *TEINetwork { return &TEINetwork{} }

// Receive processes a UI frame on SAPI 63 from a user.
func (n *TEINetwork) Receive(now time.Time, f Frame) error {
	if f.SAPI != SAPITEIMgmt || f.Kind != UI {
		return nil
	}
	m, err := ParseTEI(f.Info)
	if err != nil {
		return fmt.Errorf("receiving TEI management: %w", err)
	}
	switch m.Type {
	case IdentityRequest:
		tei := m.Ai
		if tei != TEIGroup && (tei < 64 || n.used[tei]) {
			tei = TEIGroup
		}
		if tei == TEIGroup {
			for t := uint8(64); t < TEIGroup; t++ {
				if !n.used[t] {
					tei = t
					break
				}
			}
		}
		if tei == TEIGroup {
			n.out = append(n.out, TEIMessage{Type: IdentityDenied, Ri: m.Ri, Ai: TEIGroup}.Frame(true))
			return nil
		}
		n.used[tei] = true
		n.out = append(n.out, TEIMessage{Type: IdentityAssigned, Ri: m.Ri, Ai: tei}.Frame(true))
		n.events = append(n.events, TEIEvent{Assigned: true, TEI: tei, Reason: "assigned"})
	case CheckResponse:
		// A live TEI answered; nothing to do until check timers exist.
	case IdentityVerify:
		if m.Ai < TEIGroup && !n.used[m.Ai] {
			n.out = append(n.out, TEIMessage{Type: IdentityRemove, Ri: 0, Ai: m.Ai}.Frame(true))
		} else if m.Ai < TEIGroup {
			n.out = append(n.out, TEIMessage{Type: CheckRequest, Ri: 0, Ai: m.Ai}.Frame(true))
		}
	}
	return nil
}

// Check asks whether a TEI (or all, with 127) is still in use.
func (n *TEINetwork) Check(tei uint8) {
	n.out = append(n.out, TEIMessage{Type: CheckRequest, Ai: tei & 127}.Frame(true))
}

// Remove withdraws a TEI (or all, with 127).
func (n *TEINetwork) Remove(tei uint8) {
	tei &= 127
	if tei == TEIGroup {
		n.used = [128]bool{}
	} else {
		n.used[tei] = false
	}
	n.out = append(n.out, TEIMessage{Type: IdentityRemove, Ai: tei}.Frame(true))
	n.events = append(n.events, TEIEvent{TEI: tei, Reason: "removed"})
}

// Outgoing returns and clears the frames to transmit.
func (n *TEINetwork) Outgoing() []Frame { o := n.out; n.out = nil; return o }

// Events returns and clears the assignments and removals.
func (n *TEINetwork) Events() []TEIEvent { e := n.events; n.events = nil; return e }
