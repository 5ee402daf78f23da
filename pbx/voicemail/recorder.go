package voicemail

import (
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
	// lo and hi bound the samples written, relative to base; lo may be
	// negative when a packet older than the first arrives late.
	lo, hi int
	// buf holds the samples from -max to +max around base; the message is
	// at most max long, so nothing kept lies outside.
	buf     []byte
	written []bool
	packets int
}

// NewRecorder returns a recorder that keeps at most maxLen of audio.
func NewRecorder(maxLen time.Duration) *Recorder {
	n := max(int(maxLen/time.Millisecond)*8, 160)
	return &Recorder{max: n}
}

// Add takes one RTP packet. It reports full once maxLen of audio lies
// between the first and the latest sample: time to stop recording.
func (r *Recorder) Add(p *rtp.Packet) (full bool) {
	c, ok := codecOf(p.PayloadType)
	if !ok || len(p.Payload) == 0 {
		return r.full()
	}
	if !r.start {
		r.start, r.codec, r.ssrc, r.base = true, c, p.SSRC, p.Timestamp
		r.buf = make([]byte, 2*r.max)
		r.written = make([]bool, 2*r.max)
	}
	if p.SSRC != r.ssrc || c != r.codec {
		return r.full()
	}
	off := int(int32(p.Timestamp - r.base))
	for i, b := range p.Payload {
		at := off + i
		// Keep the message within max samples in all.
		if at < r.hi-r.max || at >= r.lo+r.max || at < -r.max || at >= r.max {
			continue
		}
		if r.hi == r.lo {
			r.lo, r.hi = at, at+1
		}
		r.lo, r.hi = min(r.lo, at), max(r.hi, at+1)
		r.buf[at+r.max] = b
		r.written[at+r.max] = true
	}
	r.packets++
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
// silence.
func (r *Recorder) Audio() []byte {
	if r.hi == r.lo {
		return nil
	}
	out := make([]byte, r.hi-r.lo)
	for i := range out {
		j := r.lo + i + r.max
		if r.written[j] {
			out[i] = r.buf[j]
		} else {
			out[i] = r.codec.Silence()
		}
	}
	return out
}
