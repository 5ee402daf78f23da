package card

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/twinpbx/twinpbx/hw/isdn"
	"github.com/twinpbx/twinpbx/hw/serial"
)

func TestRecordWire(t *testing.T) {
	tests := []struct {
		name string
		r    Record
		wire []byte
	}{
		{"D-frame", Record{Kind: DFrame, Span: 1, Data: []byte{0x02, 0x01, 0x7f}}, []byte{1, 1, 0x02, 0x01, 0x7f}},
		{"audio", Record{Kind: Audio, Span: 0, Channel: 2, Data: []byte{0xd5, 0x55}}, []byte{2, 0, 2, 0xd5, 0x55}},
		{"layer 1 up", Record{Kind: Layer1, L1: L1{Up: true}}, []byte{3, 0, 0x01}},
		{"layer 1 LOS+RAI", Record{Kind: Layer1, Span: 3, L1: L1{Alarms: LOS | RAI}}, []byte{3, 3, 0x0a}},
		{"config", Record{Kind: Config, Config: SpanConfig{Type: isdn.PRI, Network: true}}, []byte{4, 0, 3, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.r.Append(nil)
			if err != nil || !bytes.Equal(got, tt.wire) {
				t.Fatalf("Append = % x, %v; want % x", got, err, tt.wire)
			}
			back, err := ParseRecord(tt.wire)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, tt.r) {
				t.Errorf("ParseRecord = %+v, want %+v", back, tt.r)
			}
		})
	}
}

func TestRecordRejected(t *testing.T) {
	wires := map[string][]byte{
		"empty":            {},
		"kind only":        {1},
		"short D-frame":    {1, 0, 2, 1},
		"audio no channel": {2, 0},
		"audio no samples": {2, 0, 1},
		"audio channel 0":  {2, 0, 0, 0xd5},
		"audio channel 32": {2, 0, 32, 0xd5},
		"layer 1 long":     {3, 0, 1, 0},
		"layer 1 bad bits": {3, 0, 0x10},
		"config short":     {4, 0, 3},
		"config type 0":    {4, 0, 0, 0},
		"config type 4":    {4, 0, 4, 0},
		"config bad flags": {4, 0, 1, 2},
		"unknown kind":     {9, 0, 1, 2, 3},
		"kind 0":           {0, 0, 1, 2, 3},
	}
	for name, w := range wires {
		if r, err := ParseRecord(w); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ParseRecord(% x) = %+v, %v; want ErrMalformed", name, w, r, err)
		}
	}
	bad := []Record{
		{Kind: DFrame, Data: []byte{1}},
		{Kind: Audio, Channel: 1},
		{Kind: Audio, Channel: 1, Data: make([]byte, MaxPayload)},
		{Kind: Layer1, L1: L1{Alarms: 0x80}},
		{Kind: Config},
		{Kind: 7},
	}
	for _, r := range bad {
		if _, err := r.Append(nil); !errors.Is(err, ErrMalformed) {
			t.Errorf("Append(%+v) = %v, want ErrMalformed", r, err)
		}
	}
}

// FuzzParseRecord: no panic, and whatever is accepted encodes back to the
// same octets.
func FuzzParseRecord(f *testing.F) {
	f.Add([]byte{1, 1, 0x02, 0x01, 0x7f})
	f.Add([]byte{2, 0, 2, 0xd5, 0x55})
	f.Add([]byte{3, 3, 0x0a})
	f.Add([]byte{4, 0, 3, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRecord(b)
		if err != nil {
			return
		}
		again, err := r.Append(nil)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("% x parsed as %+v, encodes to % x, %v", b, r, again, err)
		}
	})
}

var sample = []Record{
	{Kind: Config, Config: SpanConfig{Type: isdn.BRIPointToMultipoint}},
	{Kind: Layer1, L1: L1{Up: true}},
	// Octets the line discipline or the framing could mangle: flag,
	// escape, XON/XOFF, CR, LF, ^C, ^D.
	{Kind: DFrame, Data: []byte{0x7e, 0x7d, 0x11, 0x13, 0x0d, 0x0a, 0x03, 0x04}},
	{Kind: Audio, Channel: 1, Data: bytes.Repeat([]byte{0xd5, 0x7e, 0x00, 0xff}, 40)},
	{Kind: Layer1, L1: L1{Alarms: LOS}},
}

// exchange sends sample from a to b and checks it arrives in order.
func exchange(t *testing.T, a, b Card) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		for _, r := range sample {
			if err := a.Send(r); err != nil {
				t.Errorf("send %v: %v", r, err)
			}
		}
	}()
	for i, want := range sample {
		got, err := b.Receive(ctx)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if want.Data == nil {
			want.Data = got.Data // a record without data may come back with an empty slice
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("record %d: got %v, want %v", i, got, want)
		}
	}
}

func TestPipe(t *testing.T) {
	a, b := Pipe()
	exchange(t, a, b)
	exchange(t, b, a)
	if err := a.Send(Record{Kind: DFrame, Data: []byte{1}}); !errors.Is(err, ErrMalformed) {
		t.Errorf("malformed send: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.Receive(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("receive after cancel: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(sample[0]); !errors.Is(err, ErrClosed) {
		t.Errorf("send after the far end closed: %v", err)
	}
	if _, err := a.Receive(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("receive after the far end closed: %v", err)
	}
}

// serialPair opens a pty pair: the host side through hw/serial, the card
// side on the pty master, both speaking the framing.
func serialPair(t *testing.T) (host, cardSide *Serial) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { _ = tty.Close() })
	host, err = OpenSerial(serial.Config{Device: tty.Name(), Baud: 115200}, nil)
	if err != nil {
		_ = ptmx.Close()
		t.Fatal(err)
	}
	cardSide = NewSerial(ptmx, nil)
	t.Cleanup(func() { _ = host.Close(); _ = cardSide.Close() })
	return host, cardSide
}

func TestSerialOverPty(t *testing.T) {
	host, cs := serialPair(t)
	exchange(t, cs, host)
	exchange(t, host, cs)
	if host.Dropped() != 0 || cs.Dropped() != 0 {
		t.Errorf("dropped: host %d, card %d", host.Dropped(), cs.Dropped())
	}
}

func TestSerialDropsDamage(t *testing.T) {
	host, cs := serialPair(t)
	good, _ := sample[2].Append(nil)
	bad := AppendFrame(nil, good)
	bad[4] ^= 0x40
	unparsable := AppendFrame(nil, []byte{9, 9, 9})
	// Write raw octets on the card side: damage, then a good frame.
	raw := append(append(append([]byte{}, bad...), unparsable...), AppendFrame(nil, good)...)
	cs.wmu.Lock()
	_, err := cs.rw.Write(raw)
	cs.wmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := host.Receive(ctx)
	if err != nil || !bytes.Equal(r.Data, sample[2].Data) {
		t.Fatalf("after damage: %v, %v", r, err)
	}
	if host.Dropped() != 2 {
		t.Errorf("dropped %d, want 2", host.Dropped())
	}
	if err := host.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := host.Receive(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("receive after close: %v", err)
	}
	if err := host.Send(sample[0]); !errors.Is(err, ErrClosed) {
		t.Errorf("send after close: %v", err)
	}
}
