package e2e

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"testing"
)

// writeWAV writes 16-bit mono PCM samples as a WAV file.
func writeWAV(w io.Writer, rate int, samples []int16) error {
	data := 2 * len(samples)
	hdr := struct {
		RIFF     [4]byte
		Size     uint32
		WAVE     [4]byte
		Fmt      [4]byte
		FmtSize  uint32
		Format   uint16
		Channels uint16
		Rate     uint32
		ByteRate uint32
		Align    uint16
		Bits     uint16
		Data     [4]byte
		DataSize uint32
	}{
		[4]byte{'R', 'I', 'F', 'F'}, uint32(36 + data), [4]byte{'W', 'A', 'V', 'E'},
		[4]byte{'f', 'm', 't', ' '}, 16, 1, 1, uint32(rate), uint32(2 * rate), 2, 16,
		[4]byte{'d', 'a', 't', 'a'}, uint32(data),
	}
	if err := binary.Write(w, binary.LittleEndian, hdr); err != nil {
		return fmt.Errorf("writing WAV header: %w", err)
	}
	if err := binary.Write(w, binary.LittleEndian, samples); err != nil {
		return fmt.Errorf("writing WAV samples: %w", err)
	}
	return nil
}

// toneWAV writes secs seconds of a sine of freq Hz at half scale, 8 kHz
// mono, the format baresip's aufile source takes.
func toneWAV(t *testing.T, path string, freq float64, secs int) {
	t.Helper()
	const rate = 8000
	s := make([]int16, rate*secs)
	for i := range s {
		s[i] = int16(16000 * math.Sin(2*math.Pi*freq*float64(i)/rate))
	}
	var b bytes.Buffer
	if err := writeWAV(&b, rate, s); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatalf("writing the tone file: %v", err)
	}
}

// readWAV reads a mono 16-bit PCM WAV file. A data chunk longer than the
// file (a recorder killed before it fixed the header) is cut to what is
// there.
func readWAV(b []byte) (rate int, samples []int16, err error) {
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return 0, nil, errors.New("not a RIFF/WAVE file")
	}
	var gotFmt bool
	for off := 12; off+8 <= len(b); {
		id := string(b[off : off+4])
		size := int(binary.LittleEndian.Uint32(b[off+4 : off+8]))
		off += 8
		if size < 0 || size > len(b)-off {
			if id != "data" {
				return 0, nil, fmt.Errorf("WAV chunk %q of %d bytes runs past the end", id, size)
			}
			size = len(b) - off
		}
		body := b[off : off+size]
		switch id {
		case "fmt ":
			if size < 16 {
				return 0, nil, fmt.Errorf("WAV fmt chunk of %d bytes, want 16 or more", size)
			}
			format := binary.LittleEndian.Uint16(body[0:2])
			channels := binary.LittleEndian.Uint16(body[2:4])
			rate = int(binary.LittleEndian.Uint32(body[4:8]))
			bits := binary.LittleEndian.Uint16(body[14:16])
			if format != 1 || channels != 1 || bits != 16 || rate <= 0 {
				return 0, nil, fmt.Errorf("WAV format %d, %d channels, %d bits, %d Hz: want PCM, mono, 16 bits", format, channels, bits, rate)
			}
			gotFmt = true
		case "data":
			if !gotFmt {
				return 0, nil, errors.New("WAV data chunk before the fmt chunk")
			}
			samples = make([]int16, size/2)
			for i := range samples {
				samples[i] = int16(binary.LittleEndian.Uint16(body[2*i:]))
			}
			return rate, samples, nil
		}
		off += size + size%2 // chunks are padded to even sizes
	}
	return 0, nil, errors.New("WAV file without a data chunk")
}

// toneWindow is the length of the windows toneSeconds looks at.
const toneWindow = 0.1 // seconds

// toneSeconds returns how many seconds of the samples hold a tone of freq
// Hz: windows of 100 ms count when a Goertzel filter at freq holds at least
// half of the window's energy and the window is not near silence.
func toneSeconds(samples []int16, rate int, freq float64) float64 {
	n := int(float64(rate) * toneWindow)
	if n == 0 {
		return 0
	}
	coeff := 2 * math.Cos(2*math.Pi*freq/float64(rate))
	var windows int
	for start := 0; start+n <= len(samples); start += n {
		var s1, s2, energy float64
		for _, v := range samples[start : start+n] {
			x := float64(v)
			energy += x * x
			s0 := x + coeff*s1 - s2
			s2, s1 = s1, s0
		}
		power := s1*s1 + s2*s2 - coeff*s1*s2 // |X(freq)|²
		// For a pure tone, power ≈ energy·n/2.
		rms := math.Sqrt(energy / float64(n))
		if rms > 300 && power >= 0.5*energy*float64(n)/2 {
			windows++
		}
	}
	return float64(windows) * toneWindow
}

func TestToneSeconds(t *testing.T) {
	const rate = 8000
	sine := func(freq float64, secs float64, amp float64) []int16 {
		s := make([]int16, int(rate*secs))
		for i := range s {
			s[i] = int16(amp * math.Sin(2*math.Pi*freq*float64(i)/rate))
		}
		return s
	}
	noise := make([]int16, rate)
	x := uint32(1)
	for i := range noise {
		x = x*1664525 + 1013904223
		noise[i] = int16(x >> 18)
	}
	tests := []struct {
		name    string
		samples []int16
		freq    float64
		min     float64
		max     float64
	}{
		{"1 kHz tone found", sine(1000, 2, 16000), 1000, 1.9, 2.0},
		{"600 Hz is not 1 kHz", sine(600, 2, 16000), 1000, 0, 0},
		{"silence has no tone", make([]int16, 2*rate), 1000, 0, 0},
		{"near silence is not a tone", sine(1000, 1, 100), 1000, 0, 0},
		{"noise has no tone", noise, 1000, 0, 0},
		{"tone after silence", append(make([]int16, rate), sine(1000, 1, 8000)...), 1000, 0.9, 1.0},
		{"too short for a window", sine(1000, 0.05, 16000), 1000, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := toneSeconds(tt.samples, rate, tt.freq)
			if got < tt.min-1e-9 || got > tt.max+1e-9 {
				t.Errorf("toneSeconds = %.2f s, want %.2f..%.2f", got, tt.min, tt.max)
			}
		})
	}
}

func TestWAVRoundTrip(t *testing.T) {
	in := []int16{0, 1, -1, 32767, -32768, 1234}
	var b bytes.Buffer
	if err := writeWAV(&b, 8000, in); err != nil {
		t.Fatal(err)
	}
	rate, out, err := readWAV(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if rate != 8000 || fmt.Sprint(out) != fmt.Sprint(in) {
		t.Errorf("got %d Hz %v, want 8000 Hz %v", rate, out, in)
	}
}

func TestReadWAVErrors(t *testing.T) {
	var good bytes.Buffer
	if err := writeWAV(&good, 8000, []int16{1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	g := good.Bytes()
	stereo := bytes.Clone(g)
	stereo[22] = 2
	truncated := g[:len(g)-3] // data chunk claims more than is there
	tests := []struct {
		name    string
		in      []byte
		wantErr bool
		samples int
	}{
		{"empty", nil, true, 0},
		{"not RIFF", []byte("RIFX0000WAVEfmt "), true, 0},
		{"header only", g[:12], true, 0},
		{"stereo", stereo, true, 0},
		{"data cut short", truncated, false, 2},
		{"fmt chunk runs past the end", append(bytes.Clone(g[:12]), 'f', 'm', 't', ' ', 0xff, 0xff, 0, 0), true, 0},
		{"good", g, false, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, s, err := readWAV(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tt.wantErr)
			}
			if len(s) != tt.samples {
				t.Errorf("%d samples, want %d", len(s), tt.samples)
			}
		})
	}
}

func FuzzReadWAV(f *testing.F) {
	var good bytes.Buffer
	if err := writeWAV(&good, 8000, []int16{1, -2, 300}); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Bytes())
	f.Add([]byte("RIFF\x00\x00\x00\x00WAVE"))
	f.Add([]byte("RIFF\x24\x00\x00\x00WAVEdata\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rate, s, err := readWAV(b)
		if err != nil {
			return
		}
		if rate <= 0 || 2*len(s) > len(b) {
			t.Fatalf("accepted %d bytes as %d Hz, %d samples", len(b), rate, len(s))
		}
		toneSeconds(s, rate, 1000)
	})
}
