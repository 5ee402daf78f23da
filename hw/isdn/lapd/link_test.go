package lapd

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// pair is a user-side and a network-side link joined by a simulated wire in
// virtual time. drop decides whether a frame is lost on the wire.
type pair struct {
	t       *testing.T
	now     time.Time
	user    *Link
	net     *Link
	drop    func(fromNet bool, f Frame) bool
	trace   []string // frames in wire order: "u>" or "n>" and the frame
	userInd []Indication
	netInd  []Indication
}

func newPair(t *testing.T, user, net Config) *pair {
	t.Helper()
	u, err := NewLink(user)
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewLink(net)
	if err != nil {
		t.Fatal(err)
	}
	return &pair{t: t, now: t0, user: u, net: n}
}

// flush moves frames both ways until both sides are quiet.
func (p *pair) flush() {
	for range 10000 {
		moved := false
		for _, side := range []struct {
			from, to *Link
			fromNet  bool
		}{{p.user, p.net, false}, {p.net, p.user, true}} {
			for _, f := range side.from.Outgoing() {
				moved = true
				// Every frame goes through the codec, as on a real wire.
				b, err := f.Marshal()
				if err != nil {
					p.t.Fatalf("encoding %v: %v", f, err)
				}
				g, err := Parse(b)
				if err != nil {
					p.t.Fatalf("decoding %v: %v", f, err)
				}
				tag := "u>"
				if side.fromNet {
					tag = "n>"
				}
				if p.drop != nil && p.drop(side.fromNet, g) {
					p.trace = append(p.trace, tag+"lost "+short(g, side.fromNet))
					continue
				}
				p.trace = append(p.trace, tag+short(g, side.fromNet))
				side.to.Receive(p.now, g)
			}
		}
		p.userInd = append(p.userInd, p.user.Indications()...)
		p.netInd = append(p.netInd, p.net.Indications()...)
		if !moved {
			return
		}
	}
	p.t.Fatal("frames never stopped")
}

// run flushes and advances virtual time from timer to timer until d has
// passed.
func (p *pair) run(d time.Duration) {
	end := p.now.Add(d)
	for {
		p.flush()
		next := end
		for _, l := range []*Link{p.user, p.net} {
			if dl, ok := l.Deadline(); ok && dl.Before(next) {
				next = dl
			}
		}
		if next.Equal(end) {
			p.now = end
			p.user.Tick(p.now)
			p.net.Tick(p.now)
			p.flush()
			return
		}
		p.now = next
		p.user.Tick(p.now)
		p.net.Tick(p.now)
	}
}

// short names a frame compactly: kind, C or R, N(S)/N(R), P/F.
func short(f Frame, fromNet bool) string {
	s := f.Kind.String()
	if f.IsCommand(fromNet) {
		s += "c"
	} else {
		s += "r"
	}
	switch f.Kind {
	case I:
		s += fmt.Sprintf("%d/%d", f.NS, f.NR)
	case RR, RNR, REJ:
		s += fmt.Sprintf("%d", f.NR)
	}
	if f.PF {
		s += "p"
	}
	return s
}

func kinds(ind []Indication) string {
	var s []string
	for _, i := range ind {
		if i.Kind == Data {
			s = append(s, "data:"+string(i.Data))
		} else if i.Kind == Error {
			s = append(s, "error:"+string(i.Code))
		} else {
			s = append(s, i.Kind.String())
		}
	}
	return strings.Join(s, " ")
}

func (p *pair) expectTrace(want string) {
	p.t.Helper()
	if got := strings.Join(p.trace, " "); got != want {
		p.t.Errorf("frames:\n got %s\nwant %s", got, want)
	}
	p.trace = nil
}

func TestLinkScenarios(t *testing.T) {
	pri := func(network bool) Config { return PRIConfig(network) }
	bri := func(network bool) Config { return BRIConfig(network, 64) }
	tests := []struct {
		name     string
		cfg      func(network bool) Config
		drop     func(p *pair) func(fromNet bool, f Frame) bool
		scenario func(p *pair)
		trace    string
		userInd  string
		netInd   string
		userEnd  State
		netEnd   State
	}{
		{
			name: "establish from user, data both ways, release",
			cfg:  pri,
			scenario: func(p *pair) {
				p.user.Establish(p.now)
				p.run(0)
				_ = p.user.Send(p.now, []byte("a"))
				p.run(0)
				_ = p.net.Send(p.now, []byte("b"))
				p.run(0)
				p.user.Release(p.now)
				p.run(0)
			},
			trace:   "u>SABMEcp n>UArp u>Ic0/0 n>RRr1 n>Ic0/1 u>RRr1 u>DISCcp n>UArp",
			userInd: "up data:b down",
			netInd:  "up data:a down",
			userEnd: Released, netEnd: Released,
		},
		{
			name: "data before establishment is queued; window 7 sends all at once",
			cfg:  pri,
			scenario: func(p *pair) {
				for i := range 3 {
					_ = p.net.Send(p.now, []byte{'0' + byte(i)})
				}
				p.run(0)
			},
			trace:   "n>SABMEcp u>UArp n>Ic0/0 n>Ic1/0 n>Ic2/0 u>RRr1 u>RRr2 u>RRr3",
			userInd: "up data:0 data:1 data:2",
			netInd:  "up",
			userEnd: Established, netEnd: Established,
		},
		{
			name: "BRI window 1 waits for each acknowledgement",
			cfg:  bri,
			scenario: func(p *pair) {
				p.user.Establish(p.now)
				p.run(0)
				_ = p.user.Send(p.now, []byte("x"))
				_ = p.user.Send(p.now, []byte("y"))
				p.run(0)
			},
			trace:   "u>SABMEcp n>UArp u>Ic0/0 n>RRr1 u>Ic1/0 n>RRr2",
			userInd: "up",
			netInd:  "up data:x data:y",
			userEnd: Established, netEnd: Established,
		},
		{
			name: "lost SABME is repeated after T200",
			cfg:  pri,
			drop: func(p *pair) func(bool, Frame) bool {
				n := 0
				return func(_ bool, f Frame) bool { n++; return f.Kind == SABME && n == 1 }
			},
			scenario: func(p *pair) { p.user.Establish(p.now); p.run(1500 * time.Millisecond) },
			trace:    "u>lost SABMEcp u>SABMEcp n>UArp",
			userInd:  "up",
			netInd:   "up",
			userEnd:  Established, netEnd: Established,
		},
		{
			name: "no answer: N200 retries then released",
			cfg:  pri,
			drop: func(p *pair) func(bool, Frame) bool {
				return func(fromNet bool, f Frame) bool { return !fromNet }
			},
			scenario: func(p *pair) { p.user.Establish(p.now); p.run(10 * time.Second) },
			trace:    "u>lost SABMEcp u>lost SABMEcp u>lost SABMEcp u>lost SABMEcp",
			userInd:  "error:G down",
			userEnd:  Released, netEnd: Released,
		},
		{
			name: "lost I frame: REJ recovery",
			cfg:  pri,
			scenario: func(p *pair) {
				p.user.Establish(p.now)
				p.run(0)
				p.trace = nil
				lost := false
				p.drop = func(_ bool, f Frame) bool {
					if f.Kind == I && !lost {
						lost = true
						return true
					}
					return false
				}
				_ = p.user.Send(p.now, []byte("0"))
				_ = p.user.Send(p.now, []byte("1"))
				p.flush()
			},
			trace:   "u>lost Ic0/0 u>Ic1/0 n>REJr0 u>Ic0/0 u>Ic1/0 n>RRr1 n>RRr2",
			userInd: "up",
			netInd:  "up data:0 data:1",
			userEnd: Established, netEnd: Established,
		},
		{
			name: "lost acknowledgement: T200 poll and retransmission",
			cfg:  pri,
			scenario: func(p *pair) {
				p.user.Establish(p.now)
				p.run(0)
				p.trace = nil
				p.drop = func(fromNet bool, f Frame) bool { return fromNet && f.Kind == RR && !f.PF }
				_ = p.user.Send(p.now, []byte("a"))
				p.run(1500 * time.Millisecond)
			},
			trace:   "u>Ic0/0 n>lost RRr1 u>RRc0p n>RRr1p",
			userInd: "up",
			netInd:  "up data:a",
			userEnd: Established, netEnd: Established,
		},
		{
			name: "lost I frame and its repeat, recovered by the poll",
			cfg:  pri,
			scenario: func(p *pair) {
				p.user.Establish(p.now)
				p.run(0)
				p.trace = nil
				n := 0
				p.drop = func(fromNet bool, f Frame) bool {
					if f.Kind == I {
						n++
						return n == 1
					}
					return false
				}
				_ = p.user.Send(p.now, []byte("a"))
				p.run(1500 * time.Millisecond)
			},
			trace:   "u>lost Ic0/0 u>RRc0p n>RRr0p u>Ic0/0 n>RRr1",
			userInd: "up",
			netInd:  "up data:a",
			userEnd: Established, netEnd: Established,
		},
		{
			name: "idle link is polled after T203",
			cfg:  pri,
			scenario: func(p *pair) {
				p.user.Establish(p.now)
				p.run(0)
				p.trace = nil
				p.run(10500 * time.Millisecond)
			},
			trace:   "u>RRc0p n>RRc0p n>RRr0p u>RRr0p", // both T203 run out together
			userInd: "up",
			netInd:  "up",
			userEnd: Established, netEnd: Established,
		},
		{
			name: "dead peer: polls N200 times, then re-establishes and gives up",
			cfg:  pri,
			scenario: func(p *pair) {
				p.user.Establish(p.now)
				p.run(0)
				p.trace = nil
				p.drop = func(fromNet bool, f Frame) bool { return fromNet }
				_ = p.user.Send(p.now, []byte("a"))
				p.run(9 * time.Second)
			},
			trace:   "u>Ic0/0 n>lost RRr1 u>RRc0p n>lost RRr1p u>RRc0p n>lost RRr1p u>RRc0p n>lost RRr1p u>SABMEcp n>lost UArp u>SABMEcp n>lost UArp u>SABMEcp n>lost UArp u>SABMEcp n>lost UArp",
			userInd: "up error:I error:G down",
			netInd:  "up data:a error:F error:F error:F error:F", // every SABME re-establishes
			userEnd: Released, netEnd: Established,
		},
		{
			name: "release by the network, then refused establishment",
			cfg:  bri,
			scenario: func(p *pair) {
				p.net.Establish(p.now)
				p.run(0)
				p.net.Release(p.now)
				p.run(0)
				// The user's frames are lost from here; a SABME answered
				// with DM means the peer refuses.
				p.drop = func(fromNet bool, _ Frame) bool { return !fromNet }
				p.user.Receive(p.now, Frame{Kind: DISC, CR: true, PF: true, TEI: 64})
				p.user.Establish(p.now)
				p.user.Receive(p.now, Frame{Kind: DM, CR: false, PF: true, TEI: 64})
				p.flush()
			},
			trace:   "n>SABMEcp u>UArp n>DISCcp u>UArp u>lost DMrp u>lost SABMEcp",
			userInd: "up down down",
			netInd:  "up down",
			userEnd: Released, netEnd: Released,
		},
		{
			name: "establishment collision",
			cfg:  pri,
			scenario: func(p *pair) {
				p.user.Establish(p.now)
				p.net.Establish(p.now)
				p.run(0)
			},
			trace:   "u>SABMEcp n>SABMEcp n>UArp u>UArp",
			userInd: "up",
			netInd:  "up",
			userEnd: Established, netEnd: Established,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t, tt.cfg(false), tt.cfg(true))
			if tt.drop != nil {
				p.drop = tt.drop(p)
			}
			tt.scenario(p)
			p.expectTrace(tt.trace)
			if got := kinds(p.userInd); got != tt.userInd {
				t.Errorf("user indications %q, want %q", got, tt.userInd)
			}
			if got := kinds(p.netInd); got != tt.netInd {
				t.Errorf("network indications %q, want %q", got, tt.netInd)
			}
			if p.user.State() != tt.userEnd || p.net.State() != tt.netEnd {
				t.Errorf("end states user %v network %v, want %v %v", p.user.State(), p.net.State(), tt.userEnd, tt.netEnd)
			}
		})
	}
}

func TestLinkPeerErrors(t *testing.T) {
	tests := []struct {
		name  string
		in    Frame // from the network side to the established user side
		out   string
		ind   string
		state State
	}{
		{"N(R) ahead of V(S)", Frame{Kind: RR, NR: 5, CR: true}, "u>SABMEcp", "error:J", Establishing},
		{"I frame with bad N(R)", Frame{Kind: I, NR: 9, CR: true, Info: []byte("z")}, "u>SABMEcp", "data:z error:J", Establishing},
		{"out-of-sequence I frame", Frame{Kind: I, NS: 4, CR: true}, "u>REJr0", "", Established},
		{"poll is answered", Frame{Kind: RR, CR: true, PF: true}, "u>RRr0p", "", Established},
		{"RNR stops sending", Frame{Kind: RNR, CR: true}, "", "", Established},
		{"FRMR re-establishes", Frame{Kind: FRMR, Info: []byte{0, 0, 0, 0, 0}}, "u>SABMEcp", "error:K", Establishing},
		{"unsolicited UA", Frame{Kind: UA, PF: true}, "", "error:C", Established},
		{"DM F=0 re-establishes", Frame{Kind: DM}, "u>SABMEcp", "error:E", Establishing},
		{"I frame as response is ignored", Frame{Kind: I, Info: []byte("r")}, "", "", Established},
		{"too long information", Frame{Kind: I, CR: true, Info: make([]byte, N201+1)}, "", "error:O", Established},
		{"UI is passed up", Frame{Kind: UI, CR: true, Info: []byte("u")}, "", "unit-data", Established},
		{"XID is ignored", Frame{Kind: XID, CR: true}, "", "", Established},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t, PRIConfig(false), PRIConfig(true))
			p.user.Establish(p.now)
			p.run(0)
			p.trace, p.userInd = nil, nil
			p.user.Receive(p.now, tt.in)
			for _, f := range p.user.Outgoing() {
				p.trace = append(p.trace, "u>"+short(f, false))
			}
			p.expectTrace(tt.out)
			if got := kinds(p.user.Indications()); got != tt.ind {
				t.Errorf("indications %q, want %q", got, tt.ind)
			}
			if p.user.State() != tt.state {
				t.Errorf("state %v, want %v", p.user.State(), tt.state)
			}
		})
	}
}

func TestLinkRNRHoldsData(t *testing.T) {
	p := newPair(t, PRIConfig(false), PRIConfig(true))
	p.user.Establish(p.now)
	p.run(0)
	p.user.Receive(p.now, Frame{Kind: RNR, CR: true})
	p.trace = nil
	_ = p.user.Send(p.now, []byte("held"))
	if out := p.user.Outgoing(); len(out) != 0 {
		t.Fatalf("sent %v to a busy peer", out)
	}
	p.user.Receive(p.now, Frame{Kind: RR, CR: true})
	if out := p.user.Outgoing(); len(out) != 1 || out[0].Kind != I {
		t.Fatalf("after RR sent %v, want the held I frame", out)
	}
}

func TestConfigRejects(t *testing.T) {
	for _, c := range []Config{
		{K: 0, T200: 1, T203: 1, N200: 1, N201: 1},
		{K: 1, T200: 0, T203: 1, N200: 1, N201: 1},
		{K: 1, T200: 1, T203: 1, N200: 0, N201: 1},
		{K: 1, T200: 1, T203: 1, N200: 1, N201: 0},
		{TEI: 127, K: 1, T200: 1, T203: 1, N200: 1, N201: 1},
	} {
		if _, err := NewLink(c); err == nil {
			t.Errorf("NewLink(%+v): no error", c)
		}
	}
	l, err := NewLink(PRIConfig(false))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Send(t0, make([]byte, N201+1)); err == nil {
		t.Error("Send of more than N201 octets: no error")
	}
}

// FuzzLink feeds arbitrary frames and timer runs to an established link:
// nothing may panic, and the sequence variables must stay consistent.
func FuzzLink(f *testing.F) {
	f.Add([]byte{0x02, 0x01, 0x00, 0x00, 8, 0xff, 0x02, 0x01, 0x01, 0x03, 0xff, 0x02, 0x01, 0x53})
	f.Add([]byte{0x02, 0x01, 0x09, 0x00, 0xff, 0x02, 0x01, 0x7f, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		p := newPair(t, PRIConfig(false), PRIConfig(true))
		p.user.Establish(p.now)
		p.run(0)
		_ = p.user.Send(p.now, []byte("a"))
		_ = p.user.Send(p.now, []byte("b"))
		// 0xff separates frames; a lone 0xff advances time by a second.
		for _, chunk := range splitFF(data) {
			if len(chunk) == 0 {
				p.now = p.now.Add(time.Second)
				p.user.Tick(p.now)
			} else if fr, err := Parse(chunk); err == nil {
				p.user.Receive(p.now, fr)
			}
			p.user.Outgoing()
			p.user.Indications()
			u := p.user
			if out := (u.vs - u.va) & 127; int(out) > u.cfg.K {
				t.Fatalf("%d frames outstanding, window %d", out, u.cfg.K)
			}
		}
	})
}

func splitFF(b []byte) [][]byte {
	var out [][]byte
	start := 0
	for i, c := range b {
		if c == 0xff {
			out = append(out, b[start:i])
			start = i + 1
		}
	}
	return append(out, b[start:])
}
