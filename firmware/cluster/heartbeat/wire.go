package heartbeat

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/chacha20poly1305"
)

// Version is the heartbeat protocol version this package speaks. A beat of
// another version is rejected and counted (Rejects.Version).
const Version = 1

// Wire format, version 1. A datagram is
//
//	magic   "TPHB"  4 bytes
//	version uint8   1 byte
//	nonce           12 bytes, random per datagram
//	sealed payload  ChaCha20-Poly1305 over the payload below, with
//	                magic and version as additional data; 16-byte tag
//
// and the payload, big-endian, is
//
//	 0 incarnation      uint64  random per start of the sender
//	 8 seq              uint64  per path, from 1, +1 per datagram
//	16 sent             int64   sender's clock, unix nanoseconds
//	24 echo incarnation uint64  of the last beat received on this path
//	32 echo seq         uint64  (zero: none yet)
//	40 echo sent        int64   the echoed beat's send time, as it sent it
//	48 echo hold        int64   ns between that beat's arrival and this send
//	56 echo term        uint64  the term the echoed beat carried
//	64 term             uint64
//	72 store seq        uint64
//	80 config version   uint64
//	88 watchdog         uint32  milliseconds
//	92 role             uint8
//	93 flags            uint8
//	94 node length      uint8   1..MaxNameLen
//	95 path length      uint8   1..maxPathLen
//	96 node name, then path name
//
// Nonces are random rather than counters because both twins seal under
// the same key and a counter restarts with the process: random 96-bit
// nonces need no state and no coordination. At 20 beats a second on two
// paths from two boxes the pair seals about 2^31 datagrams a year; the
// chance that any two of ten years' nonces repeat is about 2^-28 (birthday
// bound n^2/2^97); a repeat would expose those two beats and let an
// eavesdropper forge beats under that one nonce, not recover the key.
//
// The path name is inside the sealed payload so a beat captured on one
// path cannot be replayed on the other.
const (
	magic       = "TPHB"
	headerLen   = len(magic) + 1
	nonceLen    = chacha20poly1305.NonceSize
	fixedLen    = 96
	tagLen      = chacha20poly1305.Overhead
	maxPathLen  = 16
	maxDatagram = headerLen + nonceLen + fixedLen + MaxNameLen + maxPathLen + tagLen
)

// MaxNameLen is the longest node name a beat carries, in bytes.
const MaxNameLen = 64

// Role is a node's role as announced in its beats. The numbering is part
// of the wire format.
type Role uint8

// Roles of docs/CLUSTER.md.
const (
	RoleBoot Role = iota
	RoleSync
	RoleStandby
	RoleActive
	RoleFenced
	RoleMaintenance
	roleCount
)

func (r Role) String() string {
	switch r {
	case RoleBoot:
		return "boot"
	case RoleSync:
		return "sync"
	case RoleStandby:
		return "standby"
	case RoleActive:
		return "active"
	case RoleFenced:
		return "fenced"
	case RoleMaintenance:
		return "maintenance"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// Flags are a beat's yes/no statements. The bit values are part of the
// wire format.
type Flags uint8

const (
	// Goodbye: the sender is stopping on purpose; do not wait out the
	// dead time.
	Goodbye Flags = 1 << iota
	// HandoverRequest: the active asks the standby to take over now.
	HandoverRequest
	// Maintenance: the sender is in maintenance and will not become active.
	Maintenance
	// GatewayOK: the sender's last tie-breaker probe of the gateway
	// succeeded.
	GatewayOK
	// Healthy: none of the sender's monitors fails.
	Healthy
	// SharedFault: the PSTN line (a resource the twins share through a
	// switch) failed on the sender: do not hand it back for that.
	SharedFault
	flagMask = Goodbye | HandoverRequest | Maintenance | GatewayOK | Healthy | SharedFault
)

func (f Flags) String() string {
	if f == 0 {
		return "none"
	}
	var s string
	for _, n := range []struct {
		f    Flags
		name string
	}{{Goodbye, "goodbye"}, {HandoverRequest, "handover"}, {Maintenance, "maintenance"}, {GatewayOK, "gateway-ok"}, {Healthy, "healthy"}, {SharedFault, "shared-fault"}} {
		if f&n.f != 0 {
			if s != "" {
				s += "|"
			}
			s += n.name
		}
	}
	if f&^flagMask != 0 {
		s += fmt.Sprintf("|0x%02x", uint8(f&^flagMask))
	}
	return s
}

// Beat is what a node announces about itself in every heartbeat.
type Beat struct {
	Role          Role
	Term          uint64
	StoreSeq      uint64
	ConfigVersion uint64
	Flags         Flags
	// WatchdogTimeout is carried in whole milliseconds.
	WatchdogTimeout time.Duration
}

// echo is what a beat says about the last beat its sender received on the
// same path.
type echo struct {
	Incarnation uint64
	Seq         uint64
	Sent        int64 // the echoed beat's own send time, unix ns
	Hold        int64 // ns it was held before this beat was sent
	Term        uint64
}

// packet is one decoded datagram.
type packet struct {
	Node        string
	Path        string
	Incarnation uint64
	Seq         uint64
	Sent        int64 // unix ns, sender's clock
	Echo        echo
	Beat        Beat
}

// Errors of decoding, each counted under its own Rejects field.
var (
	errMalformed = errors.New("malformed heartbeat")
	errVersion   = errors.New("heartbeat of another protocol version")
	errAuth      = errors.New("heartbeat fails authentication (a twin with another pairing key, or forged)")
)

func newAEAD(key [32]byte) (cipher.AEAD, error) {
	return chacha20poly1305.New(key[:])
}

// encodePayload appends the payload of p to b.
func encodePayload(b []byte, p *packet) ([]byte, error) {
	if len(p.Node) == 0 || len(p.Node) > MaxNameLen {
		return nil, fmt.Errorf("node name %q: must have 1 to %d bytes", p.Node, MaxNameLen)
	}
	if len(p.Path) == 0 || len(p.Path) > maxPathLen {
		return nil, fmt.Errorf("path name %q: must have 1 to %d bytes", p.Path, maxPathLen)
	}
	wd := p.Beat.WatchdogTimeout.Milliseconds()
	if wd < 0 || wd > 1<<32-1 {
		return nil, fmt.Errorf("watchdog timeout %v out of range", p.Beat.WatchdogTimeout)
	}
	b = binary.BigEndian.AppendUint64(b, p.Incarnation)
	b = binary.BigEndian.AppendUint64(b, p.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(p.Sent))
	b = binary.BigEndian.AppendUint64(b, p.Echo.Incarnation)
	b = binary.BigEndian.AppendUint64(b, p.Echo.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(p.Echo.Sent))
	b = binary.BigEndian.AppendUint64(b, uint64(p.Echo.Hold))
	b = binary.BigEndian.AppendUint64(b, p.Echo.Term)
	b = binary.BigEndian.AppendUint64(b, p.Beat.Term)
	b = binary.BigEndian.AppendUint64(b, p.Beat.StoreSeq)
	b = binary.BigEndian.AppendUint64(b, p.Beat.ConfigVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(wd))
	b = append(b, byte(p.Beat.Role), byte(p.Beat.Flags), byte(len(p.Node)), byte(len(p.Path)))
	b = append(b, p.Node...)
	b = append(b, p.Path...)
	return b, nil
}

// decodePayload reads a payload. It accepts exactly what encodePayload
// makes, so every payload has one encoding.
func decodePayload(b []byte) (packet, error) {
	var p packet
	if len(b) < fixedLen {
		return p, fmt.Errorf("%w: payload of %d bytes, shorter than %d", errMalformed, len(b), fixedLen)
	}
	u64 := func(off int) uint64 { return binary.BigEndian.Uint64(b[off:]) }
	p.Incarnation = u64(0)
	p.Seq = u64(8)
	p.Sent = int64(u64(16))
	p.Echo = echo{Incarnation: u64(24), Seq: u64(32), Sent: int64(u64(40)), Hold: int64(u64(48)), Term: u64(56)}
	p.Beat.Term = u64(64)
	p.Beat.StoreSeq = u64(72)
	p.Beat.ConfigVersion = u64(80)
	p.Beat.WatchdogTimeout = time.Duration(binary.BigEndian.Uint32(b[88:])) * time.Millisecond
	p.Beat.Role = Role(b[92])
	p.Beat.Flags = Flags(b[93])
	nodeLen, pathLen := int(b[94]), int(b[95])
	switch {
	case p.Beat.Role >= roleCount:
		return p, fmt.Errorf("%w: unknown role %d", errMalformed, b[92])
	case p.Beat.Flags&^flagMask != 0:
		return p, fmt.Errorf("%w: unknown flags 0x%02x", errMalformed, b[93])
	case p.Echo.Hold < 0:
		return p, fmt.Errorf("%w: negative echo hold", errMalformed)
	case nodeLen == 0 || nodeLen > MaxNameLen:
		return p, fmt.Errorf("%w: node name of %d bytes", errMalformed, nodeLen)
	case pathLen == 0 || pathLen > maxPathLen:
		return p, fmt.Errorf("%w: path name of %d bytes", errMalformed, pathLen)
	case len(b) != fixedLen+nodeLen+pathLen:
		return p, fmt.Errorf("%w: payload of %d bytes, names say %d", errMalformed, len(b), fixedLen+nodeLen+pathLen)
	}
	p.Node = string(b[fixedLen : fixedLen+nodeLen])
	p.Path = string(b[fixedLen+nodeLen:])
	if !utf8.ValidString(p.Node) || !utf8.ValidString(p.Path) {
		return p, fmt.Errorf("%w: names are not UTF-8", errMalformed)
	}
	return p, nil
}

// seal encodes and seals p into a datagram, drawing the nonce from rnd.
func seal(aead cipher.AEAD, rnd io.Reader, p *packet) ([]byte, error) {
	b := make([]byte, headerLen+nonceLen, maxDatagram)
	copy(b, magic)
	b[len(magic)] = Version
	if _, err := io.ReadFull(rnd, b[headerLen:]); err != nil {
		return nil, fmt.Errorf("drawing a nonce: %w", err)
	}
	payload, err := encodePayload(nil, p)
	if err != nil {
		return nil, err
	}
	return aead.Seal(b, b[headerLen:], payload, b[:headerLen]), nil
}

// open checks and decodes a datagram. Errors wrap errMalformed,
// errVersion or errAuth.
func open(aead cipher.AEAD, b []byte) (packet, error) {
	if len(b) < headerLen || string(b[:len(magic)]) != magic {
		return packet{}, fmt.Errorf("%w: no heartbeat magic", errMalformed)
	}
	if v := b[len(magic)]; v != Version {
		return packet{}, fmt.Errorf("%w: version %d, we speak %d", errVersion, v, Version)
	}
	if len(b) < headerLen+nonceLen+tagLen {
		return packet{}, fmt.Errorf("%w: %d bytes, too short", errMalformed, len(b))
	}
	if len(b) > maxDatagram {
		return packet{}, fmt.Errorf("%w: %d bytes, too long", errMalformed, len(b))
	}
	payload, err := aead.Open(nil, b[headerLen:headerLen+nonceLen], b[headerLen+nonceLen:], b[:headerLen])
	if err != nil {
		return packet{}, errAuth
	}
	// An authentic payload that does not decode came from a twin with the
	// same key but a bug, or a future minor change: malformed either way.
	return decodePayload(payload)
}
