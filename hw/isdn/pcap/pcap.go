// Package pcap writes and reads capture files of ISDN D-channel frames in
// the classic pcap format with link type LINKTYPE_LINUX_LAPD (177), the
// form Wireshark and tshark decode as LAPD, Q.931 and TEI management.
//
// Each record is a 16-byte pseudo-header followed by the LAPD frame without
// flags and FCS. The pseudo-header says whether the frame was received or
// sent and whether the capturing side is the network side, which is how a
// dissector tells commands from responses.
package pcap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// LinkTypeLinuxLAPD is the pcap link type of LAPD frames with the Linux
// LAPD pseudo-header.
const LinkTypeLinuxLAPD = 177

// headerLen is the length of the Linux LAPD pseudo-header.
const headerLen = 16

// ethPLAPD is the protocol field of the pseudo-header (ETH_P_LAPD).
const ethPLAPD = 0x0030

// MaxFrame bounds the LAPD frames written and read: a Q.921 I-frame carries
// at most 260 octets of information (N201) after 4 octets of header; the
// bound leaves room for malformed frames a test wants to keep.
const MaxFrame = 4096

// Direction says whether the capturing side received or sent a frame.
type Direction uint16

// Directions, as the pseudo-header's packet type.
const (
	Received Direction = 0
	Sent     Direction = 4
)

func (d Direction) String() string {
	switch d {
	case Received:
		return "received"
	case Sent:
		return "sent"
	}
	return fmt.Sprintf("direction(%d)", uint16(d))
}

// Packet is one captured frame.
type Packet struct {
	Time      time.Time
	Direction Direction
	// Network is true when the capturing side is the network side.
	Network bool
	// Frame is the LAPD frame: address, control and information octets.
	Frame []byte
}

// Writer writes a pcap file. It is not safe for concurrent use.
type Writer struct {
	w io.Writer
}

// NewWriter writes the pcap file header to w and returns a Writer for the
// records.
func NewWriter(w io.Writer) (*Writer, error) {
	var h [24]byte
	binary.LittleEndian.PutUint32(h[0:], 0xa1b23c4d) // nanosecond timestamps
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], headerLen+MaxFrame)
	binary.LittleEndian.PutUint32(h[20:], LinkTypeLinuxLAPD)
	if _, err := w.Write(h[:]); err != nil {
		return nil, fmt.Errorf("writing pcap file header: %w", err)
	}
	return &Writer{w: w}, nil
}

// Write appends one record.
func (w *Writer) Write(p Packet) error {
	if len(p.Frame) > MaxFrame {
		return fmt.Errorf("writing pcap record: frame of %d octets exceeds %d", len(p.Frame), MaxFrame)
	}
	if p.Direction != Received && p.Direction != Sent {
		return fmt.Errorf("writing pcap record: unknown %v", p.Direction)
	}
	n := headerLen + len(p.Frame)
	b := make([]byte, 16+n)
	ns := p.Time.UnixNano()
	binary.LittleEndian.PutUint32(b[0:], uint32(ns/1e9))
	binary.LittleEndian.PutUint32(b[4:], uint32(ns%1e9))
	binary.LittleEndian.PutUint32(b[8:], uint32(n))
	binary.LittleEndian.PutUint32(b[12:], uint32(n))
	hdr := b[16:]
	binary.BigEndian.PutUint16(hdr[0:], uint16(p.Direction))
	if p.Network {
		hdr[6] = 1
	}
	binary.BigEndian.PutUint16(hdr[14:], ethPLAPD)
	copy(hdr[headerLen:], p.Frame)
	if _, err := w.w.Write(b); err != nil {
		return fmt.Errorf("writing pcap record: %w", err)
	}
	return nil
}

// ErrFormat is wrapped by every error about a malformed file.
var ErrFormat = errors.New("malformed pcap")

// Reader reads a pcap file of link type 177, as Writer writes it (both byte
// orders and both timestamp resolutions are accepted).
type Reader struct {
	r     io.Reader
	order binary.ByteOrder
	nano  bool
}

// NewReader reads and checks the file header.
func NewReader(r io.Reader) (*Reader, error) {
	var h [24]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, fmt.Errorf("reading pcap file header: %w", err)
	}
	rd := &Reader{r: r}
	switch {
	case binary.LittleEndian.Uint32(h[0:]) == 0xa1b2c3d4:
		rd.order = binary.LittleEndian
	case binary.LittleEndian.Uint32(h[0:]) == 0xa1b23c4d:
		rd.order, rd.nano = binary.LittleEndian, true
	case binary.BigEndian.Uint32(h[0:]) == 0xa1b2c3d4:
		rd.order = binary.BigEndian
	case binary.BigEndian.Uint32(h[0:]) == 0xa1b23c4d:
		rd.order, rd.nano = binary.BigEndian, true
	default:
		return nil, fmt.Errorf("reading pcap file header: %w: bad magic % x", ErrFormat, h[0:4])
	}
	if lt := rd.order.Uint32(h[20:]); lt != LinkTypeLinuxLAPD {
		return nil, fmt.Errorf("reading pcap file header: %w: link type %d, want %d", ErrFormat, lt, LinkTypeLinuxLAPD)
	}
	return rd, nil
}

// Next reads the next record; it returns io.EOF at the end of the file.
func (r *Reader) Next() (Packet, error) {
	var h [16]byte
	if _, err := io.ReadFull(r.r, h[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return Packet{}, io.EOF
		}
		return Packet{}, fmt.Errorf("reading pcap record header: %w", err)
	}
	sec, frac := r.order.Uint32(h[0:]), r.order.Uint32(h[4:])
	incl := r.order.Uint32(h[8:])
	if incl < headerLen || incl > headerLen+MaxFrame {
		return Packet{}, fmt.Errorf("reading pcap record: %w: length %d", ErrFormat, incl)
	}
	b := make([]byte, incl)
	if _, err := io.ReadFull(r.r, b); err != nil {
		return Packet{}, fmt.Errorf("reading pcap record: %w", err)
	}
	if proto := binary.BigEndian.Uint16(b[14:]); proto != ethPLAPD {
		return Packet{}, fmt.Errorf("reading pcap record: %w: protocol %#04x, want %#04x", ErrFormat, proto, ethPLAPD)
	}
	if !r.nano {
		frac *= 1000
	}
	return Packet{
		Time:      time.Unix(int64(sec), int64(frac)).UTC(),
		Direction: Direction(binary.BigEndian.Uint16(b[0:])),
		Network:   b[6] != 0,
		Frame:     b[headerLen:],
	}, nil
}
