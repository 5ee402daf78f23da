package replication

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/twinpbx/twinpbx/firmware/store"
)

// ProtocolVersion is the version of the wire protocol below. A twin that
// speaks another version is refused with an error frame.
const ProtocolVersion = 1

// The wire protocol. Every frame is
//
//	length  uint32, big-endian: the bytes that follow (type + payload)
//	type    one byte, one of the msg* constants
//	payload length-1 bytes
//
// Payloads are JSON except snapshot chunks (raw bytes of store.Snapshot),
// acks (the 8-byte big-endian store sequence) and errors (UTF-8 text).
//
// Standby → active: hello first, then acks (after every applied batch and
// in answer to every heartbeat) and one restored frame after a snapshot.
// Active → standby: start, then any of changes, snapshot chunks closed by
// snapshot end, heartbeats. Either side may send an error frame and close.
const (
	msgHello     byte = 1 // hello (JSON)
	msgStart     byte = 2 // start (JSON)
	msgChanges   byte = 3 // []store.Change (JSON), applied in one transaction
	msgSnapChunk byte = 4 // raw snapshot bytes
	msgSnapEnd   byte = 5 // empty: the snapshot is complete
	msgHeartbeat byte = 6 // heartbeat (JSON)
	msgAck       byte = 7 // uint64: the standby's store sequence, committed
	msgRestored  byte = 8 // uint64: the standby's sequence after a snapshot
	msgError     byte = 9 // text: why the sender of the frame gives up
)

// maxFrame bounds a frame's length: a larger length prefix is a protocol
// error, not an allocation.
const maxFrame = 64 << 20

// snapChunk is how much snapshot data one frame carries.
const snapChunk = 64 << 10

// hello is the standby's first frame.
type hello struct {
	Proto int    `json:"proto"`
	Node  string `json:"node"`
	// Seq is the standby's store sequence; LastSum the checksum of its
	// change Seq (see changeSum), empty when its log does not hold it.
	Seq     uint64 `json:"seq"`
	LastSum string `json:"last_sum,omitempty"`
	// ConfigVersion is the newest config version in the standby's store.
	ConfigVersion uint64 `json:"config_version"`
	// Firmware is the standby's running firmware version ("" unknown).
	Firmware string `json:"firmware,omitempty"`
}

// Start modes.
const (
	modeChanges  = "changes"  // changes after the hello's Seq follow
	modeSnapshot = "snapshot" // a snapshot follows, then changes after it
	// modeMerge: the standby's log diverged from the active's. The standby
	// sends a snapshot of its store (chunks and end, standby → active); the
	// active merges it into its own, then goes on as in modeSnapshot.
	modeMerge = "merge"
)

// start is the active's answer to hello.
type start struct {
	Proto int    `json:"proto"`
	Node  string `json:"node"`
	Mode  string `json:"mode"`
	Seq   uint64 `json:"seq"` // the active's store sequence when it answered
	// Firmware is the active's running firmware version ("" unknown).
	Firmware string `json:"firmware,omitempty"`
}

// heartbeat keeps the link alive and tells the standby how far the active is.
type heartbeat struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Offer is the update bundle a rolling update offers the standby.
	Offer *Offer `json:"offer,omitempty"`
}

var errFrameTooLarge = errors.New("frame too large")

// writeFrame writes one frame in a single Write call.
func writeFrame(w io.Writer, typ byte, payload []byte) error {
	if len(payload)+1 > maxFrame {
		return fmt.Errorf("writing frame type %d: %d bytes: %w", typ, len(payload), errFrameTooLarge)
	}
	buf := make([]byte, 5, 5+len(payload))
	binary.BigEndian.PutUint32(buf, uint32(len(payload)+1))
	buf[4] = typ
	buf = append(buf, payload...)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("writing frame type %d: %w", typ, err)
	}
	return nil
}

// writeJSON writes a frame whose payload is v as JSON.
func writeJSON(w io.Writer, typ byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding frame type %d: %w", typ, err)
	}
	return writeFrame(w, typ, b)
}

// writeSeq writes an ack or restored frame.
func writeSeq(w io.Writer, typ byte, seq uint64) error {
	return writeFrame(w, typ, binary.BigEndian.AppendUint64(nil, seq))
}

// readFrame reads one frame. A truncated frame is io.ErrUnexpectedEOF; a
// clean end before a frame starts is io.EOF.
func readFrame(r io.Reader) (typ byte, payload []byte, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return 0, nil, errors.New("reading frame: empty frame")
	}
	if n > maxFrame {
		return 0, nil, fmt.Errorf("reading frame: %d bytes: %w", n, errFrameTooLarge)
	}
	// Grow the buffer as data arrives rather than trust the length.
	buf, err := io.ReadAll(io.LimitReader(r, int64(n)))
	if err == nil && len(buf) < int(n) {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return 0, nil, fmt.Errorf("reading frame of %d bytes: %w", n, err)
	}
	return buf[0], buf[1:], nil
}

// decodeSeq decodes an ack or restored payload.
func decodeSeq(p []byte) (uint64, error) {
	if len(p) != 8 {
		return 0, fmt.Errorf("sequence payload of %d bytes, want 8", len(p))
	}
	return binary.BigEndian.Uint64(p), nil
}

// decodeChanges decodes a changes payload and checks that it is a
// non-empty run of consecutive sequence numbers.
func decodeChanges(p []byte) ([]store.Change, error) {
	var cs []store.Change
	if err := json.Unmarshal(p, &cs); err != nil {
		return nil, fmt.Errorf("decoding changes: %w", err)
	}
	if len(cs) == 0 {
		return nil, errors.New("decoding changes: empty batch")
	}
	for i := 1; i < len(cs); i++ {
		if cs[i].Seq != cs[i-1].Seq+1 {
			return nil, fmt.Errorf("decoding changes: change %d follows %d", cs[i].Seq, cs[i-1].Seq)
		}
	}
	if cs[0].Seq == 0 {
		return nil, errors.New("decoding changes: sequence 0")
	}
	return cs, nil
}

// changeSum is a checksum of what a change writes, the same on both twins
// when they hold the same change under the same sequence number.
func changeSum(c store.Change) string {
	if c.Delete {
		c.Value = nil
	}
	b, _ := json.Marshal(c) // a struct of strings, bytes and numbers: cannot fail
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:16])
}

// lastSum returns the checksum of change seq in st's log, or "" when the
// log does not hold it.
func lastSum(st *store.Store, seq uint64) string {
	if seq == 0 {
		return ""
	}
	cs, err := st.ChangesSince(seq-1, 1)
	if err != nil || len(cs) != 1 || cs[0].Seq != seq {
		return ""
	}
	return changeSum(cs[0])
}

// snapshotWriter cuts what store.Snapshot writes into chunk frames.
type snapshotWriter struct{ w io.Writer }

func (s snapshotWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		c := min(len(p), snapChunk)
		if err := writeFrame(s.w, msgSnapChunk, p[:c]); err != nil {
			return n, err
		}
		n += c
		p = p[c:]
	}
	return n, nil
}

// snapshotReader gives the data of chunk frames read from r up to the
// snapshot end frame, which reads as io.EOF. Any other frame is an error.
type snapshotReader struct {
	r    io.Reader
	buf  []byte
	done bool
	// onFrame is called after each frame (to push read deadlines on).
	onFrame func()
}

func (s *snapshotReader) Read(p []byte) (int, error) {
	for len(s.buf) == 0 {
		if s.done {
			return 0, io.EOF
		}
		typ, payload, err := readFrame(s.r)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, fmt.Errorf("reading snapshot: %w", err)
		}
		if s.onFrame != nil {
			s.onFrame()
		}
		switch typ {
		case msgSnapChunk:
			s.buf = payload
		case msgSnapEnd:
			s.done = true
		case msgError:
			return 0, fmt.Errorf("reading snapshot: the active gave up: %s", clip(payload))
		default:
			return 0, fmt.Errorf("reading snapshot: unexpected frame type %d", typ)
		}
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}

// drain reads to the snapshot end frame, so the stream stays in step when
// the store refused the snapshot before reading all of it.
func (s *snapshotReader) drain() error {
	_, err := io.Copy(io.Discard, s)
	return err
}

// clip shortens peer-supplied text for logs and errors.
func clip(b []byte) string {
	const max = 200
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}
