package isdn

import (
	"bytes"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/hw/isdn/q931"
)

func TestParseSpanType(t *testing.T) {
	tests := []struct {
		in   string
		want SpanType
		err  bool
	}{
		{"bri-ptp", BRIPointToPoint, false},
		{"bri-ptmp", BRIPointToMultipoint, false},
		{"pri-e1", PRI, false},
		{"pri-t1", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSpanType(tt.in)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("ParseSpanType(%q) = %v, %v", tt.in, got, err)
		}
	}
}

func TestNewRejects(t *testing.T) {
	for name, c := range map[string]Config{
		"no span type":        {},
		"PTMP user sans Rand": {Type: BRIPointToMultipoint},
		"bad timers":          {Type: PRI, Calls: &q931.Config{}},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestReceiveRejects(t *testing.T) {
	e, err := New(Config{Type: PRI, Network: true})
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string][]byte{
		"short":       {0x00},
		"bad address": {0x01, 0x01, 0x7f},
		"unknown TEI": {0x00, 0x05, 0x7f},
	} {
		if err := e.Receive(t0, f); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	bri, err := New(Config{Type: BRIPointToMultipoint, Network: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := bri.Receive(t0, []byte{0xfc, 0xff, 0x03, 0x0f}); err == nil {
		t.Error("short TEI management message: no error")
	}
	// A malformed Q.931 message in a good I frame is dropped, the frame
	// still acknowledged.
	_ = e.Receive(t0, []byte{0x00, 0x01, 0x7f})
	e.Outgoing(t0)
	if err := e.Receive(t0, []byte{0x00, 0x01, 0x00, 0x00, 0x09, 0x01}); err != nil {
		t.Fatal(err)
	}
	out := e.Outgoing(t0)
	if len(out) != 1 || !bytes.Equal(out[0], []byte{0x00, 0x01, 0x01, 0x02}) {
		t.Errorf("after a malformed message sent % x, want one RR", out)
	}
}

// FuzzEndpoint feeds arbitrary frames to both sides of a PRI and a
// point-to-multipoint BRI: nothing may panic.
func FuzzEndpoint(f *testing.F) {
	f.Add([]byte{0x00, 0x01, 0x7f}, []byte{0x00, 0x01, 0x00, 0x00, 0x08, 0x02, 0x00, 0x01, 0x05, 0x04, 0x02, 0x80, 0x90})
	f.Add([]byte{0xfc, 0xff, 0x03, 0x0f, 0x12, 0x34, 0x01, 0xff}, []byte{0x00, 0x81, 0x7f})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		for _, typ := range []SpanType{PRI, BRIPointToMultipoint} {
			for _, network := range []bool{false, true} {
				e, err := New(Config{Type: typ, Network: network, Rand: func() uint16 { return 1 }})
				if err != nil {
					t.Fatal(err)
				}
				now := t0
				e.Start(now)
				for range 3 {
					_ = e.Receive(now, a)
					_ = e.Receive(now, b)
					e.Outgoing(now)
					e.Events(now)
					now = now.Add(5 * time.Second)
					e.Tick(now)
				}
			}
		}
	})
}
