package vmtest

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/hw/isdn/card"
	"github.com/twinpbx/twinpbx/hw/relay"
)

// TestTwinLine plays both machines on a TwinLine's sockets, without
// VMs: each card port hears layer 1 up only while the relay board,
// switched over the relay ports, gives it the line, and LOS when the
// relay leaves it.
func TestTwinLine(t *testing.T) {
	dir := t.TempDir()
	line, err := NewTwinLine(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := line.Close(); err != nil {
			t.Error(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func(node, port string) net.Conn {
		t.Helper()
		c, err := net.Dial("unix", twinSocket(dir, node, port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	cards := map[string]*card.Serial{}
	relays := map[string]net.Conn{}
	for _, node := range TwinNodes {
		cards[node] = card.NewSerial(dial(node, "isdn"), nil)
		relays[node] = dial(node, "relay")
	}
	// expectL1 waits until node's card hears layer 1 in the given state
	// (a state said again before it, as the exchange's own start says
	// up, is fine).
	expectL1 := func(node string, up bool) {
		t.Helper()
		for {
			r, err := cards[node].Receive(ctx)
			if err != nil {
				t.Fatalf("%s's card waiting for layer 1 up=%v: %v", node, up, err)
			}
			if r.Kind == card.Layer1 && r.L1.Up == up {
				if !up && r.L1.Alarms != card.LOS {
					t.Fatalf("%s's card: layer 1 down with %v, want LOS", node, r.L1.Alarms)
				}
				return
			}
		}
	}
	command := func(node, cmd string) {
		t.Helper()
		if _, err := io.WriteString(relays[node], cmd+"\r"); err != nil {
			t.Fatal(err)
		}
		// The board echoes and ends with its prompt.
		buf := make([]byte, 0, 64)
		b := make([]byte, 64)
		for len(buf) == 0 || buf[len(buf)-1] != '>' {
			n, err := relays[node].Read(b)
			if err != nil {
				t.Fatalf("reading the board's answer to %q: %v", cmd, err)
			}
			buf = append(buf, b[:n]...)
		}
	}

	// At rest the relay gives the line to side A.
	expectL1("a", true)
	if _, ok := line.Selected("a"); ok {
		t.Error("a switched the relay before it sent anything")
	}
	command("b", "relay on 0")
	if side, ok := line.Selected("b"); !ok || side != relay.B || line.Side() != relay.B {
		t.Fatalf("after b's relay on: b selected %v %v, board at %v", side, ok, line.Side())
	}
	expectL1("a", false)
	expectL1("b", true)
	if _, err := line.Exchange(ctx, relay.B); err != nil {
		t.Fatal(err)
	}
	if n := line.Switches(); n != 1 {
		t.Errorf("Switches = %d after one switch", n)
	}
	command("a", "relay off 0")
	expectL1("b", false)
	expectL1("a", true)
	if side, ok := line.Selected("a"); !ok || side != relay.A {
		t.Fatalf("after a's relay off: a selected %v %v", side, ok)
	}
}
