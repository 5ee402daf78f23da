package lapd

import (
	"bytes"
	"errors"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		f    Frame
		wire []byte
	}{
		{"SABME user command", Frame{Kind: SABME, PF: true}, []byte{0x00, 0x01, 0x7f}},
		{"UA network response", Frame{Kind: UA, PF: true}, []byte{0x00, 0x01, 0x73}},
		{"SABME network command TEI 64", Frame{TEI: 64, CR: true, Kind: SABME, PF: true}, []byte{0x02, 0x81, 0x7f}},
		{"DISC", Frame{Kind: DISC, PF: true}, []byte{0x00, 0x01, 0x53}},
		{"DM F=0", Frame{CR: true, Kind: DM}, []byte{0x02, 0x01, 0x0f}},
		{"DM F=1", Frame{Kind: DM, PF: true}, []byte{0x00, 0x01, 0x1f}},
		{"UI TEI mgmt", Frame{SAPI: 63, TEI: 127, Kind: UI, Info: []byte{0x0f, 1, 2, 1, 0xff}}, []byte{0xfc, 0xff, 0x03, 0x0f, 1, 2, 1, 0xff}},
		{"FRMR", Frame{Kind: FRMR, Info: []byte{1, 2, 3, 4, 5}}, []byte{0x00, 0x01, 0x87, 1, 2, 3, 4, 5}},
		{"XID", Frame{Kind: XID, PF: true}, []byte{0x00, 0x01, 0xbf}},
		{"I", Frame{Kind: I, NS: 5, NR: 127, PF: true, Info: []byte{8, 1}}, []byte{0x00, 0x01, 0x0a, 0xff, 8, 1}},
		{"I empty", Frame{Kind: I, NS: 127, NR: 0}, []byte{0x00, 0x01, 0xfe, 0x00}},
		{"RR", Frame{CR: true, Kind: RR, NR: 3, PF: true}, []byte{0x02, 0x01, 0x01, 0x07}},
		{"RNR", Frame{Kind: RNR, NR: 64}, []byte{0x00, 0x01, 0x05, 0x80}},
		{"REJ", Frame{Kind: REJ, NR: 1}, []byte{0x00, 0x01, 0x09, 0x02}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.f.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, tt.wire) {
				t.Fatalf("Marshal = % x, want % x", b, tt.wire)
			}
			g, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if g.String() != tt.f.String() || !bytes.Equal(g.Info, tt.f.Info) {
				t.Errorf("Parse = %v, want %v", g, tt.f)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name string
		wire []byte
	}{
		{"empty", nil},
		{"two octets", []byte{0x00, 0x01}},
		{"one-octet address", []byte{0x01, 0x01, 0x7f}},
		{"three-octet address", []byte{0x00, 0x00, 0x7f}},
		{"I without N(R)", []byte{0x00, 0x01, 0x00}},
		{"short S", []byte{0x00, 0x01, 0x01}},
		{"long S", []byte{0x00, 0x01, 0x01, 0x00, 0x00}},
		{"unknown S", []byte{0x00, 0x01, 0x0d, 0x00}},
		{"unknown U", []byte{0x00, 0x01, 0x23}},
		{"SABME with info", []byte{0x00, 0x01, 0x7f, 0x00}},
	}
	for _, tt := range tests {
		if _, err := Parse(tt.wire); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Parse(% x) = %v, want ErrMalformed", tt.name, tt.wire, err)
		}
	}
}

func TestMarshalRejects(t *testing.T) {
	for _, f := range []Frame{
		{SAPI: 64, Kind: UI},
		{TEI: 128, Kind: UI},
		{Kind: I, NS: 128},
		{Kind: RR, Info: []byte{1}},
		{Kind: UA, Info: []byte{1}},
		{Kind: 0},
	} {
		if _, err := f.Marshal(); err == nil {
			t.Errorf("Marshal(%v): no error", f)
		}
	}
}

func TestCRBit(t *testing.T) {
	tests := []struct{ network, command, want bool }{
		{false, true, false}, {false, false, true}, {true, true, true}, {true, false, false},
	}
	for _, tt := range tests {
		if got := CRBit(tt.network, tt.command); got != tt.want {
			t.Errorf("CRBit(%v, %v) = %v", tt.network, tt.command, got)
		}
		f := Frame{CR: tt.want}
		if f.IsCommand(tt.network) != tt.command {
			t.Errorf("IsCommand(%v) with C/R %v = %v", tt.network, tt.want, !tt.command)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range [][]byte{{0x00, 0x01, 0x7f}, {0x02, 0x01, 0x01, 0x07}, {0x00, 0x01, 0x0a, 0xff, 8, 1}, {0xfc, 0xff, 0x03, 0x0f, 1, 2, 1, 0xff}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := Parse(b)
		if err != nil {
			return
		}
		again, err := fr.Marshal()
		if err != nil {
			t.Fatalf("re-encoding %v: %v", fr, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoded % x, read % x", again, b)
		}
	})
}

func FuzzParseTEI(f *testing.F) {
	f.Add([]byte{0x0f, 0x12, 0x34, 0x01, 0xff})
	f.Add([]byte{0x0f, 0, 0, 0x02, 0x81})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseTEI(b)
		if err != nil {
			return
		}
		if again := m.Append(nil); !bytes.Equal(again, b) {
			t.Fatalf("re-encoded % x, read % x", again, b)
		}
	})
}
