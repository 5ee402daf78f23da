package q931

import (
	"errors"
	"fmt"
	"time"
)

// Config sets up a Controller.
type Config struct {
	// Network is true on the network (exchange) side.
	Network bool
	// PRI selects two-octet call references and the primary-rate channel
	// identification; otherwise BRI.
	PRI bool
	// Timers (Q.931 table 9-1/9-2; libpri's defaults in DefaultConfig).
	T303 time.Duration // SETUP sent, no answer: repeat once, then clear
	T305 time.Duration // DISCONNECT sent, no RELEASE: send RELEASE
	T308 time.Duration // RELEASE sent, no RELEASE COMPLETE: repeat once, then free
	T310 time.Duration // CALL PROCEEDING received, nothing after: clear
	T313 time.Duration // CONNECT sent (user side), no CONNECT ACK: clear
	// Timers Q.931 makes optional; zero takes the value of DefaultConfig.
	T301 time.Duration // ALERTING received, no CONNECT: clear
	T302 time.Duration // SETUP ACK sent (network side), no more INFORMATION: dialling ends
	T304 time.Duration // SETUP ACK received (user side), no progress: clear
	T309 time.Duration // data link failed under an active call: clear unless it is back in time
}

// GroupLink is the link of a call offered by broadcast on a BRI
// point-to-multipoint line (the group TEI): Setup on it sends SETUP to
// every terminal, and the first terminal that answers gets the call.
const GroupLink = 127

// DefaultConfig returns libpri's timer values: T303 4 s, T305 30 s, T308
// 4 s, T310 30 s (Q.931's lower bound), T313 4 s; and Q.931's for the
// others: T301 3 min, T302 15 s, T304 30 s, T309 90 s.
func DefaultConfig(network, pri bool) Config {
	return Config{Network: network, PRI: pri, T303: 4 * time.Second, T305: 30 * time.Second,
		T308: 4 * time.Second, T310: 30 * time.Second, T313: 4 * time.Second,
		T301: 3 * time.Minute, T302: 15 * time.Second, T304: 30 * time.Second, T309: 90 * time.Second}
}

func (c Config) crLen() int {
	if c.PRI {
		return 2
	}
	return 1
}

// State is a call state; the number is the one Q.931 defines (U1/N1 = 1,
// ...), sent in the call state element.
type State uint8

// Call states used by basic calls. The same number names the user-side
// state Un and the network-side state Nn.
const (
	Null                 State = 0  // U0 / N0
	CallInitiated        State = 1  // U1: SETUP sent / N1: SETUP received
	OverlapSending       State = 2  // a call the user placed: U2 SETUP ACK received / N2 sent
	OutgoingProceeding   State = 3  // U3: CALL PROCEEDING received / N3: sent
	CallDelivered        State = 4  // U4: ALERTING received / N4: sent
	CallPresent          State = 6  // U6: SETUP received / N6: SETUP sent
	CallReceived         State = 7  // U7: ALERTING sent / N7: received
	ConnectRequest       State = 8  // U8: CONNECT sent / N8
	IncomingProceeding   State = 9  // U9: CALL PROCEEDING sent / N9: received
	Active               State = 10 // U10 / N10
	DisconnectRequest    State = 11 // U11: DISCONNECT sent / N11: received
	DisconnectIndication State = 12 // U12: DISCONNECT received / N12: sent
	ReleaseRequest       State = 19 // U19 / N19: RELEASE sent
	OverlapReceiving     State = 25 // a call the network placed: U25 SETUP ACK sent / N25 received
)

var stateNames = map[State]string{
	Null: "null", CallInitiated: "call initiated", OverlapSending: "overlap sending",
	OutgoingProceeding: "outgoing call proceeding", CallDelivered: "call delivered",
	CallPresent: "call present", CallReceived: "call received", ConnectRequest: "connect request",
	IncomingProceeding: "incoming call proceeding", Active: "active", DisconnectRequest: "disconnect request",
	DisconnectIndication: "disconnect indication", ReleaseRequest: "release request", OverlapReceiving: "overlap receiving",
}

func (s State) String() string {
	if n, ok := stateNames[s]; ok {
		return fmt.Sprintf("%d %s", uint8(s), n)
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Call is one call on a Controller. Its fields are read-only for callers.
type Call struct {
	// Link identifies the data link the call runs on (on a BRI
	// point-to-multipoint line, the terminal's TEI).
	Link int
	// Ref is the call reference value; Outgoing is true when this side
	// allocated it (placed the call).
	Ref      uint16
	Outgoing bool
	State    State
	Bearer   BearerCapability
	Channel  ChannelID
	Calling  PartyNumber
	Called   PartyNumber
	// SendingComplete: the SETUP or an INFORMATION of an incoming call said
	// the called number is complete.
	SendingComplete bool
	// Cause is the last cause sent or received while clearing.
	Cause Cause

	timer      time.Time
	timerName  string
	timerCount int
	setup      Message // kept for a repeat on T303
	release    Message // kept for a repeat on T308
	broadcast  bool    // offered on GroupLink, taken by Link
}

// SetupParams are what SETUP carries.
type SetupParams struct {
	Bearer          BearerCapability
	Channel         ChannelID
	Calling, Called PartyNumber
	SendingComplete bool
	Display         string
}

// EventKind is what happened to a call.
type EventKind int

// Call events.
const (
	// EventIncoming: a SETUP arrived; answer with Proceeding, Alert, Answer or
	// Hangup.
	EventIncoming EventKind = iota + 1
	EventSetupAcked
	EventProceeding
	EventAlerting
	EventProgress
	EventInfo
	EventConnected
	// EventDisconnected: the peer cleared (DISCONNECT); RELEASE went out.
	EventDisconnected
	// EventReleased: the call reference is free; the call is over.
	EventReleased
	// EventFailed: a message arrived that the call could not use; the peer was
	// told with STATUS or RELEASE COMPLETE.
	EventFailed
	// EventDialEnd: overlap receiving (network side) got no more digits for
	// T302; the number so far is in Call.Called. Answer with Proceeding,
	// Alert or Answer, or clear (28 invalid number format).
	EventDialEnd
)

func (k EventKind) String() string {
	names := [...]string{"", "incoming", "setup-acked", "proceeding", "alerting", "progress", "info",
		"connected", "disconnected", "released", "failed", "dial-end"}
	if k < 0 || int(k) >= len(names) {
		return fmt.Sprintf("event(%d)", int(k))
	}
	return names[k]
}

// Event reports a change of a call to the layer above.
type Event struct {
	Kind   EventKind
	Call   *Call
	Cause  Cause
	Digits string // InfoEvent: called digits received
	Reason string
}

// Outgoing is a message to send on a data link.
type Outgoing struct {
	Link int
	Msg  Message
}

// Controller runs the calls of one side of a D channel. It is not safe for
// concurrent use.
type Controller struct {
	cfg    Config
	calls  []*Call
	next   uint16
	out    []Outgoing
	events []Event
}

// NewController returns a controller with no calls.
func NewController(cfg Config) (*Controller, error) {
	if cfg.T303 <= 0 || cfg.T305 <= 0 || cfg.T308 <= 0 || cfg.T310 <= 0 || cfg.T313 <= 0 {
		return nil, errors.New("configuring call control: every timer must be positive")
	}
	def := DefaultConfig(cfg.Network, cfg.PRI)
	for _, t := range []struct{ v, d *time.Duration }{{&cfg.T301, &def.T301}, {&cfg.T302, &def.T302}, {&cfg.T304, &def.T304}, {&cfg.T309, &def.T309}} {
		if *t.v < 0 {
			return nil, errors.New("configuring call control: timers must not be negative")
		}
		if *t.v == 0 {
			*t.v = *t.d
		}
	}
	return &Controller{cfg: cfg}, nil
}

// Calls returns the calls that hold a call reference.
func (c *Controller) Calls() []*Call { return append([]*Call(nil), c.calls...) }

// Outgoing returns and clears the messages to send.
func (c *Controller) Outgoing() []Outgoing { o := c.out; c.out = nil; return o }

// Events returns and clears the call events.
func (c *Controller) Events() []Event { e := c.events; c.events = nil; return e }

// Deadline returns when the next call timer runs out.
func (c *Controller) Deadline() (t time.Time, ok bool) {
	for _, call := range c.calls {
		if !call.timer.IsZero() && (t.IsZero() || call.timer.Before(t)) {
			t = call.timer
		}
	}
	return t, !t.IsZero()
}

// ErrState is returned when a request does not fit the call's state.
var ErrState = errors.New("request not allowed in this call state")

// Setup places a call on a data link.
func (c *Controller) Setup(now time.Time, link int, p SetupParams) (*Call, error) {
	if link == GroupLink && (!c.cfg.Network || c.cfg.PRI) {
		return nil, errors.New("placing call: only the network side of a BRI offers calls by broadcast")
	}
	ref, err := c.allocate(link)
	if err != nil {
		return nil, err
	}
	call := &Call{Link: link, Ref: ref, Outgoing: true, Bearer: p.Bearer, Channel: p.Channel,
		Calling: p.Calling, Called: p.Called}
	call.Channel.PRI = c.cfg.PRI
	var ies []IE
	if p.SendingComplete {
		ies = append(ies, SendingCompleteIE())
	}
	ies = append(ies, p.Bearer.IE(), call.Channel.IE())
	if p.Display != "" {
		ies = append(ies, DisplayIE(p.Display))
	}
	if p.Calling.Digits != "" {
		ies = append(ies, p.Calling.CallingIE())
	}
	if p.Called.Digits != "" {
		ies = append(ies, p.Called.CalledIE())
	}
	c.calls = append(c.calls, call)
	call.setup = c.send(call, Setup, ies...)
	c.enter(call, c.pick(CallInitiated, CallPresent))
	c.start(now, call, "T303", c.cfg.T303)
	return call, nil
}

func (c *Controller) allocate(link int) (uint16, error) {
	max := uint16(0x7f)
	if c.cfg.PRI {
		max = 0x7fff
	}
	for range max {
		c.next = c.next%max + 1
		if c.find(link, c.next, true) == nil {
			return c.next, nil
		}
	}
	return 0, fmt.Errorf("placing call on link %d: every call reference is in use", link)
}

// pick returns the user-side state on the user side, the other on the
// network side.
func (c *Controller) pick(user, network State) State {
	if c.cfg.Network {
		return network
	}
	return user
}

// overlap is the state of a call whose called number is still coming
// digit by digit: 2 (overlap sending) for a call the user placed, 25
// (overlap receiving) for one the network placed, on either side.
func (c *Controller) overlap(call *Call) State {
	if call.Outgoing != c.cfg.Network {
		return OverlapSending
	}
	return OverlapReceiving
}

// offered is the state of an incoming call before any answer: U6 / N1.
func (c *Controller) offered() State { return c.pick(CallPresent, CallInitiated) }

// placed is the state of an outgoing call before any answer: U1 / N6.
func (c *Controller) placed() State { return c.pick(CallInitiated, CallPresent) }

// unanswered: an incoming call that this side has not answered at all.
func (c *Controller) unanswered(call *Call) bool {
	return !call.Outgoing && (call.State == c.offered() || call.State == c.overlap(call))
}

// SetupAck answers an incoming SETUP whose number is not complete: the
// rest comes in INFORMATION (EventInfo), until T302 runs out
// (EventDialEnd).
func (c *Controller) SetupAck(now time.Time, call *Call) error {
	if call.Outgoing || call.State != c.offered() {
		return fmt.Errorf("sending SETUP ACKNOWLEDGE in state %v: %w", call.State, ErrState)
	}
	c.send(call, SetupAck, c.chosenChannel(call))
	c.enter(call, c.overlap(call))
	c.start(now, call, "T302", c.cfg.T302)
	return nil
}

// Proceeding answers an incoming SETUP with CALL PROCEEDING.
func (c *Controller) Proceeding(now time.Time, call *Call) error {
	if !c.unanswered(call) {
		return fmt.Errorf("sending CALL PROCEEDING in state %v: %w", call.State, ErrState)
	}
	c.send(call, CallProceeding, c.chosenChannel(call))
	c.enter(call, c.pick(IncomingProceeding, OutgoingProceeding))
	c.stop(call)
	return nil
}

// chosenChannel makes the channel of an incoming call exclusive: the first
// answer names the channel the call will use.
func (c *Controller) chosenChannel(call *Call) IE {
	call.Channel.Exclusive = true
	call.Channel.PRI = c.cfg.PRI
	if call.Channel.Channel == 0 && !call.Channel.None {
		call.Channel.Channel = 1
	}
	return call.Channel.IE()
}

// SelectChannel names the B channel of an incoming call before it is first
// answered: the channel that call's answer will name, exclusively. Use it
// when the SETUP offered any channel, or preferred one that is taken.
func (c *Controller) SelectChannel(call *Call, ch uint8) error {
	if call.Outgoing || call.State != c.pick(CallPresent, CallInitiated) {
		return fmt.Errorf("selecting channel in state %v: %w", call.State, ErrState)
	}
	call.Channel.Channel, call.Channel.None = ch, false
	return nil
}

// Alert sends ALERTING for an incoming call.
func (c *Controller) Alert(now time.Time, call *Call) error {
	var ies []IE
	switch {
	case c.unanswered(call):
		ies = append(ies, c.chosenChannel(call))
		c.stop(call)
	case !call.Outgoing && call.State == c.pick(IncomingProceeding, OutgoingProceeding):
	default:
		return fmt.Errorf("sending ALERTING in state %v: %w", call.State, ErrState)
	}
	c.enter(call, c.pick(CallReceived, CallDelivered))
	c.send(call, Alerting, ies...)
	return nil
}

// Answer sends CONNECT for an incoming call.
func (c *Controller) Answer(now time.Time, call *Call) error {
	var ies []IE
	switch {
	case c.unanswered(call):
		ies = append(ies, c.chosenChannel(call))
	case !call.Outgoing && (call.State == c.pick(IncomingProceeding, OutgoingProceeding) || call.State == c.pick(CallReceived, CallDelivered)):
	default:
		return fmt.Errorf("sending CONNECT in state %v: %w", call.State, ErrState)
	}
	c.send(call, Connect, ies...)
	if c.cfg.Network {
		c.stop(call)
		c.enter(call, Active)
		return nil
	}
	c.enter(call, ConnectRequest)
	c.start(now, call, "T313", c.cfg.T313)
	return nil
}

// Info sends INFORMATION with more called digits (overlap sending).
func (c *Controller) Info(now time.Time, call *Call, digits string) error {
	if call.State == Null || call.State == ReleaseRequest {
		return fmt.Errorf("sending INFORMATION in state %v: %w", call.State, ErrState)
	}
	c.send(call, Information, PartyNumber{Digits: digits}.CalledIE())
	if call.Outgoing && call.State == c.overlap(call) {
		c.start(now, call, "T304", c.cfg.T304)
	}
	return nil
}

// Hangup clears a call with a cause: DISCONNECT, or RELEASE COMPLETE for a
// call that was never answered at all.
func (c *Controller) Hangup(now time.Time, call *Call, cause uint8) error {
	cs := Cause{Location: c.location(), Value: cause}
	call.Cause = cs
	switch call.State {
	case Null:
		return fmt.Errorf("clearing call %d: %w", call.Ref, ErrState)
	case DisconnectRequest, DisconnectIndication, ReleaseRequest:
		return nil // already clearing
	}
	if (!c.cfg.Network && call.State == CallPresent) || (c.cfg.Network && call.State == CallInitiated) {
		c.send(call, ReleaseComplete, cs.IE())
		c.free(call, cs, "rejected")
		return nil
	}
	c.send(call, Disconnect, cs.IE())
	c.enter(call, c.pick(DisconnectRequest, DisconnectIndication))
	c.start(now, call, "T305", c.cfg.T305)
	return nil
}

func (c *Controller) location() uint8 {
	if c.cfg.Network {
		return LocPublicLocal
	}
	return LocUser
}

// Tick runs the call timers that ran out by now.
func (c *Controller) Tick(now time.Time) {
	for _, call := range c.Calls() {
		if call.timer.IsZero() || now.Before(call.timer) {
			continue
		}
		name := call.timerName
		call.timer = time.Time{}
		c.expired(now, call, name)
	}
}

func (c *Controller) expired(now time.Time, call *Call, name string) {
	timeout := Cause{Location: c.location(), Value: CauseRecoveryOnTimerExpiry}
	switch name {
	case "T303":
		if call.timerCount < 2 {
			c.out = append(c.out, Outgoing{Link: call.Link, Msg: call.setup})
			c.restart(now, call, c.cfg.T303)
			return
		}
		c.send(call, ReleaseComplete, timeout.IE())
		c.free(call, timeout, "no answer to SETUP (T303)")
	case "T302":
		if call.Called.Digits == "" {
			incomplete := Cause{Location: c.location(), Value: CauseInvalidNumberFormat}
			call.Cause = incomplete
			c.send(call, Disconnect, incomplete.IE())
			c.enter(call, c.pick(DisconnectRequest, DisconnectIndication))
			c.start(now, call, "T305", c.cfg.T305)
			return
		}
		c.events = append(c.events, Event{Kind: EventDialEnd, Call: call, Digits: call.Called.Digits})
	case "T309":
		c.free(call, Cause{Location: c.location(), Value: CauseDestinationOutOfOrder}, "data link not back in time (T309)")
	case "T301", "T304", "T310", "T313":
		call.Cause = timeout
		c.send(call, Disconnect, timeout.IE())
		c.enter(call, c.pick(DisconnectRequest, DisconnectIndication))
		c.start(now, call, "T305", c.cfg.T305)
	case "T305":
		c.releaseCall(now, call, call.Cause)
	case "T308":
		if call.timerCount < 2 {
			c.out = append(c.out, Outgoing{Link: call.Link, Msg: call.release})
			c.restart(now, call, c.cfg.T308)
			return
		}
		c.free(call, timeout, "no answer to RELEASE (T308)")
	}
}

// releaseCall sends RELEASE and waits for RELEASE COMPLETE under T308.
func (c *Controller) releaseCall(now time.Time, call *Call, cause Cause) {
	var ies []IE
	if cause.Value != 0 {
		ies = append(ies, cause.IE())
	}
	call.release = c.send(call, Release, ies...)
	c.enter(call, ReleaseRequest)
	c.start(now, call, "T308", c.cfg.T308)
}

// Receive processes a message that arrived on a data link.
func (c *Controller) Receive(now time.Time, link int, m Message) {
	if m.CallRef.Len == 0 || m.CallRef.Value == 0 {
		c.receiveGlobal(now, link, m)
		return
	}
	// Flag set: the message goes to the side that allocated the reference.
	call := c.find(link, m.CallRef.Value, m.CallRef.Flag)
	if call == nil && m.CallRef.Flag && link != GroupLink {
		var handled bool
		if call, handled = c.bindBroadcast(link, m); handled && call == nil {
			return
		}
	}
	if call == nil {
		c.receiveUnknown(now, link, m)
		return
	}
	c.receiveCall(now, call, m)
}

func (c *Controller) receiveGlobal(now time.Time, link int, m Message) {
	if m.Type != Restart {
		return // STATUS and others on the global call reference: nothing to do
	}
	for _, call := range c.Calls() {
		if call.Link == link {
			c.free(call, Cause{Location: c.location(), Value: CauseTemporaryFailure}, "restarted by the peer")
		}
	}
	var ies []IE
	if ie, ok := m.Find(IEChannelID); ok {
		ies = append(ies, ie)
	}
	if ie, ok := m.Find(IERestartIndicator); ok {
		ies = append(ies, ie)
	}
	cr := m.CallRef
	cr.Flag = !cr.Flag
	c.out = append(c.out, Outgoing{Link: link, Msg: Message{CallRef: cr, Type: RestartAck, IEs: ies}})
}

func (c *Controller) receiveUnknown(now time.Time, link int, m Message) {
	reply := func(t MessageType, ies ...IE) {
		cr := m.CallRef
		cr.Flag = !cr.Flag
		c.out = append(c.out, Outgoing{Link: link, Msg: Message{CallRef: cr, Type: t, IEs: ies}})
	}
	switch {
	case m.Type == Setup && !m.CallRef.Flag:
		c.incoming(now, link, m)
	case m.Type == ReleaseComplete, m.Type == Status:
	case m.Type == StatusEnquiry:
		reply(Status, Cause{Location: c.location(), Value: CauseResponseToStatusEnq}.IE(), CallStateIE(0))
	default:
		reply(ReleaseComplete, Cause{Location: c.location(), Value: CauseInvalidCallRef}.IE())
	}
}

func (c *Controller) incoming(now time.Time, link int, m Message) {
	call := &Call{Link: link, Ref: m.CallRef.Value}
	reject := func(cause uint8, why string) {
		cs := Cause{Location: c.location(), Value: cause}
		c.events = append(c.events, Event{Kind: EventFailed, Call: call, Cause: cs, Reason: why})
		cr := m.CallRef
		cr.Flag = true
		c.out = append(c.out, Outgoing{Link: link, Msg: Message{CallRef: cr, Type: ReleaseComplete, IEs: []IE{cs.IE()}}})
	}
	ie, ok := m.Find(IEBearerCapability)
	if !ok {
		reject(CauseMandatoryIEMissing, "SETUP without bearer capability")
		return
	}
	var err error
	if call.Bearer, err = ParseBearerCapability(ie.Data); err != nil {
		reject(CauseInvalidIEContents, err.Error())
		return
	}
	if ie, ok := m.Find(IEChannelID); ok {
		if call.Channel, err = ParseChannelID(ie.Data); err != nil {
			reject(CauseInvalidIEContents, err.Error())
			return
		}
	}
	if ie, ok := m.Find(IECallingNumber); ok {
		if call.Calling, err = ParsePartyNumber(ie.Data); err != nil {
			reject(CauseInvalidIEContents, err.Error())
			return
		}
	}
	if ie, ok := m.Find(IECalledNumber); ok {
		if call.Called, err = ParsePartyNumber(ie.Data); err != nil {
			reject(CauseInvalidIEContents, err.Error())
			return
		}
	}
	_, call.SendingComplete = m.Find(IESendingComplete)
	c.calls = append(c.calls, call)
	c.enter(call, c.pick(CallPresent, CallInitiated))
	c.events = append(c.events, Event{Kind: EventIncoming, Call: call})
}

func (c *Controller) receiveCall(now time.Time, call *Call, m Message) {
	net := c.cfg.Network
	cause, hasCause := Cause{}, false
	if ie, ok := m.Find(IECause); ok {
		if cs, err := ParseCause(ie.Data); err == nil {
			cause, hasCause = cs, true
		}
	}
	c.takeChannel(call, m)
	unexpected := func() {
		c.send(call, Status, Cause{Location: c.location(), Value: CauseWrongState}.IE(), CallStateIE(uint8(call.State)))
		c.events = append(c.events, Event{Kind: EventFailed, Call: call, Reason: fmt.Sprintf("%v in state %v", m.Type, call.State)})
	}
	switch m.Type {
	case StatusEnquiry:
		c.send(call, Status, Cause{Location: c.location(), Value: CauseResponseToStatusEnq}.IE(), CallStateIE(uint8(call.State)))
	case Status:
		if ie, ok := m.Find(IECallState); ok && len(ie.Data) == 1 && ie.Data[0]&0x3f == 0 {
			c.free(call, cause, "peer has no such call (STATUS)")
		}
	case Release:
		c.send(call, ReleaseComplete)
		if !hasCause {
			cause = call.Cause
		}
		c.free(call, cause, "released by the peer")
	case ReleaseComplete:
		if !hasCause {
			cause = call.Cause
		}
		c.free(call, cause, "released")
	case Disconnect:
		switch call.State {
		case ReleaseRequest:
		default:
			if hasCause {
				call.Cause = cause
			}
			c.events = append(c.events, Event{Kind: EventDisconnected, Call: call, Cause: cause})
			c.releaseCall(now, call, Cause{})
		}
	case Setup:
		// A repeated SETUP for a call already known: ignore.
	case SetupAck:
		if !call.Outgoing || call.State != c.placed() {
			unexpected()
			return
		}
		c.enter(call, c.overlap(call))
		c.start(now, call, "T304", c.cfg.T304)
		c.events = append(c.events, Event{Kind: EventSetupAcked, Call: call})
	case CallProceeding:
		if !call.Outgoing || (call.State != c.placed() && call.State != c.overlap(call)) {
			unexpected()
			return
		}
		c.enter(call, c.pick(OutgoingProceeding, IncomingProceeding))
		c.start(now, call, "T310", c.cfg.T310)
		c.events = append(c.events, Event{Kind: EventProceeding, Call: call})
	case Alerting:
		switch {
		case call.Outgoing && (call.State == c.placed() || call.State == c.overlap(call) || call.State == c.pick(OutgoingProceeding, IncomingProceeding)):
			c.enter(call, c.pick(CallDelivered, CallReceived))
		default:
			unexpected()
			return
		}
		c.start(now, call, "T301", c.cfg.T301)
		c.events = append(c.events, Event{Kind: EventAlerting, Call: call})
	case Connect:
		switch {
		case call.Outgoing && (call.State == c.placed() || call.State == c.overlap(call) ||
			call.State == c.pick(OutgoingProceeding, IncomingProceeding) || call.State == c.pick(CallDelivered, CallReceived)):
		default:
			unexpected()
			return
		}
		c.stop(call)
		c.send(call, ConnectAck)
		c.enter(call, Active)
		c.events = append(c.events, Event{Kind: EventConnected, Call: call})
	case ConnectAck:
		switch {
		case !net && call.State == ConnectRequest:
			c.stop(call)
			c.enter(call, Active)
			c.events = append(c.events, Event{Kind: EventConnected, Call: call})
		case net && call.State == Active:
		default:
			unexpected()
		}
	case Progress:
		c.events = append(c.events, Event{Kind: EventProgress, Call: call})
	case Information:
		var digits string
		if ie, ok := m.Find(IECalledNumber); ok {
			if n, err := ParsePartyNumber(ie.Data); err == nil {
				digits = n.Digits
				call.Called.Digits += digits
			}
		}
		if _, ok := m.Find(IESendingComplete); ok && !call.Outgoing {
			call.SendingComplete = true
		}
		if !call.Outgoing && call.State == c.overlap(call) {
			c.start(now, call, "T302", c.cfg.T302)
		}
		c.events = append(c.events, Event{Kind: EventInfo, Call: call, Digits: digits})
	default:
		unexpected()
	}
}

// bindBroadcast handles an answer from a terminal to a call this side
// offered by broadcast: the first terminal that answers gets the call
// (returned); one answering a call that another terminal has taken is told
// to clear with cause 26 (non-selected user clearing). handled is false
// when the message concerns no broadcast call.
func (c *Controller) bindBroadcast(link int, m Message) (call *Call, handled bool) {
	if call := c.find(GroupLink, m.CallRef.Value, true); call != nil {
		call.Link, call.broadcast = link, true
		return call, true
	}
	for _, call := range c.calls {
		if call.broadcast && call.Outgoing && call.Ref == m.CallRef.Value && call.Link != link {
			if m.Type != Release && m.Type != ReleaseComplete {
				cr := m.CallRef
				cr.Flag = false
				c.out = append(c.out, Outgoing{Link: link, Msg: Message{CallRef: cr, Type: Release,
					IEs: []IE{Cause{Location: c.location(), Value: CauseNonSelectedUser}.IE()}}})
			}
			return nil, true
		}
	}
	return nil, false
}

// LinkDown tells call control that a data link failed (Q.931 5.8.9): calls
// on it that are not active are cleared at once; active calls keep their
// B channel for T309, waiting for the link to come back.
func (c *Controller) LinkDown(now time.Time, link int) {
	for _, call := range c.Calls() {
		if call.Link != link {
			continue
		}
		if call.State == Active {
			c.start(now, call, "T309", c.cfg.T309)
			continue
		}
		c.free(call, Cause{Location: c.location(), Value: CauseTemporaryFailure}, "data link failed")
	}
}

// LinkUp tells call control that a data link is (back) up: active calls
// waiting under T309 carry on, and the peer is told their state with
// STATUS (cause 31).
func (c *Controller) LinkUp(now time.Time, link int) {
	for _, call := range c.calls {
		if call.Link == link && call.timerName == "T309" {
			c.stop(call)
			c.send(call, Status, Cause{Location: c.location(), Value: CauseNormalUnspecified}.IE(), CallStateIE(uint8(call.State)))
		}
	}
}

// takeChannel records the channel named in the first answer to our SETUP.
func (c *Controller) takeChannel(call *Call, m Message) {
	if !call.Outgoing {
		return
	}
	if ie, ok := m.Find(IEChannelID); ok {
		if ch, err := ParseChannelID(ie.Data); err == nil {
			call.Channel = ch
		}
	}
}

func (c *Controller) find(link int, ref uint16, outgoing bool) *Call {
	for _, call := range c.calls {
		if call.Link == link && call.Ref == ref && call.Outgoing == outgoing {
			return call
		}
	}
	return nil
}

func (c *Controller) send(call *Call, t MessageType, ies ...IE) Message {
	m := Message{CallRef: CallRef{Len: c.cfg.crLen(), Value: call.Ref, Flag: !call.Outgoing}, Type: t, IEs: ies}
	c.out = append(c.out, Outgoing{Link: call.Link, Msg: m})
	return m
}

func (c *Controller) enter(call *Call, s State) { call.State = s }

func (c *Controller) start(now time.Time, call *Call, name string, d time.Duration) {
	call.timer, call.timerName, call.timerCount = now.Add(d), name, 1
}

func (c *Controller) restart(now time.Time, call *Call, d time.Duration) {
	call.timerCount++
	call.timer = now.Add(d)
}

func (c *Controller) stop(call *Call) { call.timer, call.timerName = time.Time{}, "" }

// free ends a call: the call reference may be used again.
func (c *Controller) free(call *Call, cause Cause, reason string) {
	c.stop(call)
	call.State = Null
	call.Cause = cause
	for i, x := range c.calls {
		if x == call {
			c.calls = append(c.calls[:i], c.calls[i+1:]...)
			break
		}
	}
	c.events = append(c.events, Event{Kind: EventReleased, Call: call, Cause: cause, Reason: reason})
}
