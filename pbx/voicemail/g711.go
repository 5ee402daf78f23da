package voicemail

import (
	"math"

	"github.com/twinpbx/twinpbx/hw/isdn/g711"
)

// Codec is a G.711 law, named as in SDP.
type Codec string

// The two codecs the mailbox answers with.
const (
	PCMU Codec = "PCMU" // μ-law, RTP payload type 0
	PCMA Codec = "PCMA" // A-law, RTP payload type 8
)

// PayloadType is the static RTP payload type of c.
func (c Codec) PayloadType() uint8 {
	if c == PCMA {
		return 8
	}
	return 0
}

// codecOf maps a static payload type to its codec.
func codecOf(pt uint8) (Codec, bool) {
	switch pt {
	case 0:
		return PCMU, true
	case 8:
		return PCMA, true
	}
	return "", false
}

// Silence is the byte that encodes a zero sample in c.
func (c Codec) Silence() byte {
	if c == PCMA {
		return g711.ALawSilence
	}
	return g711.ULawSilence
}

// Encode turns one 16-bit linear sample into c.
func (c Codec) Encode(s int16) byte {
	if c == PCMA {
		return g711.EncodeALaw(s)
	}
	return g711.EncodeULaw(s)
}

// Decode turns one sample of c into 16-bit linear.
func (c Codec) Decode(b byte) int16 {
	if c == PCMA {
		return g711.DecodeALaw(b)
	}
	return g711.DecodeULaw(b)
}

// transcode converts audio from one law to the other.
func transcode(audio []byte, from, to Codec) []byte {
	switch {
	case (from == PCMA) == (to == PCMA):
		return audio
	case to == PCMA:
		return g711.ULawToALaw(make([]byte, len(audio)), audio)
	}
	return g711.ALawToULaw(make([]byte, len(audio)), audio)
}

// tone appends ms milliseconds of the sum of freqs (Hz) at 8 kHz in c.
// No frequencies: silence.
func tone(dst []byte, c Codec, ms int, freqs ...float64) []byte {
	n := ms * 8
	for i := range n {
		var v float64
		for _, f := range freqs {
			v += math.Sin(2 * math.Pi * f * float64(i) / 8000)
		}
		if len(freqs) > 0 {
			v /= float64(len(freqs))
		}
		// About -10 dBm0: loud enough, never clipping.
		dst = append(dst, c.Encode(int16(v*8000)))
	}
	return dst
}

// Greeting is the announcement a caller hears before recording: three
// rising tones, a pause, then the beep. There are no recorded prompts.
func Greeting(c Codec) []byte {
	var b []byte
	for _, f := range []float64{660, 880, 1100} {
		b = tone(b, c, 200, f)
		b = tone(b, c, 60)
	}
	b = tone(b, c, 600)
	return Beep(c, b)
}

// Beep appends the 1 kHz beep that starts a recording.
func Beep(c Codec, dst []byte) []byte {
	dst = tone(dst, c, 400, 1000)
	return tone(dst, c, 100)
}

// CountTones is what the owner hears first: one short 440 Hz pip per new
// message (at most 20), or one low tone when there are none, then a pause.
func CountTones(c Codec, n int) []byte {
	var b []byte
	if n == 0 {
		b = tone(b, c, 700, 300)
	}
	for range min(n, 20) {
		b = tone(b, c, 120, 440)
		b = tone(b, c, 200)
	}
	return tone(b, c, 600)
}

// Separator is played between messages: two short high pips.
func Separator(c Codec) []byte {
	b := tone(nil, c, 300)
	b = tone(b, c, 80, 1400)
	b = tone(b, c, 80)
	b = tone(b, c, 80, 1400)
	return tone(b, c, 400)
}

// Goodbye is played when the mailbox has nothing more: a falling pair.
func Goodbye(c Codec) []byte {
	b := tone(nil, c, 250, 880)
	b = tone(b, c, 250, 660)
	return tone(b, c, 200)
}

// Busy is the busy tone (425 Hz, 480 ms on, 480 ms off) for 3 s: what a
// caller hears when the mailbox is full.
func Busy(c Codec) []byte {
	var b []byte
	for range 3 {
		b = tone(b, c, 480, 425)
		b = tone(b, c, 480)
	}
	return b
}

// Prompt asks for keys (a mailbox number, a PIN): two low pips.
func Prompt(c Codec) []byte {
	b := tone(nil, c, 150, 520)
	b = tone(b, c, 100)
	b = tone(b, c, 150, 520)
	return tone(b, c, 200)
}
