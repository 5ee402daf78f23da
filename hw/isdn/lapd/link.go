package lapd

import (
	"fmt"
	"time"
)

// Config sets up one data link (one SAPI and TEI on one side).
type Config struct {
	// Network is true on the network (exchange) side.
	Network bool
	SAPI    uint8
	TEI     uint8
	// K is the window: the most I frames outstanding (7 PRI, 1 BRI).
	K int
	// T200 is the retransmission timer, N200 the most retransmissions.
	T200 time.Duration
	N200 int
	// T203 is the longest time without frames before the link is polled.
	T203 time.Duration
	// N201 is the longest information field accepted and sent.
	N201 int
}

// PRIConfig returns libpri's defaults for a PRI link: window 7, T200 1 s,
// N200 3, T203 10 s, SAPI 0, TEI 0.
func PRIConfig(network bool) Config {
	return Config{Network: network, K: 7, T200: time.Second, N200: 3, T203: 10 * time.Second, N201: N201}
}

// BRIConfig returns the defaults for a BRI link with the given TEI:
// window 1, otherwise as PRIConfig.
func BRIConfig(network bool, tei uint8) Config {
	c := PRIConfig(network)
	c.K, c.TEI = 1, tei
	return c
}

func (c Config) validate() error {
	switch {
	case c.SAPI > 63, c.TEI > 126:
		return fmt.Errorf("SAPI %d / TEI %d out of range", c.SAPI, c.TEI)
	case c.K < 1 || c.K > 127:
		return fmt.Errorf("window %d outside 1–127", c.K)
	case c.T200 <= 0, c.T203 <= 0, c.N200 < 1:
		return fmt.Errorf("timers T200 %v, T203 %v and N200 %d must be positive", c.T200, c.T203, c.N200)
	case c.N201 < 1:
		return fmt.Errorf("N201 %d must be positive", c.N201)
	}
	return nil
}

// State is the data-link state (Q.921 SDL numbering).
type State int

// Data-link states of an assigned TEI.
const (
	Released      State = 4 // TEI assigned, no multiple-frame operation
	Establishing  State = 5 // awaiting establishment (SABME sent)
	Releasing     State = 6 // awaiting release (DISC sent)
	Established   State = 7 // multiple-frame established
	TimerRecovery State = 8 // T200 ran out, polling the peer
)

func (s State) String() string {
	switch s {
	case Released:
		return "released"
	case Establishing:
		return "awaiting establishment"
	case Releasing:
		return "awaiting release"
	case Established:
		return "multiple-frame established"
	case TimerRecovery:
		return "timer recovery"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// IndicationKind is what the link reports to layer 3 (or management).
type IndicationKind int

// Indications.
const (
	// Up is DL-ESTABLISH indication or confirm: multiple-frame operation
	// started (also after a re-establishment that lost queued data).
	Up IndicationKind = iota + 1
	// Down is DL-RELEASE indication or confirm.
	Down
	// Data is DL-DATA indication: an in-sequence I frame's information.
	Data
	// UnitData is DL-UNIT-DATA indication: a UI frame's information.
	UnitData
	// Error is MDL-ERROR indication, with Q.921's error code (A–O).
	Error
)

func (k IndicationKind) String() string {
	return [...]string{"", "up", "down", "data", "unit-data", "error"}[k]
}

// Indication is one report to the layer above.
type Indication struct {
	Kind IndicationKind
	Data []byte
	// Code is the MDL-ERROR code for Error; Reason says what happened.
	Code   byte
	Reason string
}

// Link is one data-link connection endpoint. It is not safe for concurrent
// use: one goroutine (or test) drives it.
type Link struct {
	cfg   Config
	state State

	vs, va, vr uint8
	rc         int
	peerBusy   bool
	rejExcept  bool

	t200, t203 time.Time // zero when stopped

	queue [][]byte    // DL-DATA requests not yet sent
	buf   [128][]byte // sent, unacknowledged I frames by N(S)
	out   []Frame
	ind   []Indication
}

// NewLink returns a link in the Released state.
func NewLink(cfg Config) (*Link, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("configuring data link: %w", err)
	}
	return &Link{cfg: cfg, state: Released}, nil
}

// State returns the current state.
func (l *Link) State() State { return l.state }

// Config returns the link's configuration.
func (l *Link) Config() Config { return l.cfg }

// Outgoing returns and clears the frames to transmit, in order.
func (l *Link) Outgoing() []Frame {
	o := l.out
	l.out = nil
	return o
}

// Indications returns and clears what the link reports to layer 3.
func (l *Link) Indications() []Indication {
	o := l.ind
	l.ind = nil
	return o
}

// Deadline returns when the next timer runs out; ok is false when no timer
// runs.
func (l *Link) Deadline() (t time.Time, ok bool) {
	for _, d := range []time.Time{l.t200, l.t203} {
		if !d.IsZero() && (t.IsZero() || d.Before(t)) {
			t = d
		}
	}
	return t, !t.IsZero()
}

// Establish is DL-ESTABLISH request.
func (l *Link) Establish(now time.Time) {
	switch l.state {
	case Released:
		l.establish(now)
	case Established, TimerRecovery:
		// Re-establishment on request: what is queued is kept.
		l.establish(now)
	}
}

// Release is DL-RELEASE request.
func (l *Link) Release(now time.Time) {
	switch l.state {
	case Established, TimerRecovery:
		l.discard()
		l.rc = 0
		l.send(Frame{Kind: DISC, PF: true}, true)
		l.t203 = time.Time{}
		l.t200 = now.Add(l.cfg.T200)
		l.state = Releasing
	case Establishing:
		l.discard()
		l.t200 = time.Time{}
		l.state = Released
		l.indicate(Indication{Kind: Down, Reason: "released while establishing"})
	case Released:
		l.indicate(Indication{Kind: Down, Reason: "already released"})
	}
}

// Send is DL-DATA request: info is queued and sent in order once the link
// is established and the window allows. A link that is released is
// established first.
func (l *Link) Send(now time.Time, info []byte) error {
	if len(info) > l.cfg.N201 {
		return fmt.Errorf("sending %d octets: longer than N201 %d", len(info), l.cfg.N201)
	}
	l.queue = append(l.queue, append([]byte(nil), info...))
	switch l.state {
	case Released:
		l.establish(now)
	case Established:
		l.pump(now)
	}
	return nil
}

// SendUnitData is DL-UNIT-DATA request: a UI command.
func (l *Link) SendUnitData(info []byte) error {
	if len(info) > l.cfg.N201 {
		return fmt.Errorf("sending %d octets: longer than N201 %d", len(info), l.cfg.N201)
	}
	l.send(Frame{Kind: UI, Info: append([]byte(nil), info...)}, true)
	return nil
}

// Tick runs the timers that have run out by now.
func (l *Link) Tick(now time.Time) {
	if !l.t200.IsZero() && !now.Before(l.t200) {
		l.t200 = time.Time{}
		l.t200Expired(now)
	}
	if !l.t203.IsZero() && !now.Before(l.t203) {
		l.t203 = time.Time{}
		l.t203Expired(now)
	}
}

// Receive processes a frame addressed to this link's SAPI and TEI.
func (l *Link) Receive(now time.Time, f Frame) {
	cmd := f.IsCommand(!l.cfg.Network)
	if len(f.Info) > l.cfg.N201 {
		l.mdlError('O', "information field too long")
		return
	}
	switch f.Kind {
	case SABME:
		if cmd {
			l.rxSABME(now, f)
		}
	case DISC:
		if cmd {
			l.rxDISC(now, f)
		}
	case UA:
		if !cmd {
			l.rxUA(now, f)
		}
	case DM:
		if !cmd {
			l.rxDM(now, f)
		}
	case UI:
		l.indicate(Indication{Kind: UnitData, Data: f.Info})
	case FRMR:
		if l.state == Established || l.state == TimerRecovery {
			l.mdlError('K', "FRMR received")
			l.establish(now)
		}
	case XID:
		// Parameter negotiation is not supported; XID is ignored.
	case I:
		if cmd && (l.state == Established || l.state == TimerRecovery) {
			l.rxI(now, f)
		}
	case RR, RNR, REJ:
		if l.state == Established || l.state == TimerRecovery {
			l.rxS(now, f, cmd)
		}
	}
}

func (l *Link) rxSABME(now time.Time, f Frame) {
	switch l.state {
	case Released:
		l.send(Frame{Kind: UA, PF: f.PF}, false)
		l.resetVars()
		l.state = Established
		l.t200, l.t203 = time.Time{}, now.Add(l.cfg.T203)
		l.indicate(Indication{Kind: Up, Reason: "peer established"})
		l.pump(now)
	case Establishing:
		// Both sides asked at once: answer; our own SABME's UA completes it.
		l.send(Frame{Kind: UA, PF: f.PF}, false)
	case Releasing:
		l.send(Frame{Kind: DM, PF: f.PF}, false)
	case Established, TimerRecovery:
		l.send(Frame{Kind: UA, PF: f.PF}, false)
		l.mdlError('F', "peer re-established")
		lost := l.vs != l.va
		l.resetVars()
		l.clearBuf()
		l.state = Established
		l.t200, l.t203 = time.Time{}, now.Add(l.cfg.T203)
		if lost {
			l.indicate(Indication{Kind: Up, Reason: "peer re-established, unacknowledged data lost"})
		}
		l.pump(now)
	}
}

func (l *Link) rxDISC(now time.Time, f Frame) {
	switch l.state {
	case Released, Establishing:
		l.send(Frame{Kind: DM, PF: f.PF}, false)
	case Releasing:
		l.send(Frame{Kind: UA, PF: f.PF}, false)
	case Established, TimerRecovery:
		l.send(Frame{Kind: UA, PF: f.PF}, false)
		l.discard()
		l.t200, l.t203 = time.Time{}, time.Time{}
		l.state = Released
		l.indicate(Indication{Kind: Down, Reason: "peer released"})
	}
}

func (l *Link) rxUA(now time.Time, f Frame) {
	if !f.PF {
		l.mdlError('C', "UA without F bit")
		return
	}
	switch l.state {
	case Establishing:
		l.t200, l.t203 = time.Time{}, now.Add(l.cfg.T203)
		l.resetVars()
		l.state = Established
		l.indicate(Indication{Kind: Up, Reason: "established"})
		l.pump(now)
	case Releasing:
		l.t200 = time.Time{}
		l.state = Released
		l.indicate(Indication{Kind: Down, Reason: "released"})
	default:
		l.mdlError('C', "unsolicited UA")
	}
}

func (l *Link) rxDM(now time.Time, f Frame) {
	switch l.state {
	case Establishing:
		if f.PF {
			l.t200 = time.Time{}
			l.discard()
			l.state = Released
			l.indicate(Indication{Kind: Down, Reason: "peer refused establishment (DM)"})
		}
	case Releasing:
		if f.PF {
			l.t200 = time.Time{}
			l.state = Released
			l.indicate(Indication{Kind: Down, Reason: "released (DM)"})
		}
	case Established, TimerRecovery:
		if f.PF {
			l.mdlError('B', "unsolicited DM with F bit")
			return
		}
		l.mdlError('E', "DM received in multiple-frame operation")
		l.establish(now)
	}
}

// validNR reports whether V(A) <= nr <= V(S), modulo 128.
func (l *Link) validNR(nr uint8) bool {
	return (nr-l.va)&127 <= (l.vs-l.va)&127
}

func (l *Link) rxI(now time.Time, f Frame) {
	if f.NS == l.vr {
		l.vr = (l.vr + 1) & 127
		l.rejExcept = false
		l.indicate(Indication{Kind: Data, Data: append([]byte(nil), f.Info...)})
		if f.PF {
			l.send(Frame{Kind: RR, NR: l.vr, PF: true}, false)
		}
	} else {
		if !l.rejExcept {
			l.rejExcept = true
			l.send(Frame{Kind: REJ, NR: l.vr, PF: f.PF}, false)
		} else if f.PF {
			l.send(Frame{Kind: RR, NR: l.vr, PF: true}, false)
		}
	}
	if !l.ackNR(now, f.NR, false) {
		return
	}
	sentBefore := len(l.out)
	if l.state == Established {
		l.pump(now)
	}
	// Acknowledge unless an I frame we just sent carries N(R), or an
	// answer to a poll already did.
	if len(l.out) == sentBefore && !f.PF && f.NS == (l.vr-1)&127 {
		l.send(Frame{Kind: RR, NR: l.vr}, false)
	}
}

func (l *Link) rxS(now time.Time, f Frame, cmd bool) {
	l.peerBusy = f.Kind == RNR
	if cmd && f.PF {
		l.send(Frame{Kind: RR, NR: l.vr, PF: true}, false)
	}
	if !l.validNR(f.NR) {
		l.mdlError('J', fmt.Sprintf("N(R) %d outside V(A) %d – V(S) %d", f.NR, l.va, l.vs))
		l.establish(now)
		return
	}
	if l.state == TimerRecovery {
		l.setVA(f.NR)
		if !cmd && f.PF {
			// The answer to our poll: resume and resend what is missing.
			l.t200, l.t203 = time.Time{}, now.Add(l.cfg.T203)
			l.state = Established
			l.vs = f.NR
			l.pump(now)
		}
		return
	}
	if !cmd && f.PF {
		l.mdlError('A', "supervisory response with F bit")
	}
	switch f.Kind {
	case REJ:
		l.setVA(f.NR)
		l.t200, l.t203 = time.Time{}, now.Add(l.cfg.T203)
		l.vs = f.NR
		l.pump(now)
	case RNR:
		l.setVA(f.NR)
		l.t203 = time.Time{}
		l.t200 = now.Add(l.cfg.T200)
	default:
		l.ackNR(now, f.NR, true)
		l.pump(now)
	}
}

// ackNR processes an N(R) in multiple-frame operation; it returns false
// when N(R) was invalid and the link is being re-established.
func (l *Link) ackNR(now time.Time, nr uint8, checked bool) bool {
	if !checked && !l.validNR(nr) {
		l.mdlError('J', fmt.Sprintf("N(R) %d outside V(A) %d – V(S) %d", nr, l.va, l.vs))
		l.establish(now)
		return false
	}
	if l.state == TimerRecovery {
		l.setVA(nr)
		return true
	}
	switch {
	case nr == l.vs:
		l.setVA(nr)
		l.t200, l.t203 = time.Time{}, now.Add(l.cfg.T203)
	case nr != l.va:
		l.setVA(nr)
		l.t200 = now.Add(l.cfg.T200)
	}
	return true
}

func (l *Link) setVA(nr uint8) {
	for l.va != nr {
		l.buf[l.va] = nil
		l.va = (l.va + 1) & 127
	}
}

// pump sends I frames while the window and the peer allow: first those to
// be retransmitted (V(S) behind what was sent), then new ones.
func (l *Link) pump(now time.Time) {
	for l.state == Established && !l.peerBusy && int((l.vs-l.va)&127) < l.cfg.K {
		info := l.buf[l.vs]
		if info == nil {
			if len(l.queue) == 0 {
				return
			}
			info, l.queue = l.queue[0], l.queue[1:]
			l.buf[l.vs] = info
		}
		l.send(Frame{Kind: I, NS: l.vs, NR: l.vr, Info: info}, true)
		l.vs = (l.vs + 1) & 127
		if l.t200.IsZero() {
			l.t203 = time.Time{}
			l.t200 = now.Add(l.cfg.T200)
		}
	}
}

func (l *Link) t200Expired(now time.Time) {
	switch l.state {
	case Establishing:
		if l.rc >= l.cfg.N200 {
			l.mdlError('G', "no answer to SABME")
			l.discard()
			l.state = Released
			l.indicate(Indication{Kind: Down, Reason: "establishment failed"})
			return
		}
		l.rc++
		l.send(Frame{Kind: SABME, PF: true}, true)
		l.t200 = now.Add(l.cfg.T200)
	case Releasing:
		if l.rc >= l.cfg.N200 {
			l.mdlError('H', "no answer to DISC")
			l.state = Released
			l.indicate(Indication{Kind: Down, Reason: "released (no answer)"})
			return
		}
		l.rc++
		l.send(Frame{Kind: DISC, PF: true}, true)
		l.t200 = now.Add(l.cfg.T200)
	case Established:
		l.rc = 0
		l.state = TimerRecovery
		l.poll(now)
	case TimerRecovery:
		if l.rc >= l.cfg.N200 {
			l.mdlError('I', "no answer to poll")
			l.establish(now)
			return
		}
		l.poll(now)
	}
}

func (l *Link) t203Expired(now time.Time) {
	if l.state != Established {
		return
	}
	l.rc = 0
	l.state = TimerRecovery
	l.poll(now)
}

// poll sends an enquiry (RR command with P set) and restarts T200.
func (l *Link) poll(now time.Time) {
	l.rc++
	l.send(Frame{Kind: RR, NR: l.vr, PF: true}, true)
	l.t200 = now.Add(l.cfg.T200)
}

// establish sends SABME and enters Establishing. Unacknowledged I frames go
// back to the head of the queue: re-establishment may duplicate them, which
// Q.931 tolerates better than losing them.
func (l *Link) establish(now time.Time) {
	var pending [][]byte
	for n := l.va; n != l.vs; n = (n + 1) & 127 {
		if l.buf[n] != nil {
			pending = append(pending, l.buf[n])
		}
	}
	l.queue = append(pending, l.queue...)
	l.clearBuf()
	l.resetVars()
	l.rc = 0
	l.send(Frame{Kind: SABME, PF: true}, true)
	l.t203 = time.Time{}
	l.t200 = now.Add(l.cfg.T200)
	l.state = Establishing
}

func (l *Link) resetVars() {
	l.vs, l.va, l.vr = 0, 0, 0
	l.peerBusy, l.rejExcept = false, false
	l.rc = 0
}

func (l *Link) clearBuf() { l.buf = [128][]byte{} }

func (l *Link) discard() {
	l.queue = nil
	l.clearBuf()
}

func (l *Link) send(f Frame, command bool) {
	f.SAPI, f.TEI = l.cfg.SAPI, l.cfg.TEI
	f.CR = CRBit(l.cfg.Network, command)
	l.out = append(l.out, f)
}

func (l *Link) indicate(i Indication) { l.ind = append(l.ind, i) }

func (l *Link) mdlError(code byte, reason string) {
	l.indicate(Indication{Kind: Error, Code: code, Reason: reason})
}
