package isdn

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/hw/isdn/isdntest"
	"github.com/twinpbx/twinpbx/hw/isdn/pcap"
	"github.com/twinpbx/twinpbx/hw/isdn/q931"
)

var update = flag.Bool("update", false, "rewrite the golden captures in testdata")

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// wire joins a user-side and a network-side endpoint in virtual time and
// records every frame either side sends.
type wire struct {
	t       *testing.T
	now     time.Time
	user    *Endpoint
	net     *Endpoint
	pcap    *pcap.Writer
	userEvs []Event
	netEvs  []Event
	react   func(w *wire, side *Endpoint, ev Event)
}

func newWire(t *testing.T, typ SpanType, capture *bytes.Buffer) *wire {
	t.Helper()
	ri := uint16(0x4711)
	u, err := New(Config{Type: typ, Rand: func() uint16 { ri++; return ri }})
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(Config{Type: typ, Network: true})
	if err != nil {
		t.Fatal(err)
	}
	pw, err := pcap.NewWriter(capture)
	if err != nil {
		t.Fatal(err)
	}
	return &wire{t: t, now: t0, user: u, net: n, pcap: pw}
}

func (w *wire) flush() {
	for range 1000 {
		moved := false
		for _, s := range []struct {
			from, to *Endpoint
			net      bool
		}{{w.user, w.net, false}, {w.net, w.user, true}} {
			for _, f := range s.from.Outgoing(w.now) {
				moved = true
				// Frames one millisecond apart keep the capture readable.
				w.now = w.now.Add(time.Millisecond)
				if err := w.pcap.Write(pcap.Packet{Time: w.now, Direction: pcap.Sent, Network: s.net, Frame: f}); err != nil {
					w.t.Fatal(err)
				}
				if err := s.to.Receive(w.now, f); err != nil {
					w.t.Errorf("receiving % x: %v", f, err)
				}
			}
		}
		for _, s := range []struct {
			ep  *Endpoint
			evs *[]Event
		}{{w.user, &w.userEvs}, {w.net, &w.netEvs}} {
			for _, ev := range s.ep.Events(w.now) {
				moved = true
				*s.evs = append(*s.evs, ev)
				if w.react != nil {
					w.react(w, s.ep, ev)
				}
			}
		}
		if !moved {
			return
		}
	}
	w.t.Fatal("frames never stopped")
}

// until runs virtual time until cond holds or d has passed.
func (w *wire) until(d time.Duration, cond func() bool) {
	w.t.Helper()
	end := w.now.Add(d)
	for {
		w.flush()
		if cond() {
			return
		}
		next, ok := w.user.Deadline()
		if n2, ok2 := w.net.Deadline(); ok2 && (!ok || n2.Before(next)) {
			next, ok = n2, true
		}
		if !ok || next.After(end) {
			w.t.Fatalf("condition not met within %v", d)
		}
		w.now = next
		w.user.Tick(w.now)
		w.net.Tick(w.now)
	}
}

func answer(w *wire, side *Endpoint, ev Event) {
	if ev.Call == nil || ev.Call.Kind != q931.EventIncoming {
		return
	}
	c := side.Calls()
	for _, err := range []error{c.Proceeding(w.now, ev.Call.Call), c.Alert(w.now, ev.Call.Call), c.Answer(w.now, ev.Call.Call)} {
		if err != nil {
			w.t.Fatal(err)
		}
	}
}

func linkUp(ep *Endpoint) func() bool {
	return func() bool {
		tei, ok := ep.TEI()
		if !ok {
			return false
		}
		l, ok := ep.Link(tei)
		return ok && l.State() == 7
	}
}

// TestCallDecodedByTshark runs a whole call, user side to network side,
// on BRI point-to-multipoint (with TEI assignment) and on PRI, and checks
// what tshark makes of the capture.
func TestCallDecodedByTshark(t *testing.T) {
	tests := []struct {
		name    string
		typ     SpanType
		golden  string
		callRef string // tshark's q931.call_ref of the user's messages
		channel map[string]string
		teiMsgs string
	}{
		{name: "BRI point-to-multipoint", typ: BRIPointToMultipoint, golden: "bri-ptmp-call.pcap", callRef: "01",
			channel: map[string]string{"q931.channel.interface_type": "0", "q931.channel.exclusive": "1", "q931.channel.selection": "0x01"},
			teiMsgs: "1 2"},
		{name: "PRI", typ: PRI, golden: "pri-call.pcap", callRef: "00:01",
			channel: map[string]string{"q931.channel.interface_type": "1", "q931.channel.exclusive": "1", "q931.channel.number": "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var capture bytes.Buffer
			w := newWire(t, tt.typ, &capture)
			w.react = answer
			w.user.Start(w.now)
			w.until(5*time.Second, linkUp(w.user))
			call, err := w.user.Calls().Setup(w.now, int(mustTEI(t, w.user)), q931.SetupParams{
				Bearer:          q931.BearerCapability{Capability: q931.Speech, Layer1: q931.ALawG711},
				Calling:         q931.PartyNumber{Type: q931.TypeNational, Plan: q931.PlanISDN, Digits: "30123456"},
				Called:          q931.PartyNumber{Type: q931.TypeUnknown, Plan: q931.PlanISDN, Digits: "7001"},
				SendingComplete: true,
			})
			if err != nil {
				t.Fatal(err)
			}
			w.until(5*time.Second, func() bool { return call.State == q931.Active })
			if err := w.user.Calls().Hangup(w.now, call, q931.CauseNormalClearing); err != nil {
				t.Fatal(err)
			}
			w.until(5*time.Second, func() bool { return len(w.user.Calls().Calls())+len(w.net.Calls().Calls()) == 0 })

			path := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(path, capture.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if golden, err := os.ReadFile(path); err != nil {
				t.Errorf("reading the golden capture (go test -update writes it): %v", err)
			} else if !bytes.Equal(golden, capture.Bytes()) {
				t.Errorf("capture differs from %s (go test -update rewrites it after a deliberate change)", path)
			}

			isdntest.Tshark(t)
			tmp := filepath.Join(t.TempDir(), tt.golden)
			if err := os.WriteFile(tmp, capture.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			pkts := isdntest.Decode(t, tmp)
			var types, refs, dirs, teis []string
			byType := map[string]isdntest.Packet{}
			for _, p := range pkts {
				if p.Has("tei_management") {
					teis = append(teis, p.Field("tei_management", "tei.msg"))
				}
				if !p.Has("q931") {
					continue
				}
				mt := p.Field("q931", "q931.message_type")
				types = append(types, mt)
				refs = append(refs, p.Field("q931", "q931.call_ref"))
				dirs = append(dirs, p.Field("lapd", "lapd.direction"))
				if _, seen := byType[mt]; !seen {
					byType[mt] = p
				}
			}
			// SETUP, CALL PROCEEDING, ALERTING, CONNECT, CONNECT ACK,
			// DISCONNECT, RELEASE, RELEASE COMPLETE.
			if got, want := strings.Join(types, " "), "0x05 0x02 0x01 0x07 0x0f 0x45 0x4d 0x5a"; got != want {
				t.Errorf("message types %s, want %s", got, want)
			}
			if got, want := strings.Join(dirs, " "), "0 1 1 1 0 0 1 0"; got != want {
				t.Errorf("directions (0 user to network) %s, want %s", got, want)
			}
			for i, r := range refs {
				if r != tt.callRef {
					t.Errorf("message %d: call reference %q, want %q", i+1, r, tt.callRef)
				}
			}
			if got := strings.Join(teis, " "); got != tt.teiMsgs {
				t.Errorf("TEI management messages %q, want %q", got, tt.teiMsgs)
			}
			setup := byType["0x05"]
			for field, want := range map[string]string{
				"q931.calling_party_number.digits": "30123456",
				"q931.called_party_number.digits":  "7001",
				"q931.coding_standard":             "0x00",
			} {
				if got := setup.Field("q931", field); got != want {
					t.Errorf("SETUP %s = %q, want %q", field, got, want)
				}
			}
			if got := byType["0x45"].Field("q931", "q931.cause_value"); got != "16" {
				t.Errorf("DISCONNECT cause %q, want 16", got)
			}
			for field, want := range tt.channel {
				if got := byType["0x02"].Field("q931", field); got != want {
					t.Errorf("CALL PROCEEDING %s = %q, want %q", field, got, want)
				}
			}
			isdntest.CheckClean(t, tmp)
		})
	}
}

func mustTEI(t *testing.T, e *Endpoint) uint8 {
	t.Helper()
	tei, ok := e.TEI()
	if !ok {
		t.Fatal("no TEI")
	}
	return tei
}

// On BRI point-to-multipoint the network side offers a call by broadcast
// (UI on the group TEI); the terminal answers on its own data link, which
// it establishes for the purpose, and gets the call. tshark decodes the
// broadcast SETUP cleanly.
func TestBroadcastCall(t *testing.T) {
	var capture bytes.Buffer
	w := newWire(t, BRIPointToMultipoint, &capture)
	w.react = answer
	w.user.Start(w.now)
	w.until(5*time.Second, func() bool { _, ok := w.user.TEI(); return ok })
	call, err := w.net.Calls().Setup(w.now, q931.GroupLink, q931.SetupParams{
		Bearer:          q931.BearerCapability{Capability: q931.Speech, Layer1: q931.ALawG711},
		Channel:         q931.ChannelID{Exclusive: true, Channel: 2},
		Called:          q931.PartyNumber{Plan: q931.PlanISDN, Digits: "4930555"},
		SendingComplete: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	w.until(5*time.Second, func() bool { return call.State == q931.Active })
	if tei := mustTEI(t, w.user); call.Link != int(tei) {
		t.Errorf("call on link %d, the terminal has TEI %d", call.Link, tei)
	}
	if err := w.net.Calls().Hangup(w.now, call, q931.CauseNormalClearing); err != nil {
		t.Fatal(err)
	}
	w.until(5*time.Second, func() bool { return len(w.user.Calls().Calls())+len(w.net.Calls().Calls()) == 0 })

	isdntest.Tshark(t)
	tmp := filepath.Join(t.TempDir(), "broadcast.pcap")
	if err := os.WriteFile(tmp, capture.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	isdntest.CheckClean(t, tmp)
	var setupTEI string
	for _, p := range isdntest.Decode(t, tmp) {
		if p.Has("q931") && p.Field("q931", "q931.message_type") == "0x05" {
			setupTEI = p.Field("lapd", "lapd.tei")
		}
	}
	if setupTEI != "127" {
		t.Errorf("SETUP went on TEI %q, want the group TEI 127", setupTEI)
	}
}
