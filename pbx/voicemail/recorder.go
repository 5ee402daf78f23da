package voicemail

import (
	"bytes"
	"maps"
	"slices"
	"time"

	"github.com/pion/rtp"
)

// Recorder assembles a message from the caller's RTP audio. Packets are
// placed by their RTP timestamp, so late and reordered packets land where
// they belong, duplicates overwrite themselves, and gaps (lost packets,
// silence suppression) become silence. Packets of another SSRC than the
// first, of a payload type other than the first audio one, or too far
// from the first are ignored. A Recorder is not safe for concurrent use.
type Recorder struct {
	max   int // samples
	codec Codec
	ssrc  uint32
	base  uint32 // timestamp of the first packet
	start bool
	// lo and hi bound the samples kept, relative to base; lo may be
	// negative when a packet older than the first arrives late.
	lo, hi int
	// frames holds the payloads by their offset from base: memory grows
	// with the audio received, not with the longest message allowed.
	frames map[int][]byte
	// stored is the bytes held in frames, at most max: packets that
	// overlap (timestamps closer than their length) cannot pile up.
	stored int
}

// NewRecorder returns a recorder that keeps at most maxLen of audio.
func NewRecorder(maxLen time.Duration) *Recorder {
	n := max(int(maxLen/time.Millisecond)*8, 160)
	return &Recorder{max: n, frames: map[int][]byte{}}
}

// Add takes one RTP packet. It reports full once maxLen of audio lies
// between the first and the latest sample: time to stop recording.
func (r *Recorder) Add(p *rtp.Packet) (full bool) {
	c, ok := codecOf(p.PayloadType)
	if !ok || len(p.Payload) == 0 || len(p.Payload) > r.max {
		return r.full()
	}
	if !r.start {
		r.start, r.codec, r.ssrc, r.base = true, c, p.SSRC, p.Timestamp
		r.lo, r.hi = 0, 0
	}
	if p.SSRC != r.ssrc || c != r.codec {
		return r.full()
	}
	off := int(int32(p.Timestamp - r.base))
	end := off + len(p.Payload)
	lo, hi := off, end
	if len(r.frames) > 0 {
		lo, hi = min(r.lo, off), max(r.hi, end)
	}
	// Keep the message within max samples in all: a packet that would
	// stretch it beyond is dropped (a timestamp jump, or the end).
	if hi-lo > r.max {
		return r.full()
	}
	// A stream whose packets do not overlap holds at most hi-lo bytes;
	// more means overlapping packets, which must not fill the memory.
	grow := len(p.Payload) - len(r.frames[off])
	if r.stored+grow > r.max {
		return r.full()
	}
	r.stored += grow
	r.lo, r.hi = lo, hi
	r.frames[off] = append([]byte(nil), p.Payload...)
	return r.full()
}

func (r *Recorder) full() bool { return r.hi-r.lo >= r.max }

// Codec is the codec of the recording (empty before the first packet).
func (r *Recorder) Codec() Codec { return r.codec }

// Duration is the length of the audio so far.
func (r *Recorder) Duration() time.Duration {
	return time.Duration(r.hi-r.lo) * time.Second / 8000
}

// Audio returns the samples from the first to the last, gaps filled with
// silence. Where packets overlap, the later timestamp wins.
func (r *Recorder) Audio() []byte { return r.fill(r.lo, r.hi) }

// since returns the samples from off (an offset from the first packet's
// timestamp; from the first sample kept when all is set) to the last,
// and the offset after them: what a message being saved in parts has not
// saved yet. Samples that arrive late, before off, are not in any part.
func (r *Recorder) since(off int, all bool) ([]byte, int) {
	if all || off < r.lo {
		off = r.lo
	}
	if off >= r.hi {
		return nil, off
	}
	return r.fill(off, r.hi), r.hi
}

// fill returns the samples from lo to hi (offsets from base), gaps
// filled with silence.
func (r *Recorder) fill(lo, hi int) []byte {
	if hi <= lo {
		return nil
	}
	out := bytes.Repeat([]byte{r.codec.Silence()}, hi-lo)
	offs := slices.Sorted(maps.Keys(r.frames))
	for _, off := range offs {
		f := r.frames[off]
		if off+len(f) <= lo || off >= hi {
			continue
		}
		if off < lo {
			f, off = f[lo-off:], lo
		}
		copy(out[off-lo:], f)
	}
	return out
}

// origin is what places the stream's packets in the message: the SSRC
// and timestamp of its first packet, and the offset from that timestamp
// of the first sample kept; ok is false before the first packet.
func (r *Recorder) origin() (ssrc, base uint32, lo int, ok bool) {
	return r.ssrc, r.base, r.lo, r.start
}

// resumeRecorder returns a recorder that goes on with a message another
// recorder (of the box that died) began: audio holds its samples from
// offset lo of the stream with ssrc and base, as origin reported them;
// the caller's later packets land after them by their timestamps, the
// gap between filled with silence.
func resumeRecorder(maxLen time.Duration, c Codec, ssrc, base uint32, lo int, audio []byte) *Recorder {
	r := NewRecorder(maxLen)
	r.start, r.codec, r.ssrc, r.base = true, c, ssrc, base
	r.lo, r.hi = lo, lo
	if n := min(len(audio), r.max); n > 0 {
		r.frames[lo] = append([]byte(nil), audio[:n]...)
		r.hi, r.stored = lo+n, n
	}
	return r
}
