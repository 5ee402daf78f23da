package voicemail

import "math"

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
		return 0xD5
	}
	return 0xFF
}

// Encode turns one 16-bit linear sample into c.
func (c Codec) Encode(s int16) byte {
	if c == PCMA {
		return alaw(s)
	}
	return ulaw(s)
}

// ulaw encodes a sample in μ-law (ITU-T G.711): bias, find the segment,
// keep four mantissa bits, invert.
func ulaw(s int16) byte {
	const bias, clip = 0x84, 32635
	x := int(s)
	sign := 0
	if x < 0 {
		x, sign = -x, 0x80
	}
	x = min(x, clip) + bias
	exp := 7
	for mask := 0x4000; x&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (x >> (exp + 3)) & 0x0F
	return ^byte(sign | exp<<4 | mant)
}

// alaw encodes a sample in A-law (ITU-T G.711), even bits inverted.
func alaw(s int16) byte {
	x := int(s) >> 3 // A-law works on 13 bits
	sign := 0x80
	if x < 0 {
		x, sign = -x-1, 0
	}
	x = min(x, 0xFFF)
	var b int
	if x < 32 {
		b = x >> 1
	} else {
		exp := 1
		for v := x >> 5; v > 1; v >>= 1 {
			exp++
		}
		b = exp<<4 | (x>>exp)&0x0F
	}
	return byte(sign|b) ^ 0x55
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

// Decode turns one sample of c into 16-bit linear.
func (c Codec) Decode(b byte) int16 {
	if c == PCMA {
		b ^= 0x55
		mant := int(b & 0x0F)
		exp := int(b>>4) & 0x07
		var v int
		if exp == 0 {
			v = mant<<4 + 8
		} else {
			v = (mant<<4 + 0x108) << (exp - 1)
		}
		if b&0x80 == 0 {
			v = -v
		}
		return int16(v)
	}
	b = ^b
	exp := int(b>>4) & 0x07
	mant := int(b & 0x0F)
	v := ((mant<<3 + 0x84) << exp) - 0x84
	if b&0x80 != 0 {
		v = -v
	}
	return int16(v)
}

// transcode converts audio from one law to the other.
func transcode(audio []byte, from, to Codec) []byte {
	if from == to {
		return audio
	}
	out := make([]byte, len(audio))
	for i, b := range audio {
		out[i] = to.Encode(from.Decode(b))
	}
	return out
}

// Prompt asks for keys (a mailbox number, a PIN): two low pips.
func Prompt(c Codec) []byte {
	b := tone(nil, c, 150, 520)
	b = tone(b, c, 100)
	b = tone(b, c, 150, 520)
	return tone(b, c, 200)
}
