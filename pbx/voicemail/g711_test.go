package voicemail

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestG711RoundTrip(t *testing.T) {
	for _, c := range []Codec{PCMU, PCMA} {
		if got := c.Decode(c.Silence()); got < -16 || got > 16 {
			t.Errorf("%s silence decodes to %d", c, got)
		}
		for _, s := range []int16{0, 100, -100, 1000, -1000, 12000, -12000, 32767, -32768} {
			back := c.Decode(c.Encode(s))
			tol := int(s)/16 + 16
			if tol < 0 {
				tol = -tol + 32
			}
			if d := int(back) - int(s); d > tol || d < -tol {
				t.Errorf("%s: %d encodes and decodes to %d", c, s, back)
			}
		}
	}
	// Known values of ITU-T G.711.
	if PCMU.Encode(0) != 0xFF || PCMA.Encode(0) != 0xD5 {
		t.Errorf("zero: μ-law %#x, A-law %#x", PCMU.Encode(0), PCMA.Encode(0))
	}
}

func TestWAV(t *testing.T) {
	var b bytes.Buffer
	if err := WriteWAV(&b, PCMA, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	w := b.Bytes()
	if string(w[0:4]) != "RIFF" || string(w[8:12]) != "WAVE" || binary.LittleEndian.Uint16(w[20:22]) != 6 {
		t.Fatalf("header % x", w[:24])
	}
	if int(binary.LittleEndian.Uint32(w[4:8]))+8 != len(w) {
		t.Errorf("RIFF size %d for a file of %d bytes", binary.LittleEndian.Uint32(w[4:8]), len(w))
	}
	if !bytes.Equal(w[len(w)-4:len(w)-1], []byte{1, 2, 3}) {
		t.Errorf("data % x", w[len(w)-8:])
	}
}

func TestParseOffer(t *testing.T) {
	tests := []struct {
		name, sdp string
		codec     Codec
		ev        int
		remote    string
		err       bool
	}{
		{name: "pcmu and events", sdp: "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 9 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n", codec: PCMU, ev: 101, remote: "10.0.0.2:4000"},
		{name: "pcma only, media c=", sdp: "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nt=0 0\r\nm=audio 4002 RTP/AVP 8\r\nc=IN IP4 10.0.0.3\r\n", codec: PCMA, ev: -1, remote: "10.0.0.3:4002"},
		{name: "no g711", sdp: "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 9\r\n", err: true},
		{name: "garbage", sdp: "hello", err: true},
		{name: "srtp", sdp: "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n", err: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseOffer([]byte(tc.sdp))
			if tc.err {
				if err == nil {
					t.Fatalf("accepted: %+v", o)
				}
				return
			}
			if err != nil || o.codec != tc.codec || o.eventPT != tc.ev || o.remote.String() != tc.remote {
				t.Fatalf("%+v %v", o, err)
			}
			if _, err := parseOffer(answerSDP(o.remote, o, 1)); err != nil {
				t.Errorf("our answer does not parse: %v", err)
			}
		})
	}
}

func FuzzParseOffer(f *testing.F) {
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := parseOffer(b)
		if err == nil && o.codec != PCMU && o.codec != PCMA {
			t.Fatalf("codec %q", o.codec)
		}
	})
}

func TestTranscode(t *testing.T) {
	samples := []int16{0, 100, -100, 1000, -1000, 12000, -12000, 32767, -32768}
	for _, pair := range [][2]Codec{{PCMU, PCMA}, {PCMA, PCMU}, {PCMU, PCMU}, {PCMA, PCMA}} {
		from, to := pair[0], pair[1]
		in := make([]byte, len(samples))
		for i, s := range samples {
			in[i] = from.Encode(s)
		}
		out := transcode(in, from, to)
		if len(out) != len(in) {
			t.Fatalf("%s to %s: %d bytes from %d", from, to, len(out), len(in))
		}
		for i, s := range samples {
			got := to.Decode(out[i])
			tol := int(s)/8 + 32
			if tol < 0 {
				tol = -tol + 64
			}
			if d := int(got) - int(s); d > tol || d < -tol {
				t.Errorf("%s to %s: %d comes out as %d", from, to, s, got)
			}
		}
	}
}
