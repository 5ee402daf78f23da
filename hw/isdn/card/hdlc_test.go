package card

import (
	"bytes"
	"errors"
	"testing"
)

func TestCRC16X25(t *testing.T) {
	tests := []struct {
		in   string
		want uint16
	}{
		{"123456789", 0x906e}, // the catalogued check value of CRC-16/X.25
		{"", 0x0000},
		{"\x01\x02", 0x358d}, // bitwise reference implementation
	}
	for _, tt := range tests {
		if got := CRC16X25([]byte(tt.in)); got != tt.want {
			t.Errorf("CRC16X25(%q) = %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
}

func TestAppendFrame(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		want    []byte
	}{
		// FCS of 01 02 is 0x358d, sent low octet first.
		{"plain", []byte{1, 2}, []byte{0x7e, 1, 2, 0x8d, 0x35, 0x7e}},
		{"flag and escape inside", []byte{0x7e, 0x7d}, nil},
	}
	for _, tt := range tests {
		got := AppendFrame(nil, tt.payload)
		if tt.want != nil && !bytes.Equal(got, tt.want) {
			t.Errorf("%s: % x, want % x", tt.name, got, tt.want)
		}
		if bytes.Count(got, []byte{flag}) != 2 || got[0] != flag || got[len(got)-1] != flag {
			t.Errorf("%s: % x has flags inside", tt.name, got)
		}
	}
	if got := AppendFrame(nil, []byte{0x7e, 0x7d}); !bytes.HasPrefix(got, []byte{0x7e, 0x7d, 0x5e, 0x7d, 0x5d}) {
		t.Errorf("escaping: % x", got)
	}
}

type fed struct {
	frames [][]byte
	errs   []error
}

func feed(d *Decoder, chunks ...[]byte) fed {
	var f fed
	for _, c := range chunks {
		d.Feed(c, func(p []byte) { f.frames = append(f.frames, append([]byte(nil), p...)) },
			func(err error) { f.errs = append(f.errs, err) })
	}
	return f
}

func TestDecoder(t *testing.T) {
	good := AppendFrame(nil, []byte{0x7e, 1, 0x7d, 2})
	corrupt := append([]byte(nil), good...)
	corrupt[3] ^= 0x01
	long := AppendFrame(nil, make([]byte, MaxPayload+1))
	tests := []struct {
		name   string
		chunks [][]byte
		frames int
		errs   []error
	}{
		{"one frame", [][]byte{good}, 1, nil},
		{"byte by byte", splitBytes(good), 1, nil},
		{"back to back, shared flag", [][]byte{good, good[1:]}, 2, nil},
		{"idle flags", [][]byte{{flag, flag, flag}, good, {flag, flag}}, 1, nil},
		{"bad FCS", [][]byte{corrupt, good}, 1, []error{ErrBadFCS}},
		{"abort", [][]byte{{flag, 1, 2, 3, escape, flag}, good}, 1, []error{ErrAbort}},
		{"too short", [][]byte{{flag, 1, 2, flag}, good}, 1, []error{ErrTooShort}},
		{"too long", [][]byte{long, good}, 1, []error{ErrTooLong}},
		{"noise before the first flag", [][]byte{{1, 2, 3, 4}, good}, 1, []error{ErrBadFCS}},
		{"unfinished", [][]byte{good[:len(good)-1]}, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Decoder
			f := feed(&d, tt.chunks...)
			if len(f.frames) != tt.frames {
				t.Errorf("%d frames %x, want %d", len(f.frames), f.frames, tt.frames)
			}
			for _, fr := range f.frames {
				if !bytes.Equal(fr, []byte{0x7e, 1, 0x7d, 2}) {
					t.Errorf("frame % x", fr)
				}
			}
			if len(f.errs) != len(tt.errs) {
				t.Fatalf("errors %v, want %v", f.errs, tt.errs)
			}
			for i := range f.errs {
				if !errors.Is(f.errs[i], tt.errs[i]) {
					t.Errorf("error %d: %v, want %v", i, f.errs[i], tt.errs[i])
				}
			}
		})
	}
}

func splitBytes(b []byte) [][]byte {
	var out [][]byte
	for i := range b {
		out = append(out, b[i:i+1])
	}
	return out
}

// FuzzDecoder feeds arbitrary bytes, split at an arbitrary point: the
// decoder must not panic, and every frame it accepts must come back
// unchanged through AppendFrame and a fresh decoder.
func FuzzDecoder(f *testing.F) {
	f.Add(AppendFrame(nil, []byte{1, 2, 3}), uint8(2))
	f.Add(AppendFrame(AppendFrame(nil, []byte{0x7e, 0x7d}), []byte{4}), uint8(5))
	f.Add([]byte{flag, escape, flag, 1, 2, 3, flag}, uint8(0))
	f.Fuzz(func(t *testing.T, b []byte, cut uint8) {
		c := min(int(cut), len(b))
		var d Decoder
		got := feed(&d, b[:c], b[c:])
		for _, fr := range got.frames {
			if len(fr) > MaxPayload {
				t.Fatalf("frame of %d octets accepted", len(fr))
			}
			var d2 Decoder
			again := feed(&d2, AppendFrame(nil, fr))
			if len(again.frames) != 1 || !bytes.Equal(again.frames[0], fr) || len(again.errs) != 0 {
				t.Fatalf("frame % x did not round-trip: %v", fr, again)
			}
		}
	})
}

// BenchmarkFraming frames and deframes 20 ms of audio of one B channel
// (one record of 160 samples plus its header), the unit a BRI card sends
// 100 times a second.
func BenchmarkFraming(b *testing.B) {
	rec, err := Record{Kind: Audio, Channel: 1, Data: bytes.Repeat([]byte{0xd5, 0x7e, 0x54, 0x7d}, 40)}.Append(nil)
	if err != nil {
		b.Fatal(err)
	}
	var d Decoder
	var buf []byte
	n := 0
	b.SetBytes(int64(len(rec)))
	for b.Loop() {
		buf = AppendFrame(buf[:0], rec)
		d.Feed(buf, func([]byte) { n++ }, func(err error) { b.Fatal(err) })
	}
	if n == 0 {
		b.Fatal("no frame decoded")
	}
}
