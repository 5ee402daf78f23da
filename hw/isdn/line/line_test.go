package line

import (
	"context"
	"errors"
	"github.com/twinpbx/twinpbx/hw/isdn/lapd"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/hw/isdn"
	"github.com/twinpbx/twinpbx/hw/isdn/card"
	"github.com/twinpbx/twinpbx/hw/isdn/q931"
)

func TestFreeChannel(t *testing.T) {
	call := func(ch uint8, s q931.State) *q931.Call {
		return &q931.Call{State: s, Channel: q931.ChannelID{Channel: ch}}
	}
	pri := func(except ...uint8) []*q931.Call {
		var cs []*q931.Call
		for ch := uint8(1); ch <= 31; ch++ {
			keep := true
			for _, e := range except {
				keep = keep && ch != e
			}
			if keep && ch != 16 {
				cs = append(cs, call(ch, q931.Active))
			}
		}
		return cs
	}
	tests := []struct {
		name  string
		calls []*q931.Call
		typ   isdn.SpanType
		want  uint8
	}{
		{"idle BRI", nil, isdn.BRIPointToPoint, 1},
		{"B1 taken", []*q931.Call{call(1, q931.Active)}, isdn.BRIPointToMultipoint, 2},
		{"B1 freed", []*q931.Call{call(1, q931.Null), call(2, q931.Active)}, isdn.BRIPointToPoint, 1},
		{"BRI full", []*q931.Call{call(1, q931.Active), call(2, q931.CallPresent)}, isdn.BRIPointToPoint, 0},
		{"PRI skips timeslot 16", pri(16, 17), isdn.PRI, 17},
		{"PRI last", pri(31), isdn.PRI, 31},
		{"PRI full", pri(), isdn.PRI, 0},
		{"a call without channel holds none", []*q931.Call{call(0, q931.CallInitiated)}, isdn.BRIPointToPoint, 1},
	}
	for _, tt := range tests {
		if got := FreeChannel(tt.calls, tt.typ); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
}

type nop struct{}

func (nop) Event(time.Time, isdn.Event)    {}
func (nop) Audio(time.Time, uint8, []byte) {}
func (nop) Layer1(time.Time, card.L1)      {}
func (nop) Media(time.Time)                {}

func TestRunEnds(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("a line without a card was made")
	}
	a, z := card.Pipe()
	l, err := New(Config{Card: a, Endpoint: isdn.Config{Type: isdn.PRI}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Run(context.Background(), nop{}) }()
	// The line sends its span config, then SABME.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, want := range []card.Kind{card.Config, card.DFrame} {
		r, err := z.Receive(ctx)
		if err != nil || r.Kind != want {
			t.Fatalf("got %v, %v; want a %v record", r, err, want)
		}
	}
	if err := l.Do(ctx, func(time.Time, *isdn.Endpoint) error { return errors.New("x") }); err == nil || err.Error() != "x" {
		t.Errorf("Do returned %v", err)
	}
	_ = z.Close() // the card fails: Run ends with an error
	if err := <-done; err == nil {
		t.Error("Run ended without an error when the card closed")
	}
	if err := l.Do(ctx, func(time.Time, *isdn.Endpoint) error { return nil }); !errors.Is(err, ErrStopped) {
		t.Errorf("Do after Run: %v", err)
	}
}

// A point-to-multipoint line without a TEI asks for one when layer 1
// comes up (after a failover the relay brings the line to a box whose
// requests at start went unanswered).
func TestLayer1UpAsksForTEI(t *testing.T) {
	a, z := card.Pipe()
	l, err := New(Config{Card: a, Endpoint: isdn.Config{Type: isdn.BRIPointToMultipoint, Rand: func() uint16 { return 5 }}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx, nop{}) }()
	defer func() { cancel(); <-done }()
	// identityRequest waits for the line's next identity request.
	identityRequest := func() lapd.TEIMessage {
		t.Helper()
		for {
			r, err := z.Receive(ctx)
			if err != nil {
				t.Fatalf("no identity request: %v", err)
			}
			if r.Kind != card.DFrame {
				continue
			}
			f, err := lapd.Parse(r.Data)
			if err != nil || f.SAPI != lapd.SAPITEIMgmt {
				continue
			}
			if m, err := lapd.ParseTEI(f.Info); err == nil && m.Type == lapd.IdentityRequest {
				return m
			}
		}
	}
	m := identityRequest()
	// The network denies it: the line has no TEI and stops asking.
	denied, err := lapd.TEIMessage{Type: lapd.IdentityDenied, Ri: m.Ri, Ai: lapd.TEIGroup}.Frame(true).Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := z.Send(card.Record{Kind: card.DFrame, Data: denied}); err != nil {
		t.Fatal(err)
	}
	if err := z.Send(card.Record{Kind: card.Layer1, L1: card.L1{Up: true}}); err != nil {
		t.Fatal(err)
	}
	identityRequest()
}
