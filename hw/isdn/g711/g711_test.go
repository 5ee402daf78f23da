package g711

import (
	"math"
	"testing"
)

func TestKnownCodes(t *testing.T) {
	tests := []struct {
		name string
		got  int
		want int
	}{
		{"A-law of 0", int(EncodeALaw(0)), ALawSilence},
		{"A-law of -1", int(EncodeALaw(-1)), 0x55},
		{"A-law of max", int(EncodeALaw(math.MaxInt16)), 0xaa},
		{"A-law of min", int(EncodeALaw(math.MinInt16)), 0x2a},
		{"A-law 0xd5", int(DecodeALaw(0xd5)), 8},
		{"A-law 0x55", int(DecodeALaw(0x55)), -8},
		{"A-law 0xaa", int(DecodeALaw(0xaa)), 32256},
		{"µ-law of 0", int(EncodeULaw(0)), ULawSilence},
		{"µ-law of max", int(EncodeULaw(math.MaxInt16)), 0x80},
		{"µ-law of min", int(EncodeULaw(math.MinInt16)), 0x00},
		{"µ-law 0x80", int(DecodeULaw(0x80)), 32124},
		{"µ-law 0x00", int(DecodeULaw(0x00)), -32124},
		{"µ-law 0xff", int(DecodeULaw(0xff)), 0},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %#x, want %#x", tt.name, tt.got, tt.want)
		}
	}
}

// Every code decodes to a value that encodes back to the same code
// (µ-law's negative zero 0x7f excepted: it decodes to 0, which is 0xff).
func TestRoundTrip(t *testing.T) {
	for c := range 256 {
		if got := EncodeALaw(DecodeALaw(byte(c))); got != byte(c) {
			t.Errorf("A-law %#02x -> %d -> %#02x", c, DecodeALaw(byte(c)), got)
		}
		if c == 0x7f {
			continue
		}
		if got := EncodeULaw(DecodeULaw(byte(c))); got != byte(c) {
			t.Errorf("µ-law %#02x -> %d -> %#02x", c, DecodeULaw(byte(c)), got)
		}
	}
}

// The error of encoding stays within half the law's step size plus the
// truncation to 13 or 14 bits: under 4% of the value, 32 near zero.
func TestQuantisationError(t *testing.T) {
	for s := math.MinInt16; s <= math.MaxInt16; s += 7 {
		for _, law := range []struct {
			name string
			enc  func(int16) byte
			dec  func(byte) int16
		}{{"A-law", EncodeALaw, DecodeALaw}, {"µ-law", EncodeULaw, DecodeULaw}} {
			back := int(law.dec(law.enc(int16(s))))
			if diff := math.Abs(float64(back - s)); diff > math.Max(32, math.Abs(float64(s))*0.04) {
				t.Fatalf("%s: %d comes back as %d", law.name, s, back)
			}
		}
	}
}

func TestTranscode(t *testing.T) {
	src := []byte{ALawSilence, EncodeALaw(1000), EncodeALaw(-20000)}
	u := ALawToULaw(make([]byte, 3), src)
	if DecodeULaw(u[0]) != DecodeALaw(ALawSilence) {
		t.Errorf("A-law silence (%d) became µ-law %d", DecodeALaw(ALawSilence), DecodeULaw(u[0]))
	}
	a := ULawToALaw(make([]byte, 3), u)
	for i := range src {
		if d := math.Abs(float64(DecodeALaw(a[i]) - DecodeALaw(src[i]))); d > 0.05*math.Abs(float64(DecodeALaw(src[i])))+16 {
			t.Errorf("sample %d: %d became %d", i, DecodeALaw(src[i]), DecodeALaw(a[i]))
		}
	}
}

// BenchmarkTranscode converts 20 ms of A-law to µ-law, as the gateway does
// for every packet of a PCMU call.
func BenchmarkTranscode(b *testing.B) {
	src := make([]byte, 160)
	for i := range src {
		src[i] = byte(i)
	}
	dst := make([]byte, 160)
	b.SetBytes(160)
	for b.Loop() {
		ALawToULaw(dst, src)
	}
}
