package voicemail

import (
	"bytes"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// pkt is a 20 ms PCMU packet whose samples all hold fill.
func pkt(seq uint16, ts uint32, fill byte) *rtp.Packet {
	return &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: ts, SSRC: 7}, Payload: bytes.Repeat([]byte{fill}, 160)}
}

func TestRecorder(t *testing.T) {
	tests := []struct {
		name    string
		max     time.Duration
		packets []*rtp.Packet
		want    []byte // per 160-sample frame, the fill byte
		full    bool
	}{
		{name: "in order", max: time.Second, packets: []*rtp.Packet{pkt(1, 1000, 1), pkt(2, 1160, 2), pkt(3, 1320, 3)}, want: []byte{1, 2, 3}},
		{name: "reordered", max: time.Second, packets: []*rtp.Packet{pkt(1, 1000, 1), pkt(3, 1320, 3), pkt(2, 1160, 2)}, want: []byte{1, 2, 3}},
		{name: "first arrives late", max: time.Second, packets: []*rtp.Packet{pkt(2, 1160, 2), pkt(1, 1000, 1), pkt(3, 1320, 3)}, want: []byte{1, 2, 3}},
		{name: "gap becomes silence", max: time.Second, packets: []*rtp.Packet{pkt(1, 1000, 1), pkt(4, 1480, 4)}, want: []byte{1, 0xFF, 0xFF, 4}},
		{name: "duplicate", max: time.Second, packets: []*rtp.Packet{pkt(1, 1000, 1), pkt(2, 1160, 2), pkt(2, 1160, 2)}, want: []byte{1, 2}},
		{name: "timestamp wraps", max: time.Second, packets: []*rtp.Packet{pkt(1, 0xFFFFFF60, 1), pkt(2, 0, 2), pkt(3, 160, 3)}, want: []byte{1, 2, 3}},
		{name: "other ssrc ignored", max: time.Second, packets: []*rtp.Packet{pkt(1, 1000, 1), func() *rtp.Packet { p := pkt(2, 1160, 9); p.SSRC = 8; return p }()}, want: []byte{1}},
		{name: "non-audio ignored", max: time.Second, packets: []*rtp.Packet{pkt(1, 1000, 1), func() *rtp.Packet { p := pkt(2, 1160, 9); p.PayloadType = 101; return p }()}, want: []byte{1}},
		{name: "far jump ignored", max: time.Second, packets: []*rtp.Packet{pkt(1, 1000, 1), pkt(2, 1000+900000, 2)}, want: []byte{1}},
		{name: "max length", max: 60 * time.Millisecond, packets: []*rtp.Packet{pkt(1, 1000, 1), pkt(2, 1160, 2), pkt(3, 1320, 3), pkt(4, 1480, 4)}, want: []byte{1, 2, 3}, full: true},
		{name: "nothing", max: time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRecorder(tc.max)
			full := false
			for _, p := range tc.packets {
				full = r.Add(p)
			}
			if full != tc.full {
				t.Errorf("full %v, want %v", full, tc.full)
			}
			var want []byte
			for _, b := range tc.want {
				want = append(want, bytes.Repeat([]byte{b}, 160)...)
			}
			if got := r.Audio(); !bytes.Equal(got, want) {
				t.Errorf("audio of %d samples, want %d (frames %v)", len(got), len(want), tc.want)
			}
			if got, w := r.Duration(), time.Duration(len(tc.want))*20*time.Millisecond; got != w {
				t.Errorf("duration %v, want %v", got, w)
			}
		})
	}
}

func TestRecorderPCMASilence(t *testing.T) {
	r := NewRecorder(time.Second)
	a := pkt(1, 0, 1)
	a.PayloadType = 8
	b := pkt(3, 320, 3)
	b.PayloadType = 8
	r.Add(a)
	r.Add(b)
	if r.Codec() != PCMA {
		t.Fatalf("codec %s", r.Codec())
	}
	if got := r.Audio()[200]; got != 0xD5 {
		t.Errorf("gap sample %#x, want A-law silence 0xd5", got)
	}
}

// TestRecorderOverlapBounded: packets whose timestamps lie closer than
// their length (a broken or hostile sender) keep no more bytes than the
// longest message has samples.
func TestRecorderOverlapBounded(t *testing.T) {
	r := NewRecorder(time.Second) // 8000 samples
	for i := range 1000 {
		r.Add(pkt(uint16(i), 1000+uint32(i), 1))
	}
	held := 0
	for _, f := range r.frames {
		held += len(f)
	}
	if held > 8000 {
		t.Fatalf("%d bytes held for a message of at most 8000 samples", held)
	}
	if a := r.Audio(); len(a) == 0 || len(a) > 8000 {
		t.Errorf("audio of %d samples", len(a))
	}
}

// FuzzRecorder feeds packets made of the input (timestamp, payload type
// and length per packet) and checks that the message never exceeds its
// limit and that the audio is as long as the reported duration.
func FuzzRecorder(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 160, 0, 0, 0, 160, 0, 160})
	f.Add([]byte{255, 255, 255, 0, 8, 20, 0, 0, 0, 10, 8, 200})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewRecorder(100 * time.Millisecond)
		for len(in) >= 6 {
			ts := uint32(in[0])<<24 | uint32(in[1])<<16 | uint32(in[2])<<8 | uint32(in[3])
			p := &rtp.Packet{Header: rtp.Header{PayloadType: in[4] & 0x7f, Timestamp: ts, SSRC: 1}, Payload: bytes.Repeat([]byte{1}, int(in[5])*4)}
			r.Add(p)
			in = in[6:]
		}
		a := r.Audio()
		if len(a) > 800 || r.stored > 800 {
			t.Fatalf("%d samples kept, %d bytes held, limit 800", len(a), r.stored)
		}
		if time.Duration(len(a))*time.Second/8000 != r.Duration() {
			t.Fatalf("%d samples but a duration of %v", len(a), r.Duration())
		}
	})
}

// TestResumeRecorder: a recorder resumed from the audio another one
// saved places the stream's later packets after it by their timestamps,
// silence in the gap, ignores other streams, and keeps the maximum
// length over the whole message.
func TestResumeRecorder(t *testing.T) {
	saved := bytes.Repeat([]byte{1}, 320) // two frames from timestamp 1000
	tests := []struct {
		name    string
		max     time.Duration
		packets []*rtp.Packet
		want    []byte // per 160-sample frame, the fill byte
		full    bool
	}{
		{name: "right after", max: time.Second, packets: []*rtp.Packet{pkt(3, 1320, 3)}, want: []byte{1, 1, 3}},
		{name: "after a gap", max: time.Second, packets: []*rtp.Packet{pkt(6, 1800, 6), pkt(7, 1960, 7)}, want: []byte{1, 1, 0xFF, 0xFF, 0xFF, 6, 7}},
		{name: "nothing more", max: time.Second, want: []byte{1, 1}},
		{name: "other ssrc ignored", max: time.Second, packets: []*rtp.Packet{func() *rtp.Packet { p := pkt(3, 1320, 9); p.SSRC = 8; return p }()}, want: []byte{1, 1}},
		{name: "late packet overwrites its place", max: time.Second, packets: []*rtp.Packet{pkt(2, 1160, 2)}, want: []byte{1, 2}},
		{name: "max length over the whole", max: 60 * time.Millisecond, packets: []*rtp.Packet{pkt(3, 1320, 3), pkt(4, 1480, 4)}, want: []byte{1, 1, 3}, full: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := resumeRecorder(tc.max, PCMU, 7, 1000, 0, saved)
			if ssrc, base, lo, ok := r.origin(); !ok || ssrc != 7 || base != 1000 || lo != 0 {
				t.Fatalf("origin %d %d %d %v, want 7 1000 0 true", ssrc, base, lo, ok)
			}
			full := false
			for _, p := range tc.packets {
				full = r.Add(p)
			}
			var want []byte
			for _, f := range tc.want {
				want = append(want, bytes.Repeat([]byte{f}, 160)...)
			}
			if got := r.Audio(); !bytes.Equal(got, want) {
				t.Errorf("audio of %d bytes, want %d (%v)", len(got), len(want), tc.want)
			}
			if full != tc.full {
				t.Errorf("full %v, want %v", full, tc.full)
			}
			if got, _ := r.since(320, false); !bytes.Equal(got, want[min(320, len(want)):]) {
				t.Errorf("since the saved audio: %d bytes, want %d", len(got), len(want)-320)
			}
		})
	}
}

// TestRecorderOrigin: the origin of a recording is its first packet's
// SSRC and timestamp, and the offset of the earliest sample kept.
func TestRecorderOrigin(t *testing.T) {
	r := NewRecorder(time.Second)
	if _, _, _, ok := r.origin(); ok {
		t.Fatal("origin before the first packet")
	}
	r.Add(pkt(2, 1160, 2))
	r.Add(pkt(1, 1000, 1))
	if ssrc, base, lo, ok := r.origin(); !ok || ssrc != 7 || base != 1160 || lo != -160 {
		t.Fatalf("origin %d %d %d %v, want 7 1160 -160 true", ssrc, base, lo, ok)
	}
}

// FuzzResumeRecorder resumes a recording from any stored origin and
// saved audio and feeds it packets: no panic, and the audio it returns
// is as long as its duration and never beyond the maximum.
func FuzzResumeRecorder(f *testing.F) {
	f.Add(uint32(1000), 0, []byte{1, 2, 3}, uint32(1003), []byte{4, 5})
	f.Add(uint32(0xffffff00), -160, bytes.Repeat([]byte{9}, 320), uint32(0x40), bytes.Repeat([]byte{7}, 160))
	f.Add(uint32(0), 1<<30, []byte{}, uint32(5), []byte{1})
	f.Fuzz(func(t *testing.T, base uint32, lo int, audio []byte, ts uint32, payload []byte) {
		lo = max(min(lo, 8000), -8000) // as carryOn bounds it by the maximum length
		r := resumeRecorder(time.Second, PCMU, 7, base, lo, audio)
		r.Add(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, Timestamp: ts, SSRC: 7}, Payload: payload})
		got := r.Audio()
		if want := int(r.Duration() * 8000 / time.Second); len(got) != want {
			t.Fatalf("%d bytes of audio for %v", len(got), r.Duration())
		}
		if len(got) > 8000 {
			t.Fatalf("%d bytes beyond the maximum of a second", len(got))
		}
	})
}
