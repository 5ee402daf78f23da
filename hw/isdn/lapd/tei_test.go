package lapd

import (
	"errors"
	"testing"
	"time"
)

// teiWire passes TEI management frames between users and a network through
// the codec and returns the messages seen, in order.
func teiWire(t *testing.T, now time.Time, net *TEINetwork, users ...*TEIUser) []TEIMessage {
	t.Helper()
	var seen []TEIMessage
	for range 100 {
		moved := false
		deliver := func(f Frame, to func(Frame)) {
			moved = true
			b, err := f.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			g, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			m, err := ParseTEI(g.Info)
			if err != nil {
				t.Fatal(err)
			}
			seen = append(seen, m)
			to(g)
		}
		for _, u := range users {
			for _, f := range u.Outgoing() {
				if f.IsCommand(false) != true || f.TEI != TEIGroup || f.SAPI != SAPITEIMgmt {
					t.Fatalf("user sent %v", f)
				}
				deliver(f, func(g Frame) {
					if err := net.Receive(now, g); err != nil {
						t.Fatal(err)
					}
				})
			}
		}
		for _, f := range net.Outgoing() {
			if !f.IsCommand(true) {
				t.Fatalf("network sent %v", f)
			}
			deliver(f, func(g Frame) { // broadcast
				for _, u := range users {
					if err := u.Receive(now, g); err != nil {
						t.Fatal(err)
					}
				}
			})
		}
		if !moved {
			return seen
		}
	}
	t.Fatal("TEI management never went quiet")
	return nil
}

func seq(vals ...uint16) func() uint16 {
	return func() uint16 {
		if len(vals) == 0 {
			return 0
		}
		v := vals[0]
		vals = vals[1:]
		return v
	}
}

func TestTEIAssignment(t *testing.T) {
	net := NewTEINetwork()
	a := NewTEIUser(seq(0x1111, 0x3333))
	b := NewTEIUser(seq(0x2222))
	a.Request(t0)
	b.Request(t0)
	seen := teiWire(t, t0, net, a, b)
	want := []TEIMessage{
		{IdentityRequest, 0x1111, 127}, {IdentityRequest, 0x2222, 127},
		{IdentityAssigned, 0x1111, 64}, {IdentityAssigned, 0x2222, 65},
	}
	if len(seen) != len(want) {
		t.Fatalf("messages %v, want %v", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Errorf("message %d = %+v, want %+v", i, seen[i], want[i])
		}
	}
	if tei, ok := a.TEI(); !ok || tei != 64 {
		t.Errorf("a has TEI %d %v, want 64", tei, ok)
	}
	if tei, ok := b.TEI(); !ok || tei != 65 {
		t.Errorf("b has TEI %d %v, want 65", tei, ok)
	}
	if ev := a.Events(); len(ev) != 1 || !ev[0].Assigned || ev[0].TEI != 64 {
		t.Errorf("a's events %+v", ev)
	}

	// A check reaches both; only the one asked answers.
	net.Check(65)
	seen = teiWire(t, t0, net, a, b)
	if len(seen) != 2 || seen[1].Type != CheckResponse || seen[1].Ai != 65 {
		t.Errorf("check: %+v", seen)
	}
	// Removing all unassigns both; the freed TEI is given out again.
	net.Remove(TEIGroup)
	teiWire(t, t0, net, a, b)
	if _, ok := a.TEI(); ok {
		t.Error("a still has a TEI after removal")
	}
	a.Request(t0)
	teiWire(t, t0, net, a)
	if tei, _ := a.TEI(); tei != 64 {
		t.Errorf("after removal a got TEI %d, want 64", tei)
	}
}

func TestTEIRequestRetriesThenGivesUp(t *testing.T) {
	u := NewTEIUser(seq(1, 2, 3))
	u.Request(t0)
	now := t0
	var sent []uint16
	for range 10 {
		for _, f := range u.Outgoing() {
			m, _ := ParseTEI(f.Info)
			sent = append(sent, m.Ri)
		}
		d, ok := u.Deadline()
		if !ok {
			break
		}
		now = d
		u.Tick(now)
	}
	if len(sent) != N202 || sent[2] != 3 {
		t.Errorf("identity requests with Ri %v, want %d with fresh Ri", sent, N202)
	}
	if ev := u.Events(); len(ev) != 1 || ev[0].Assigned {
		t.Errorf("events %+v, want one failure", ev)
	}
	if got := now.Sub(t0); got != N202*T202 {
		t.Errorf("gave up after %v, want %v", got, N202*T202)
	}
}

func TestTEIDeniedWhenFull(t *testing.T) {
	net := NewTEINetwork()
	for i := range 63 {
		u := NewTEIUser(seq(uint16(i)))
		u.Request(t0)
		teiWire(t, t0, net, u)
		if _, ok := u.TEI(); !ok {
			t.Fatalf("user %d got no TEI", i)
		}
	}
	u := NewTEIUser(seq(999))
	u.Request(t0)
	seen := teiWire(t, t0, net, u)
	if len(seen) != 2 || seen[1].Type != IdentityDenied || seen[1].Ri != 999 {
		t.Errorf("64th request: %+v", seen)
	}
	if ev := u.Events(); len(ev) != 1 || ev[0].Assigned {
		t.Errorf("events %+v, want denial", ev)
	}
}

func TestTEIIgnoresOthers(t *testing.T) {
	u := NewTEIUser(seq(7))
	u.Request(t0)
	u.Outgoing()
	for _, m := range []TEIMessage{
		{IdentityAssigned, 8, 70}, // someone else's Ri
		{IdentityAssigned, 7, 10}, // not an automatic TEI
		{IdentityRemove, 0, 127},  // nothing to remove yet
	} {
		if err := u.Receive(t0, m.Frame(true)); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := u.TEI(); ok {
		t.Error("took a TEI not meant for it")
	}
	if err := u.Receive(t0, Frame{SAPI: 63, TEI: 127, Kind: UI, Info: []byte{1, 2}}); !errors.Is(err, ErrMalformed) {
		t.Errorf("short message: %v", err)
	}
}
