package exchange

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/hw/isdn"
	"github.com/twinpbx/twinpbx/hw/isdn/card"
	"github.com/twinpbx/twinpbx/hw/relay"
	"github.com/twinpbx/twinpbx/internal/waitfor"
)

// TestSimLineLayer1: what each box's card sees of the shared line, by
// relay position and fault.
func TestSimLineLayer1(t *testing.T) {
	up, los := card.L1{Up: true}, card.L1{Alarms: card.LOS}
	tests := []struct {
		name   string
		relay  relay.Side // where the relay connects the line
		fault  func(state string) error
		a, b   card.L1
		noFile bool // the relay was never energised (no state file)
	}{
		{name: "relay never energised: side A", noFile: true, a: up, b: los},
		{name: "relay on A", relay: relay.A, a: up, b: los},
		{name: "relay on B", relay: relay.B, a: los, b: up},
		{name: "A's cable cut, relay on A", relay: relay.A, fault: func(s string) error { return CutSimCable(s, relay.A, true) }, a: los, b: los},
		{name: "A's cable cut, relay on B", relay: relay.B, fault: func(s string) error { return CutSimCable(s, relay.A, true) }, a: los, b: up},
		{name: "cable cut and mended", relay: relay.A, fault: func(s string) error {
			if err := CutSimCable(s, relay.A, true); err != nil {
				return err
			}
			return CutSimCable(s, relay.A, false)
		}, a: up, b: los},
		{name: "line down at the exchange", relay: relay.B, fault: func(s string) error { return SetSimLineDown(s, true) }, a: los, b: los},
		{name: "line back", relay: relay.B, fault: func(s string) error {
			if err := SetSimLineDown(s, true); err != nil {
				return err
			}
			return SetSimLineDown(s, false)
		}, a: los, b: up},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "relay-state")
			if !tc.noFile {
				r, err := relay.NewShared(state)
				if err != nil {
					t.Fatal(err)
				}
				if err := r.Select(context.Background(), tc.relay); err != nil {
					t.Fatal(err)
				}
			}
			if tc.fault != nil {
				if err := tc.fault(state); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range []struct {
				side relay.Side
				want card.L1
			}{{relay.A, tc.a}, {relay.B, tc.b}} {
				if got := (SimLine{State: state, Side: c.side}).Layer1(); got != c.want {
					t.Errorf("box %v sees %+v, want %+v", c.side, got, c.want)
				}
			}
		})
	}
}

// TestSimLineDrive: the driver reports the line's changes to the box and
// places the call asked for once the line reaches the box.
func TestSimLineDrive(t *testing.T) {
	state := filepath.Join(t.TempDir(), "relay-state")
	r, err := relay.NewShared(state)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Select(context.Background(), relay.B); err != nil {
		t.Fatal(err)
	}
	x, b, ctx := start(t, isdn.BRIPointToMultipoint, nil)
	dctx, stop := context.WithCancel(ctx)
	driving := make(chan struct{})
	go func() {
		defer close(driving)
		SimLine{State: state, Side: relay.A}.Drive(dctx, x, 10*time.Millisecond)
	}()
	t.Cleanup(func() { stop(); <-driving })
	waitL1 := func(want card.L1) {
		t.Helper()
		waitfor.Cond(t, 20*time.Second, fmt.Sprintf("the box to see %+v", want), func() bool { return b.layer1() == want })
	}
	waitL1(card.L1{Alarms: card.LOS})
	if err := AskSimCall(state, "030123456", "7001"); err != nil {
		t.Fatal(err)
	}
	if err := r.Select(context.Background(), relay.A); err != nil {
		t.Fatal(err)
	}
	waitL1(card.L1{Up: true})
	var done []byte
	waitfor.Cond(t, 20*time.Second, "the call asked for to be placed", func() bool {
		done, err = os.ReadFile(state + SimDialDone)
		return err == nil
	})
	if got := strings.TrimSpace(string(done)); got != "A connected" {
		t.Fatalf("the call's outcome is %q, want %q", got, "A connected")
	}
	if _, err := os.Stat(state + ".dial"); err == nil {
		t.Fatal("the call asked for is still waiting")
	}
	if err := SetSimLineDown(state, true); err != nil {
		t.Fatal(err)
	}
	waitL1(card.L1{Alarms: card.LOS})
}
