package exchange

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/hw/isdn"
	"github.com/twinpbx/twinpbx/hw/isdn/card"
	"github.com/twinpbx/twinpbx/hw/isdn/line"
	"github.com/twinpbx/twinpbx/hw/isdn/q931"
)

// box is a minimal user side: it answers calls at once, plays a 600 Hz
// tone into answered calls and records what it hears and its events.
type box struct {
	l  *line.Line
	mu sync.Mutex
	// per call, by B channel
	heard  map[uint8][]byte
	events []q931.EventKind
	active map[*q931.Call]int
	answer bool
	l1     card.L1 // the last layer-1 state the exchange reported
}

func (b *box) Event(now time.Time, ev isdn.Event) {
	if ev.Call == nil {
		return
	}
	b.mu.Lock()
	b.events = append(b.events, ev.Call.Kind)
	b.mu.Unlock()
	calls := b.l.Endpoint().Calls()
	switch ev.Call.Kind {
	case q931.EventIncoming:
		if b.answer {
			_ = calls.Alert(now, ev.Call.Call)
			_ = calls.Answer(now, ev.Call.Call)
		} else {
			_ = calls.Hangup(now, ev.Call.Call, 17)
		}
		b.active[ev.Call.Call] = 0
	case q931.EventConnected:
		b.active[ev.Call.Call] = 0
	case q931.EventReleased:
		delete(b.active, ev.Call.Call)
	}
}

func (b *box) Audio(now time.Time, ch uint8, s []byte) {
	b.mu.Lock()
	b.heard[ch] = append(b.heard[ch], s...)
	b.mu.Unlock()
}
func (b *box) Layer1(_ time.Time, l1 card.L1) {
	b.mu.Lock()
	b.l1 = l1
	b.mu.Unlock()
}

func (b *box) layer1() card.L1 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.l1
}
func (b *box) Media(now time.Time) {
	for c, n := range b.active {
		if c.State != q931.Active && c.State != q931.ConnectRequest {
			continue
		}
		buf := make([]byte, 160)
		Tone{Freq: 600}.Fill(buf, n)
		b.active[c] = n + 160
		_ = b.l.SendAudio(c.Channel.Channel, buf)
	}
}

func (b *box) heardOn(ch uint8) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.heard[ch]...)
}

func start(t *testing.T, typ isdn.SpanType, plan func(string) Reply) (*Exchange, *box, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	a, z := card.Pipe()
	t.Cleanup(func() { cancel(); _ = a.Close() })
	x, err := New(a, Config{Type: typ, Plan: plan})
	if err != nil {
		t.Fatal(err)
	}
	l, err := line.New(line.Config{Card: z, Endpoint: isdn.Config{Type: typ, Rand: func() uint16 { return uint16(rand.Uint32()) }}})
	if err != nil {
		t.Fatal(err)
	}
	b := &box{l: l, heard: map[uint8][]byte{}, active: map[*q931.Call]int{}, answer: true}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = x.Run(ctx) }()
	go func() { defer wg.Done(); _ = l.Run(ctx, b) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	if err := x.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return x, b, ctx
}

// waitAudio waits until f returns at least n samples.
func waitAudio(t *testing.T, ctx context.Context, n int, f func() []byte) []byte {
	t.Helper()
	for {
		if a := f(); len(a) >= n {
			return a
		}
		select {
		case <-ctx.Done():
			t.Fatalf("only %d of %d samples arrived", len(f()), n)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

var spans = []struct {
	name string
	typ  isdn.SpanType
}{{"BRI PTMP", isdn.BRIPointToMultipoint}, {"BRI PTP", isdn.BRIPointToPoint}, {"PRI", isdn.PRI}}

func TestDialToBox(t *testing.T) {
	for _, sp := range spans {
		t.Run(sp.name, func(t *testing.T) {
			x, b, ctx := start(t, sp.typ, nil)
			c, err := x.Dial(ctx, DialParams{Calling: "030123456", Called: "7001"})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Wait(ctx, Connected); err != nil {
				t.Fatal(err)
			}
			// Half a second each way: the box hears the exchange's 1000 Hz,
			// the exchange the box's 600 Hz.
			heard := waitAudio(t, ctx, 4000, c.Heard)
			if s := frameShare(heard[800:4000], 600); s < 0.9 {
				t.Errorf("exchange heard 600 Hz at share %.2f", s)
			}
			got := waitAudio(t, ctx, 4000, func() []byte { return b.heardOn(c.Channel()) })
			if s := frameShare(got[800:4000], 1000); s < 0.9 {
				t.Errorf("box heard 1000 Hz at share %.2f", s)
			}
			if err := c.Hangup(ctx, 16); err != nil {
				t.Fatal(err)
			}
			if err := c.Wait(ctx, Released); err != nil {
				t.Fatal(err)
			}
			if c.Cause() != 16 {
				t.Errorf("cause %d", c.Cause())
			}
		})
	}
}

func TestBoxCalls(t *testing.T) {
	plan := func(called string) Reply {
		switch called {
		case "110":
			return Reply{Ring: time.Second}
		case "0301111":
			return Reply{Reject: 17}
		}
		return Reply{Reject: 1}
	}
	tests := []struct {
		called string
		status Status
		cause  uint8
	}{{"110", Connected, 0}, {"0301111", Released, 17}, {"999", Released, 1}}
	for _, sp := range spans {
		for _, tt := range tests {
			t.Run(sp.name+" "+tt.called, func(t *testing.T) {
				x, b, ctx := start(t, sp.typ, plan)
				tei := 0
				err := b.l.Do(ctx, func(now time.Time, ep *isdn.Endpoint) error {
					if v, ok := ep.TEI(); ok {
						tei = int(v)
					}
					_, err := ep.Calls().Setup(now, tei, q931.SetupParams{
						Bearer:  q931.BearerCapability{Capability: q931.Speech, Layer1: q931.ALawG711},
						Channel: q931.ChannelID{Channel: 0},
						Calling: q931.PartyNumber{Digits: "7001", Presentation: q931.PresentationRestricted},
						Called:  q931.PartyNumber{Digits: tt.called}, SendingComplete: true,
					})
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				var c *Call
				select {
				case c = <-x.Placed():
				case <-ctx.Done():
					t.Fatal("no call arrived")
				}
				if c.Called != tt.called || c.Calling != "7001" || !c.Restricted || !c.FromBox {
					t.Errorf("call %+v", c)
				}
				if err := c.Wait(ctx, tt.status); err != nil {
					t.Fatal(err)
				}
				if tt.status != Connected {
					if c.Cause() != tt.cause {
						t.Errorf("cause %d, want %d", c.Cause(), tt.cause)
					}
					return
				}
				// The ring tone came before the answer, then the far end's tone.
				got := waitAudio(t, ctx, 12000, func() []byte { return b.heardOn(c.Channel()) })
				if s := frameShare(got[:1600], RingTone.Freq); s < 0.9 {
					t.Errorf("ring tone share %.2f", s)
				}
				if s := frameShare(got[10000:12000], 1000); s < 0.9 {
					t.Errorf("talk tone share %.2f", s)
				}
				if err := c.Hangup(ctx, 16); err != nil {
					t.Fatal(err)
				}
				if err := c.Wait(ctx, Released); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

func TestShare(t *testing.T) {
	buf := make([]byte, 1600)
	tests := []struct {
		tone Tone
		freq float64
		lo   float64
		hi   float64
	}{
		{Tone{Freq: 1000}, 1000, 0.95, 1},
		{Tone{Freq: 1000}, 425, 0, 0.05},
		{DialTone, 425, 0.95, 1},
		{Tone{Freq: 600}, 1000, 0, 0.05},
	}
	for _, tt := range tests {
		tt.tone.Fill(buf, 0)
		if s := Share(buf, tt.freq); s < tt.lo || s > tt.hi {
			t.Errorf("%v at %v Hz: share %.3f, want %.2f–%.2f", tt.tone, tt.freq, s, tt.lo, tt.hi)
		}
	}
	silence := make([]byte, 800)
	for i := range silence {
		silence[i] = 0xd5
	}
	if s := Share(silence, 1000); s > 0.05 {
		t.Errorf("silence: %.3f", s)
	}
	// Busy tone: on for the first 480 ms, off for the next.
	b := make([]byte, 8000)
	BusyTone.Fill(b, 0)
	if Share(b[:3840], 425) < 0.95 || Share(b[3840:7680], 425) > 0.05 {
		t.Errorf("busy cadence wrong")
	}
}

// The box dials digit by digit: SETUP without a number gets SETUP
// ACKNOWLEDGE and dial tone; the digits come in INFORMATION, and after
// the dial timeout (T302) the call is routed by the whole number.
func TestOverlapDialling(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, z := card.Pipe()
	defer a.Close()
	// T302 must outlast the 200 ms of dial tone the test listens to
	// before dialling, with room for a busy machine: should it run out
	// first, the exchange routes the empty number and the tone stops.
	x, err := New(a, Config{Type: isdn.PRI, DialTimeout: 1500 * time.Millisecond, Plan: func(called string) Reply {
		if called == "0301111" {
			return Reply{Ring: 100 * time.Millisecond}
		}
		return Reply{Reject: 1}
	}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := line.New(line.Config{Card: z, Endpoint: isdn.Config{Type: isdn.PRI}})
	if err != nil {
		t.Fatal(err)
	}
	b := &box{l: l, heard: map[uint8][]byte{}, active: map[*q931.Call]int{}, answer: true}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = x.Run(ctx) }()
	go func() { defer wg.Done(); _ = l.Run(ctx, b) }()
	defer func() { cancel(); wg.Wait() }()
	if err := x.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	var q *q931.Call
	err = l.Do(ctx, func(now time.Time, ep *isdn.Endpoint) error {
		q, err = ep.Calls().Setup(now, 0, q931.SetupParams{
			Bearer: q931.BearerCapability{Capability: q931.Speech, Layer1: q931.ALawG711}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	state := func() q931.State {
		var s q931.State
		_ = l.Do(ctx, func(time.Time, *isdn.Endpoint) error { s = q.State; return nil })
		return s
	}
	waitAudio(t, ctx, 1, func() []byte {
		if state() == q931.OverlapSending {
			return []byte{0}
		}
		return nil
	})
	// Dial tone while the box dials.
	tone := waitAudio(t, ctx, 1600, func() []byte { return b.heardOn(1) })
	if s := frameShare(tone[:1600], DialTone.Freq); s < 0.9 {
		t.Errorf("dial tone share %.2f", s)
	}
	for _, d := range []string{"030", "1111"} {
		if err := l.Do(ctx, func(now time.Time, ep *isdn.Endpoint) error { return ep.Calls().Info(now, q, d) }); err != nil {
			t.Fatal(err)
		}
	}
	var c *Call
	select {
	case c = <-x.Placed():
	case <-ctx.Done():
		t.Fatal("the dialled call was never routed")
	}
	if c.Called != "0301111" {
		t.Errorf("routed by %q", c.Called)
	}
	if err := c.Wait(ctx, Connected); err != nil {
		t.Fatal(err)
	}
}

func TestStatusString(t *testing.T) {
	for _, tc := range []struct {
		s    Status
		want string
	}{{Setup, "setup"}, {Connected, "connected"}, {Released, "released"}, {Released + 1, "status(5)"}, {-1, "status(-1)"}} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("Status(%d).String() = %q, want %q", int(tc.s), got, tc.want)
		}
	}
}

// frameShare is Share averaged over 20 ms frames. Share is phase-coherent
// over its whole buffer, so one frame lost or repeated on a busy machine
// breaks the tone's phase and pulls a long buffer's share down although
// every frame carries the tone; frame by frame it stays near 1.
func frameShare(alaw []byte, freq float64) float64 {
	const frame = SampleRate / 50
	var sum float64
	n := 0
	for len(alaw) >= frame {
		sum += Share(alaw[:frame], freq)
		alaw = alaw[frame:]
		n++
	}
	if n == 0 {
		return Share(alaw, freq)
	}
	return sum / float64(n)
}
