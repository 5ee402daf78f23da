package card

import (
	"errors"
	"fmt"
)

// Async-HDLC framing (as PPP uses it on serial lines, RFC 1662): every
// frame is closed by a flag octet; a flag or escape octet inside the frame
// is sent as the escape octet followed by the octet XOR 0x20; the frame ends
// with its FCS, CRC-16/X.25 of the unescaped contents, low octet first.
const (
	flag   = 0x7e
	escape = 0x7d
	xorBit = 0x20
)

// MaxPayload bounds a frame's contents (without FCS): a LAPD frame of N201
// 260 octets or 20 ms of audio fit with room to spare.
const MaxPayload = 2048

// Deframing errors. A frame that fails is dropped; the decoder resumes at
// the next flag.
var (
	ErrBadFCS   = errors.New("hdlc: frame check sequence does not match")
	ErrTooLong  = errors.New("hdlc: frame longer than the maximum")
	ErrAbort    = errors.New("hdlc: frame aborted (escape before flag)")
	ErrTooShort = errors.New("hdlc: frame shorter than its check sequence")
)

// crcTable is CRC-16/X.25 (reflected polynomial 0x8408).
var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0x8408
			} else {
				c >>= 1
			}
		}
		t[i] = c
	}
	return t
}()

// CRC16X25 returns the CRC-16/X.25 of b (init 0xFFFF, final XOR 0xFFFF):
// the FCS that closes each frame.
func CRC16X25(b []byte) uint16 { return ^crcUpdate(0xffff, b) }

func crcUpdate(c uint16, b []byte) uint16 {
	for _, o := range b {
		c = c>>8 ^ crcTable[byte(c)^o]
	}
	return c
}

// goodResidue is what the running CRC over contents plus their FCS comes
// to when nothing was corrupted.
const goodResidue = 0xf0b8

// AppendFrame appends payload as one frame: opening flag, escaped contents
// and FCS, closing flag.
func AppendFrame(dst, payload []byte) []byte {
	fcs := CRC16X25(payload)
	dst = append(dst, flag)
	dst = appendEscaped(dst, payload)
	dst = appendEscaped(dst, []byte{byte(fcs), byte(fcs >> 8)})
	return append(dst, flag)
}

func appendEscaped(dst, b []byte) []byte {
	for _, o := range b {
		if o == flag || o == escape {
			dst = append(dst, escape, o^xorBit)
		} else {
			dst = append(dst, o)
		}
	}
	return dst
}

// Decoder splits a byte stream into frames. It keeps the partial frame
// between calls, so it may be fed whatever a read returned. Not safe for
// concurrent use.
type Decoder struct {
	buf  []byte
	esc  bool
	skip bool // discarding until the next flag (after an error)
}

// Feed consumes p and calls frame with the contents (FCS removed) of every
// good frame completed in it, and bad with the reason for every frame
// dropped. The slice passed to frame is reused afterwards: copy it to keep
// it. Empty frames (two flags in a row) are idle fill and reported to
// neither.
func (d *Decoder) Feed(p []byte, frame func([]byte), bad func(error)) {
	for _, o := range p {
		switch {
		case o == flag:
			if d.esc {
				bad(ErrAbort)
			} else if !d.skip && len(d.buf) > 0 {
				d.finish(frame, bad)
			}
			d.buf, d.esc, d.skip = d.buf[:0], false, false
		case d.skip:
		case o == escape && !d.esc:
			d.esc = true
		default:
			if d.esc {
				o ^= xorBit
				d.esc = false
			}
			if len(d.buf) >= MaxPayload+2 {
				bad(fmt.Errorf("%w (%d octets)", ErrTooLong, MaxPayload))
				d.buf, d.skip = d.buf[:0], true
				continue
			}
			d.buf = append(d.buf, o)
		}
	}
}

func (d *Decoder) finish(frame func([]byte), bad func(error)) {
	switch {
	case len(d.buf) < 3:
		bad(fmt.Errorf("%w: %d octets", ErrTooShort, len(d.buf)))
	case crcUpdate(0xffff, d.buf) != goodResidue:
		bad(ErrBadFCS)
	default:
		frame(d.buf[:len(d.buf)-2])
	}
}
