package q931

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// pair joins a user-side and a network-side controller on link 0 through
// the codec, in virtual time. Messages that drop returns true for are lost.
type pair struct {
	t     *testing.T
	now   time.Time
	user  *Controller
	net   *Controller
	drop  func(fromNet bool, m Message) bool
	trace []string
	// events are "u:" or "n:" and the event; each side's events are
	// collected after the messages of one round, user side first.
	events []string
	// react runs on each event, so a test can answer like a PBX would.
	react func(p *pair, side *Controller, e Event)
}

func newPair(t *testing.T, pri bool) *pair {
	t.Helper()
	u, err := NewController(DefaultConfig(false, pri))
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewController(DefaultConfig(true, pri))
	if err != nil {
		t.Fatal(err)
	}
	return &pair{t: t, now: t0, user: u, net: n}
}

func (p *pair) flush() {
	for range 1000 {
		moved := false
		for _, s := range []struct {
			from, to *Controller
			net      bool
		}{{p.user, p.net, false}, {p.net, p.user, true}} {
			for _, o := range s.from.Outgoing() {
				moved = true
				b, err := o.Msg.Marshal()
				if err != nil {
					p.t.Fatalf("encoding %v: %v", o.Msg, err)
				}
				m, err := Parse(b)
				if err != nil {
					p.t.Fatalf("decoding %v: %v", o.Msg, err)
				}
				tag := "u>"
				if s.net {
					tag = "n>"
				}
				name := strings.ReplaceAll(m.Type.String(), " ", "_")
				if p.drop != nil && p.drop(s.net, m) {
					p.trace = append(p.trace, tag+"lost_"+name)
					continue
				}
				p.trace = append(p.trace, tag+name)
				s.to.Receive(p.now, o.Link, m)
			}
		}
		for _, s := range []struct {
			c   *Controller
			tag string
		}{{p.user, "u:"}, {p.net, "n:"}} {
			for _, e := range s.c.Events() {
				moved = true
				ev := s.tag + e.Kind.String()
				if e.Kind == EventReleased || e.Kind == EventDisconnected {
					ev += fmt.Sprintf("(%d)", e.Cause.Value)
				}
				p.events = append(p.events, ev)
				if p.react != nil {
					p.react(p, s.c, e)
				}
			}
		}
		if !moved {
			return
		}
	}
	p.t.Fatal("messages never stopped")
}

func (p *pair) run(d time.Duration) {
	end := p.now.Add(d)
	for {
		p.flush()
		next := end
		for _, c := range []*Controller{p.user, p.net} {
			if dl, ok := c.Deadline(); ok && dl.Before(next) {
				next = dl
			}
		}
		p.now = next
		p.user.Tick(p.now)
		p.net.Tick(p.now)
		if next.Equal(end) {
			p.flush()
			return
		}
	}
}

// answer makes the network or the user side take incoming calls like a
// phone that answers: proceeding, alerting, connect.
func answer(p *pair, side *Controller, e Event) {
	if e.Kind != EventIncoming {
		return
	}
	must(p.t, side.Proceeding(p.now, e.Call))
	must(p.t, side.Alert(p.now, e.Call))
	must(p.t, side.Answer(p.now, e.Call))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var speech = SetupParams{Bearer: BearerCapability{Capability: Speech, Layer1: ALawG711},
	Calling: PartyNumber{Type: TypeNational, Plan: PlanISDN, Digits: "301234"},
	Called:  PartyNumber{Plan: PlanISDN, Digits: "22"}, SendingComplete: true}

func TestCalls(t *testing.T) {
	tests := []struct {
		name     string
		pri      bool
		scenario func(p *pair)
		trace    string
		events   string
	}{
		{
			name: "user places, network answers, user hangs up",
			scenario: func(p *pair) {
				p.react = answer
				c, err := p.user.Setup(p.now, 0, speech)
				must(p.t, err)
				p.run(0)
				must(p.t, p.user.Hangup(p.now, c, CauseNormalClearing))
				p.run(0)
			},
			trace:  "u>SETUP n>CALL_PROCEEDING n>ALERTING n>CONNECT u>CONNECT_ACKNOWLEDGE u>DISCONNECT n>RELEASE u>RELEASE_COMPLETE",
			events: "n:incoming u:proceeding u:alerting u:connected u:released(16) n:disconnected(16) n:released(16)",
		},
		{
			name: "network places on PRI, user answers, network hangs up",
			pri:  true,
			scenario: func(p *pair) {
				p.react = answer
				c, err := p.net.Setup(p.now, 0, speech)
				must(p.t, err)
				p.run(0)
				if c.State != Active || c.Channel.Channel != 1 || !c.Channel.Exclusive {
					p.t.Errorf("network call %v on channel %+v", c.State, c.Channel)
				}
				must(p.t, p.net.Hangup(p.now, c, CauseNormalClearing))
				p.run(0)
			},
			trace:  "n>SETUP u>CALL_PROCEEDING u>ALERTING u>CONNECT n>CONNECT_ACKNOWLEDGE n>DISCONNECT u>RELEASE n>RELEASE_COMPLETE",
			events: "u:incoming u:connected n:proceeding n:alerting n:connected u:disconnected(16) u:released(16) n:released(16)",
		},
		{
			name: "busy: the network rejects the SETUP",
			scenario: func(p *pair) {
				p.react = func(p *pair, side *Controller, e Event) {
					if e.Kind == EventIncoming {
						must(p.t, side.Hangup(p.now, e.Call, CauseUserBusy))
					}
				}
				_, err := p.user.Setup(p.now, 0, speech)
				must(p.t, err)
				p.run(0)
			},
			trace:  "u>SETUP n>RELEASE_COMPLETE",
			events: "n:incoming u:released(17) n:released(17)",
		},
		{
			name: "T303: SETUP repeated once, then the call is cleared",
			scenario: func(p *pair) {
				p.drop = func(bool, Message) bool { return true }
				_, err := p.user.Setup(p.now, 0, speech)
				must(p.t, err)
				p.run(10 * time.Second)
			},
			trace:  "u>lost_SETUP u>lost_SETUP u>lost_RELEASE_COMPLETE",
			events: "u:released(102)",
		},
		{
			name: "T310: proceeding but never alerting",
			scenario: func(p *pair) {
				p.react = func(p *pair, side *Controller, e Event) {
					if e.Kind == EventIncoming {
						must(p.t, side.Proceeding(p.now, e.Call))
					}
				}
				_, err := p.user.Setup(p.now, 0, speech)
				must(p.t, err)
				p.run(31 * time.Second)
			},
			trace:  "u>SETUP n>CALL_PROCEEDING u>DISCONNECT n>RELEASE u>RELEASE_COMPLETE",
			events: "n:incoming u:proceeding u:released(102) n:disconnected(102) n:released(102)",
		},
		{
			name: "T313: CONNECT never acknowledged",
			scenario: func(p *pair) {
				p.drop = func(fromNet bool, m Message) bool { return fromNet && m.Type == ConnectAck }
				p.react = answer
				_, err := p.net.Setup(p.now, 0, speech)
				must(p.t, err)
				p.run(5 * time.Second)
			},
			trace:  "n>SETUP u>CALL_PROCEEDING u>ALERTING u>CONNECT n>lost_CONNECT_ACKNOWLEDGE u>DISCONNECT n>RELEASE u>RELEASE_COMPLETE",
			events: "u:incoming n:proceeding n:alerting n:connected u:released(102) n:disconnected(102) n:released(102)",
		},
		{
			name: "T305 and T308: a peer that stops answering while clearing",
			scenario: func(p *pair) {
				p.react = answer
				c, err := p.user.Setup(p.now, 0, speech)
				must(p.t, err)
				p.run(0)
				p.trace, p.events = nil, nil
				p.drop = func(bool, Message) bool { return true }
				must(p.t, p.user.Hangup(p.now, c, CauseNormalClearing))
				p.run(40 * time.Second)
			},
			trace:  "u>lost_DISCONNECT u>lost_RELEASE u>lost_RELEASE",
			events: "u:released(102)",
		},
		{
			name: "clearing collision: both sides send DISCONNECT",
			scenario: func(p *pair) {
				p.react = answer
				c, err := p.user.Setup(p.now, 0, speech)
				must(p.t, err)
				p.run(0)
				p.trace, p.events = nil, nil
				must(p.t, p.user.Hangup(p.now, c, CauseNormalClearing))
				must(p.t, p.net.Hangup(p.now, p.net.Calls()[0], CauseNormalClearing))
				p.run(0)
			},
			trace:  "u>DISCONNECT n>DISCONNECT n>RELEASE u>RELEASE u>RELEASE_COMPLETE n>RELEASE_COMPLETE",
			events: "u:disconnected(16) u:released(16) n:disconnected(16) n:released(16)",
		},
		{
			name: "overlap receiving: SETUP ACK and INFORMATION",
			scenario: func(p *pair) {
				p.react = func(p *pair, side *Controller, e Event) {
					switch e.Kind {
					case EventIncoming:
						must(p.t, side.SetupAck(p.now, e.Call))
					case EventInfo:
						if e.Digits == "23" && e.Call.Called.Digits == "123" {
							must(p.t, side.Proceeding(p.now, e.Call))
						}
					case EventSetupAcked:
						must(p.t, p.user.Info(p.now, e.Call, "1"))
						must(p.t, p.user.Info(p.now, e.Call, "23"))
					}
				}
				p2 := speech
				p2.Called.Digits, p2.SendingComplete = "", false
				_, err := p.user.Setup(p.now, 0, p2)
				must(p.t, err)
				p.run(0)
			},
			trace:  "u>SETUP n>SETUP_ACKNOWLEDGE u>INFORMATION u>INFORMATION n>CALL_PROCEEDING",
			events: "n:incoming u:setup-acked n:info n:info u:proceeding",
		},
		{
			name: "T301: alerting but never answered",
			scenario: func(p *pair) {
				p.react = func(p *pair, side *Controller, e Event) {
					if e.Kind == EventIncoming {
						must(p.t, side.Proceeding(p.now, e.Call))
						must(p.t, side.Alert(p.now, e.Call))
					}
				}
				_, err := p.user.Setup(p.now, 0, speech)
				must(p.t, err)
				p.run(179 * time.Second)
				p.events = append(p.events, "|")
				p.run(2 * time.Second)
			},
			trace:  "u>SETUP n>CALL_PROCEEDING n>ALERTING u>DISCONNECT n>RELEASE u>RELEASE_COMPLETE",
			events: "n:incoming u:proceeding u:alerting | u:released(102) n:disconnected(102) n:released(102)",
		},
		{
			name: "T302: dialling ends after the last digit, the network proceeds",
			scenario: func(p *pair) {
				p.react = func(p *pair, side *Controller, e Event) {
					switch e.Kind {
					case EventIncoming:
						must(p.t, side.SetupAck(p.now, e.Call))
					case EventSetupAcked:
						must(p.t, p.user.Info(p.now, e.Call, "12"))
					case EventDialEnd:
						if e.Digits != "12" {
							p.t.Errorf("dial end with %q", e.Digits)
						}
						must(p.t, side.Proceeding(p.now, e.Call))
					}
				}
				p2 := speech
				p2.Called.Digits, p2.SendingComplete = "", false
				_, err := p.user.Setup(p.now, 0, p2)
				must(p.t, err)
				p.run(14 * time.Second)
				p.events = append(p.events, "|")
				p.run(2 * time.Second)
			},
			trace:  "u>SETUP n>SETUP_ACKNOWLEDGE u>INFORMATION n>CALL_PROCEEDING",
			events: "n:incoming u:setup-acked n:info | n:dial-end u:proceeding",
		},
		{
			name: "T302 without any digit: cause 28",
			scenario: func(p *pair) {
				p.react = func(p *pair, side *Controller, e Event) {
					if e.Kind == EventIncoming {
						must(p.t, side.SetupAck(p.now, e.Call))
					}
				}
				p2 := speech
				p2.Called.Digits, p2.SendingComplete = "", false
				_, err := p.user.Setup(p.now, 0, p2)
				must(p.t, err)
				p.run(16 * time.Second)
			},
			trace:  "u>SETUP n>SETUP_ACKNOWLEDGE n>DISCONNECT u>RELEASE n>RELEASE_COMPLETE",
			events: "n:incoming u:setup-acked u:disconnected(28) u:released(28) n:released(28)",
		},
		{
			name: "T304: overlap sending gets no answer",
			scenario: func(p *pair) {
				p.user.cfg.T304 = 5 * time.Second
				p.react = func(p *pair, side *Controller, e Event) {
					switch e.Kind {
					case EventIncoming:
						must(p.t, side.SetupAck(p.now, e.Call))
					case EventSetupAcked:
						must(p.t, p.user.Info(p.now, e.Call, "1"))
					}
				}
				p2 := speech
				p2.Called.Digits, p2.SendingComplete = "", false
				_, err := p.user.Setup(p.now, 0, p2)
				must(p.t, err)
				p.run(4 * time.Second)
				p.events = append(p.events, "|")
				p.run(2 * time.Second)
			},
			trace:  "u>SETUP n>SETUP_ACKNOWLEDGE u>INFORMATION u>DISCONNECT n>RELEASE u>RELEASE_COMPLETE",
			events: "n:incoming u:setup-acked n:info | u:released(102) n:disconnected(102) n:released(102)",
		},
		{
			name: "T309: the data link fails under an active call and does not come back",
			scenario: func(p *pair) {
				p.react = answer
				_, err := p.user.Setup(p.now, 0, speech)
				must(p.t, err)
				p.run(0)
				p.trace, p.events = nil, nil
				p.user.LinkDown(p.now, 0)
				p.net.LinkDown(p.now, 0)
				p.run(89 * time.Second)
				p.events = append(p.events, "|")
				p.run(2 * time.Second)
			},
			trace:  "",
			events: "| u:released(27) n:released(27)",
		},
		{
			name: "T309: the data link comes back in time, STATUS tells the state",
			scenario: func(p *pair) {
				p.react = answer
				c, err := p.user.Setup(p.now, 0, speech)
				must(p.t, err)
				p.run(0)
				p.trace, p.events = nil, nil
				p.user.LinkDown(p.now, 0)
				p.run(10 * time.Second)
				p.user.LinkUp(p.now, 0)
				p.run(100 * time.Second)
				if c.State != Active {
					p.t.Errorf("call %v after the link came back", c.State)
				}
			},
			trace:  "u>STATUS",
			events: "",
		},
		{
			name: "data link failure clears a call that is not active yet",
			scenario: func(p *pair) {
				p.react = func(p *pair, side *Controller, e Event) {
					if e.Kind == EventIncoming {
						must(p.t, side.Proceeding(p.now, e.Call))
					}
				}
				_, err := p.user.Setup(p.now, 0, speech)
				must(p.t, err)
				p.run(0)
				p.user.LinkDown(p.now, 0)
				p.run(0)
			},
			trace:  "u>SETUP n>CALL_PROCEEDING",
			events: "n:incoming u:proceeding u:released(41)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t, tt.pri)
			tt.scenario(p)
			if got := strings.Join(p.trace, " "); got != tt.trace {
				t.Errorf("messages:\n got %s\nwant %s", got, tt.trace)
			}
			if got := strings.Join(p.events, " "); got != tt.events {
				t.Errorf("events:\n got %s\nwant %s", got, tt.events)
			}
		})
	}
}

func TestUnexpectedMessages(t *testing.T) {
	bri := func(v uint16, flag bool) CallRef { return CallRef{Len: 1, Value: v, Flag: flag} }
	tests := []struct {
		name  string
		in    Message // to the user side, which has call 1 (placed by it) active
		reply string
		event string
	}{
		{"unknown call reference", Message{CallRef: bri(9, true), Type: Alerting}, "RELEASE COMPLETE cause 81", ""},
		{"RELEASE for an unknown call", Message{CallRef: bri(9, false), Type: Release}, "RELEASE COMPLETE cause 81", ""},
		{"STATUS ENQUIRY", Message{CallRef: bri(1, true), Type: StatusEnquiry}, "STATUS cause 30 state 10", ""},
		{"STATUS ENQUIRY for no call", Message{CallRef: bri(9, false), Type: StatusEnquiry}, "STATUS cause 30 state 0", ""},
		{"message in the wrong state", Message{CallRef: bri(1, true), Type: Alerting}, "STATUS cause 101 state 10", "failed"},
		{"unknown message type", Message{CallRef: bri(1, true), Type: 0x60}, "STATUS cause 101 state 10", "failed"},
		{"peer lost the call", Message{CallRef: bri(1, true), Type: Status, IEs: []IE{Cause{Value: CauseWrongState}.IE(), CallStateIE(0)}}, "", "released"},
		{"SETUP without bearer", Message{CallRef: bri(5, false), Type: Setup}, "RELEASE COMPLETE cause 96", "failed"},
		{"SETUP with a bad channel", Message{CallRef: bri(5, false), Type: Setup, IEs: []IE{BearerCapability{}.IE(), {ID: IEChannelID}}}, "RELEASE COMPLETE cause 100", "failed"},
		{"RESTART", Message{CallRef: Global(1), Type: Restart, IEs: []IE{RestartIndicatorIE(RestartAllInterfaces)}}, "RESTART ACKNOWLEDGE", "released"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t, false)
			p.react = answer
			if _, err := p.user.Setup(p.now, 0, speech); err != nil {
				t.Fatal(err)
			}
			p.run(0)
			p.user.Receive(p.now, 0, tt.in)
			var replies []string
			for _, o := range p.user.Outgoing() {
				s := o.Msg.Type.String()
				if ie, ok := o.Msg.Find(IECause); ok {
					c, _ := ParseCause(ie.Data)
					s += fmt.Sprintf(" cause %d", c.Value)
				}
				if ie, ok := o.Msg.Find(IECallState); ok {
					s += fmt.Sprintf(" state %d", ie.Data[0])
				}
				if o.Msg.CallRef.Flag == tt.in.CallRef.Flag && tt.in.CallRef.Value != 0 {
					t.Errorf("reply %v kept the call reference flag of %v", o.Msg, tt.in)
				}
				replies = append(replies, s)
			}
			if got := strings.Join(replies, "; "); got != tt.reply {
				t.Errorf("replies %q, want %q", got, tt.reply)
			}
			var evs []string
			for _, e := range p.user.Events() {
				evs = append(evs, e.Kind.String())
			}
			if got := strings.Join(evs, " "); got != tt.event {
				t.Errorf("events %q, want %q", got, tt.event)
			}
		})
	}
}

func TestRequestsInWrongState(t *testing.T) {
	p := newPair(t, false)
	c, err := p.user.Setup(p.now, 0, speech)
	must(t, err)
	for name, f := range map[string]func() error{
		"alert":      func() error { return p.user.Alert(p.now, c) },
		"answer":     func() error { return p.user.Answer(p.now, c) },
		"proceeding": func() error { return p.user.Proceeding(p.now, c) },
		"setup ack":  func() error { return p.user.SetupAck(p.now, c) },
	} {
		if err := f(); err == nil {
			t.Errorf("%s on an outgoing call: no error", name)
		}
	}
}

func TestCallReferencesWrapAndAreUnique(t *testing.T) {
	p := newPair(t, false)
	seen := map[uint16]bool{}
	for range 127 {
		c, err := p.user.Setup(p.now, 0, speech)
		must(t, err)
		if c.Ref == 0 || c.Ref > 127 || seen[c.Ref] {
			t.Fatalf("call reference %d (seen %v)", c.Ref, seen[c.Ref])
		}
		seen[c.Ref] = true
	}
	if _, err := p.user.Setup(p.now, 0, speech); err == nil {
		t.Error("a 128th BRI call got a call reference")
	}
	// Another link has its own call references.
	if _, err := p.user.Setup(p.now, 1, speech); err != nil {
		t.Error(err)
	}
}

// FuzzController feeds arbitrary messages to both sides in the middle of a
// call: nothing may panic and every call keeps a valid reference.
func FuzzController(f *testing.F) {
	f.Add([]byte{0x08, 0x01, 0x81, 0x45, 0x08, 0x02, 0x80, 0x90})
	f.Add([]byte{0x08, 0x01, 0x01, 0x05, 0x04, 0x02, 0x80, 0x90, 0x18, 0x01, 0x89})
	f.Add([]byte{0x08, 0x01, 0x00, 0x46, 0x79, 0x01, 0x87})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		p := newPair(t, false)
		p.react = answer
		_, _ = p.user.Setup(p.now, 0, speech)
		p.run(0)
		p.user.Receive(p.now, 0, m)
		p.net.Receive(p.now, 0, m)
		p.run(time.Minute)
		for _, c := range append(p.user.Calls(), p.net.Calls()...) {
			if c.Ref == 0 || c.Ref > 127 {
				t.Fatalf("call with reference %d", c.Ref)
			}
		}
	})
}

// A call offered by broadcast on BRI point-to-multipoint goes to every
// terminal; the first to answer gets it, a later one is told to clear
// with cause 26.
func TestBroadcastSetup(t *testing.T) {
	n, err := NewController(DefaultConfig(true, false))
	must(t, err)
	var users [2]*Controller
	for i := range users {
		users[i], err = NewController(DefaultConfig(false, false))
		must(t, err)
	}
	links := [2]int{64, 65}
	if _, err := users[0].Setup(t0, GroupLink, speech); err == nil {
		t.Error("the user side offered a call by broadcast")
	}
	c, err := n.Setup(t0, GroupLink, speech)
	must(t, err)
	out := n.Outgoing()
	if len(out) != 1 || out[0].Link != GroupLink || out[0].Msg.Type != Setup {
		t.Fatalf("broadcast SETUP went out as %+v", out)
	}
	// Both terminals take it; the one on TEI 65 answers first.
	for i, u := range users {
		u.Receive(t0, links[i], out[0].Msg)
		evs := u.Events()
		if len(evs) != 1 || evs[0].Kind != EventIncoming {
			t.Fatalf("terminal %d: %+v", i, evs)
		}
		if i == 1 {
			must(t, u.Answer(t0, evs[0].Call))
		} else {
			must(t, u.Alert(t0, evs[0].Call))
		}
	}
	for _, o := range users[1].Outgoing() {
		n.Receive(t0, links[1], o.Msg)
	}
	if c.Link != 65 || c.State != Active {
		t.Errorf("call on link %d in %v, want 65 active", c.Link, c.State)
	}
	for _, o := range users[0].Outgoing() {
		n.Receive(t0, links[0], o.Msg)
	}
	var got []string
	for _, o := range n.Outgoing() {
		cause := ""
		if ie, ok := o.Msg.Find(IECause); ok {
			cs, _ := ParseCause(ie.Data)
			cause = fmt.Sprintf("(%d)", cs.Value)
		}
		got = append(got, fmt.Sprintf("%d:%v%s", o.Link, o.Msg.Type, cause))
	}
	if want := "65:CONNECT ACKNOWLEDGE 64:RELEASE(26)"; strings.Join(got, " ") != want {
		t.Errorf("network sent %q, want %q", strings.Join(got, " "), want)
	}
}

// Overlap dialling either way: the call state number is the same on both
// sides, 2 for a call the user placed and 25 for one the network placed
// (Q.931 U2/N2, U25/N25), and the SETUP's or an INFORMATION's sending
// complete is kept.
func TestOverlapStates(t *testing.T) {
	for _, fromNet := range []bool{false, true} {
		t.Run(fmt.Sprintf("network places: %v", fromNet), func(t *testing.T) {
			p := newPair(t, true)
			caller, callee := p.user, p.net
			want := OverlapSending
			if fromNet {
				caller, callee, want = p.net, p.user, OverlapReceiving
			}
			var in *Call
			p.react = func(p *pair, side *Controller, e Event) {
				switch {
				case side == callee && e.Kind == EventIncoming:
					in = e.Call
					must(p.t, side.SetupAck(p.now, e.Call))
				case side == callee && e.Kind == EventDialEnd:
					must(p.t, side.Proceeding(p.now, e.Call))
				}
			}
			p2 := speech
			p2.Called.Digits, p2.SendingComplete = "49", false
			out, err := caller.Setup(p.now, 0, p2)
			must(t, err)
			p.run(0)
			if out.State != want || in.State != want || in.SendingComplete {
				t.Fatalf("states %v / %v (complete %v), want %v", out.State, in.State, in.SendingComplete, want)
			}
			must(t, caller.Info(p.now, out, "30"))
			p.run(20 * time.Second)
			if in.Called.Digits != "4930" || out.State != p2State(fromNet, OutgoingProceeding, IncomingProceeding) {
				t.Errorf("called %q, caller in %v", in.Called.Digits, out.State)
			}
			if e := strings.Join(p.events, " "); !strings.Contains(e, "dial-end") {
				t.Errorf("events %s", e)
			}
		})
	}
}

func p2State(fromNet bool, user, network State) State {
	if fromNet {
		return network
	}
	return user
}

func TestSendingCompleteKept(t *testing.T) {
	p := newPair(t, false)
	var in *Call
	p.react = func(p *pair, side *Controller, e Event) {
		if e.Kind == EventIncoming {
			in = e.Call
		}
	}
	_, err := p.user.Setup(p.now, 0, speech)
	must(t, err)
	p.run(0)
	if in == nil || !in.SendingComplete || in.Called.Digits != "22" {
		t.Errorf("incoming call %+v", in)
	}
}
