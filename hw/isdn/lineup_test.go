package isdn

import (
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/hw/isdn/lapd"
)

// sent sorts a side's outgoing frames: identity requests and SABMEs.
func sent(t *testing.T, e *Endpoint, now time.Time) (idRequests, sabmes int) {
	t.Helper()
	for _, b := range e.Outgoing(now) {
		f, err := lapd.Parse(b)
		if err != nil {
			t.Fatalf("sent a malformed frame % x: %v", b, err)
		}
		switch {
		case f.SAPI == lapd.SAPITEIMgmt:
			if m, err := lapd.ParseTEI(f.Info); err == nil && m.Type == lapd.IdentityRequest {
				idRequests++
			}
		case f.Kind == lapd.SABME:
			sabmes++
		}
	}
	return idRequests, sabmes
}

// A point-to-multipoint user whose identity requests went unanswered
// (the line was with the twin behind the relay) asks again when layer 1
// comes up, and when a call is offered to it without a TEI.
func TestTEIAskedAgain(t *testing.T) {
	tests := []struct {
		name  string
		again func(e *Endpoint, now time.Time)
	}{
		{"layer 1 up", func(e *Endpoint, now time.Time) { e.LineUp(now) }},
		{"broadcast SETUP", func(e *Endpoint, now time.Time) {
			// SETUP on the group TEI in a UI frame: the network's
			// call offering on a point-to-multipoint line.
			ui := lapd.Frame{SAPI: lapd.SAPICallControl, TEI: lapd.TEIGroup, CR: true, Kind: lapd.UI,
				Info: []byte{0x08, 0x01, 0x01, 0x05, 0x04, 0x03, 0x80, 0x90, 0xa3}}
			b, err := ui.Append(nil)
			if err != nil {
				panic(err)
			}
			if err := e.Receive(now, b); err != nil {
				panic(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := New(Config{Type: BRIPointToMultipoint, Rand: func() uint16 { return 7 }})
			if err != nil {
				t.Fatal(err)
			}
			now := t0
			e.Start(now)
			asked, _ := sent(t, e, now)
			for range 10 { // T202 after T202 until the user side gives up
				now = now.Add(lapd.T202)
				e.Tick(now)
				n, _ := sent(t, e, now)
				asked += n
			}
			if asked != lapd.N202 {
				t.Fatalf("%d identity requests before giving up, want %d", asked, lapd.N202)
			}
			e.Events(now)
			tt.again(e, now)
			if n, _ := sent(t, e, now); n != 1 {
				t.Errorf("%d identity requests after %s, want 1", n, tt.name)
			}
		})
	}
}

// Layer 1 coming up while the last identity request (sent into a dead
// line) waits for T202 starts the requests over: the line gets all N202
// tries, not the one left.
func TestLineUpRenewsTEIRequest(t *testing.T) {
	e, err := New(Config{Type: BRIPointToMultipoint, Rand: func() uint16 { return 9 }})
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	e.Start(now)
	for range lapd.N202 - 1 {
		now = now.Add(lapd.T202)
		e.Tick(now)
	}
	sent(t, e, now) // N202 requests, the last one pending
	now = now.Add(lapd.T202 / 2)
	e.LineUp(now)
	asked, _ := sent(t, e, now)
	for range 10 {
		now = now.Add(lapd.T202)
		e.Tick(now)
		n, _ := sent(t, e, now)
		asked += n
	}
	if asked != lapd.N202 {
		t.Errorf("%d identity requests after layer 1 came up, want %d", asked, lapd.N202)
	}
}

// On a point-to-point span, layer 1 coming up establishes a released
// TEI 0 link and leaves an established one alone.
func TestLineUpPointToPoint(t *testing.T) {
	u, err := New(Config{Type: BRIPointToPoint})
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(Config{Type: BRIPointToPoint, Network: true})
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	u.LineUp(now)
	first := u.Outgoing(now)
	if len(first) != 1 {
		t.Fatalf("sent %d frames on layer 1 up, want a SABME", len(first))
	}
	if f, err := lapd.Parse(first[0]); err != nil || f.Kind != lapd.SABME {
		t.Fatalf("sent %v (%v) on layer 1 up, want a SABME", f, err)
	}
	// The network side answers: the link comes up.
	_ = n.Receive(now, first[0])
	for range 5 {
		for _, f := range n.Outgoing(now) {
			_ = u.Receive(now, f)
		}
		for _, f := range u.Outgoing(now) {
			_ = n.Receive(now, f)
		}
	}
	if s := u.links[0].State(); s != lapd.Established {
		t.Fatalf("link %v, want established", s)
	}
	u.LineUp(now)
	if _, s := sent(t, u, now); s != 0 {
		t.Errorf("%d SABMEs on an established link", s)
	}
}
