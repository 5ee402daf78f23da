package exchange

import (
	"math"
	"time"

	"github.com/twinpbx/twinpbx/hw/isdn/g711"
)

// SampleRate is the B channel's: 8000 samples a second.
const SampleRate = 8000

// Tone is a sine with an on/off cadence; Off 0 plays it continuously.
type Tone struct {
	Freq    float64
	On, Off time.Duration
}

// The tones of the exchange (425 Hz, as in most of Europe).
var (
	DialTone = Tone{Freq: 425}
	RingTone = Tone{Freq: 425, On: time.Second, Off: 4 * time.Second}
	BusyTone = Tone{Freq: 425, On: 480 * time.Millisecond, Off: 480 * time.Millisecond}
)

// level is the tone's amplitude: about -10 dBm0.
const level = 0.3 * math.MaxInt16

// Fill writes A-law samples of t into buf, the first being sample number
// start since the tone began.
func (t Tone) Fill(buf []byte, start int) {
	on := int(t.On * SampleRate / time.Second)
	period := on + int(t.Off*SampleRate/time.Second)
	for i := range buf {
		n := start + i
		if t.Off > 0 && n%period >= on {
			buf[i] = g711.ALawSilence
			continue
		}
		buf[i] = g711.EncodeALaw(int16(level * math.Sin(2*math.Pi*t.Freq*float64(n)/SampleRate)))
	}
}

// Share returns how much of the energy of A-law audio lies at freq, from 0
// to 1 (Goertzel filter over the whole buffer): near 1 for a clean tone of
// that frequency, near 0 for silence or another frequency.
func Share(alaw []byte, freq float64) float64 {
	if len(alaw) == 0 {
		return 0
	}
	k := 2 * math.Cos(2*math.Pi*freq/SampleRate)
	var s1, s2, total float64
	for _, c := range alaw {
		x := float64(g711.DecodeALaw(c))
		total += x * x
		s1, s2 = x+k*s1-s2, s1
	}
	if total == 0 {
		return 0
	}
	power := s1*s1 + s2*s2 - k*s1*s2
	// A pure tone over N samples gives power N²A²/4 and total N·A²/2.
	return math.Min(1, 2*power/(float64(len(alaw))*total))
}
