package pcap

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/hw/isdn/isdntest"
)

// Hand-assembled frames, one per decoder tshark must reach.
var (
	sabme   = []byte{0x00, 0x01, 0x7f}                               // SAPI 0, C/R 0 (user command), TEI 0, SABME P=1
	ua      = []byte{0x00, 0x01, 0x73}                               // response from the network side, UA F=1
	teiReq  = []byte{0xfc, 0xff, 0x03, 0x0f, 0x12, 0x34, 0x01, 0xff} // TEI identity request, Ri 0x1234, Ai 127
	setupIF = []byte{0x00, 0x01, 0x00, 0x00,                         // I-frame N(S)=0 N(R)=0
		0x08, 0x01, 0x01, 0x05, // Q.931, call reference 1, SETUP
		0x04, 0x03, 0x80, 0x90, 0xa3, // bearer capability: speech, 64 kbit/s, A-law
		0x18, 0x01, 0x83, // channel identification: BRI, any channel
		0x70, 0x04, 0x81, 0x31, 0x32, 0x33} // called party number 123
)

func TestWriteDecodedByTshark(t *testing.T) {
	isdntest.Tshark(t)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	pkts := []Packet{
		{Time: t0, Direction: Sent, Frame: teiReq},
		{Time: t0.Add(time.Millisecond), Direction: Sent, Frame: sabme},
		{Time: t0.Add(2 * time.Millisecond), Direction: Received, Frame: ua},
		{Time: t0.Add(3 * time.Millisecond), Direction: Sent, Frame: setupIF},
		{Time: t0.Add(4 * time.Millisecond), Direction: Received, Network: true, Frame: setupIF},
	}
	path := filepath.Join(t.TempDir(), "frames.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		if err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	dec := isdntest.Decode(t, path)
	if len(dec) != len(pkts) {
		t.Fatalf("tshark decoded %d frames, want %d", len(dec), len(pkts))
	}
	tests := []struct {
		frame        int
		layer, field string
		want         string
	}{
		{0, "lapd", "lapd.sapi", "63"},
		{0, "tei_management", "tei.msg", "1"},
		{0, "tei_management", "tei.reference", "4660"},
		{1, "lapd", "lapd.sapi", "0"},
		{1, "lapd", "lapd.tei", "0"},
		{1, "lapd", "lapd.control.u_modifier_cmd", "0x1b"},  // SABME
		{1, "lapd", "lapd.direction", "0"},                  // user to network
		{2, "lapd", "lapd.direction", "1"},                  // received by the user side
		{4, "lapd", "lapd.direction", "0"},                  // received by the network side
		{2, "lapd", "lapd.control.u_modifier_resp", "0x18"}, // UA
		{3, "q931", "q931.message_type", "0x05"},
		{3, "q931", "q931.call_ref", "01"},
		{3, "q931", "q931.called_party_number.digits", "123"},
		{4, "q931", "q931.message_type", "0x05"},
	}
	for _, tt := range tests {
		if got := dec[tt.frame].Field(tt.layer, tt.field); got != tt.want {
			t.Errorf("frame %d %s = %q, want %q", tt.frame+1, tt.field, got, tt.want)
		}
	}
	isdntest.CheckClean(t, path)
}

func TestRoundTrip(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	pkts := []Packet{
		{Time: t0, Direction: Sent, Frame: sabme},
		{Time: t0.Add(time.Second), Direction: Received, Network: true, Frame: setupIF},
		{Time: t0.Add(2 * time.Second), Direction: Sent, Frame: []byte{}},
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		if err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	r, err := NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range pkts {
		got, err := r.Next()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if !got.Time.Equal(want.Time) || got.Direction != want.Direction || got.Network != want.Network || !bytes.Equal(got.Frame, want.Frame) {
			t.Errorf("record %d = %+v, want %+v", i, got, want)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("after the last record: %v, want io.EOF", err)
	}
}

func TestWriteRejects(t *testing.T) {
	w, err := NewWriter(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		p    Packet
	}{
		{"too long", Packet{Direction: Sent, Frame: make([]byte, MaxFrame+1)}},
		{"unknown direction", Packet{Direction: 3, Frame: sabme}},
	}
	for _, tt := range tests {
		if err := w.Write(tt.p); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

func TestReaderRejects(t *testing.T) {
	var good bytes.Buffer
	w, _ := NewWriter(&good)
	_ = w.Write(Packet{Direction: Sent, Frame: sabme})
	file := good.Bytes()
	tests := []struct {
		name  string
		data  []byte
		isFmt bool
	}{
		{"empty", nil, false},
		{"bad magic", append([]byte{1, 2, 3, 4}, file[4:]...), true},
		{"ethernet", func() []byte { b := bytes.Clone(file); b[20] = 1; return b }(), true},
		{"short record", file[:len(file)-1], false},
		{"huge record", func() []byte { b := bytes.Clone(file); b[32] = 0xff; b[33] = 0xff; return b }(), true},
		{"wrong protocol", func() []byte { b := bytes.Clone(file); b[24+16+15] = 0x00; return b }(), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(tt.data))
			if err == nil {
				_, err = r.Next()
			}
			if err == nil || err == io.EOF {
				t.Fatalf("got %v, want an error", err)
			}
			if errors.Is(err, ErrFormat) != tt.isFmt {
				t.Errorf("error %v: wraps ErrFormat = %v, want %v", err, !tt.isFmt, tt.isFmt)
			}
		})
	}
}

func FuzzReader(f *testing.F) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf)
	_ = w.Write(Packet{Direction: Sent, Frame: sabme})
	_ = w.Write(Packet{Direction: Received, Network: true, Frame: setupIF})
	f.Add(buf.Bytes())
	f.Add([]byte{0xd4, 0xc3, 0xb2, 0xa1})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		for range 1000 {
			p, err := r.Next()
			if err != nil {
				return
			}
			if len(p.Frame) > MaxFrame {
				t.Fatalf("frame of %d octets", len(p.Frame))
			}
		}
	})
}
