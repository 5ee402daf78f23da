package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/twinpbx/twinpbx/hw/relay"
)

// Link is an in-memory pair of heartbeat paths between two boxes, on one
// fake clock. A path can be cut silently (Cut/Heal); a box's LAN port can
// be unplugged (SetLAN), which also takes the LAN path and the gateway
// away from it. Beats are delivered at once.
type Link struct {
	mu       sync.Mutex
	clock    clockwork.Clock
	deadTime time.Duration
	cut      [NumPaths]bool
	lanDown  map[string]bool
	ends     map[string]*End
}

// NewLink returns a link whose paths go down after deadTime of silence.
func NewLink(clock clockwork.Clock, deadTime time.Duration) *Link {
	return &Link{clock: clock, deadTime: deadTime, lanDown: map[string]bool{}, ends: map[string]*End{}}
}

// End is one box's side of the link; it implements Heartbeat.
type End struct {
	link  *Link
	name  string
	local Beat
	setAt time.Time // when local was last set
	// muted: the box is hung or down; it neither sends nor receives.
	muted bool
	// last beat received from the twin, per path arrival and overall.
	peer     PeerView
	lastRecv Beat
	sent     int
}

// Attach returns name's end of the link, replacing an earlier one (a
// restarted box starts with a fresh view of its twin).
func (l *Link) Attach(name string) *End {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := &End{link: l, name: name}
	l.ends[name] = e
	return e
}

// Cut drops every beat on path, in both directions, without a carrier
// change.
func (l *Link) Cut(p Path) { l.mu.Lock(); l.cut[p] = true; l.mu.Unlock() }

// Heal restores path.
func (l *Link) Heal(p Path) { l.mu.Lock(); l.cut[p] = false; l.mu.Unlock() }

// SetLAN plugs (up) or unplugs name's LAN port.
func (l *Link) SetLAN(name string, up bool) { l.mu.Lock(); l.lanDown[name] = !up; l.mu.Unlock() }

// LANUp reports whether name's LAN port is plugged.
func (l *Link) LANUp(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.lanDown[name]
}

// Mute stops (or resumes) name's sending and receiving: a hung or
// powered-off box.
func (l *Link) Mute(name string, muted bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.ends[name]; e != nil {
		e.muted = muted
	}
}

// Send sends name's current beat on every path that carries it.
func (l *Link) Send(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sendLocked(name)
}

func (l *Link) sendLocked(name string) {
	from := l.ends[name]
	if from == nil || from.muted || from.local.Node == "" {
		return // nothing to say before the first SetLocal
	}
	if l.clock.Now().Sub(from.setAt) >= l.deadTime {
		return // the decision loop is stuck: fall silent
	}
	var to *End
	for n, e := range l.ends {
		if n != name {
			to = e
		}
	}
	now := l.clock.Now()
	b := from.local
	b.Sent = now
	b.Echo = Echo{Sent: from.lastRecv.Sent, Term: from.lastRecv.Term}
	from.sent++
	if to == nil || to.muted {
		return
	}
	delivered := false
	for p := range NumPaths {
		if l.cut[p] || (Path(p) == LAN && (l.lanDown[name] || l.lanDown[to.name])) {
			continue
		}
		pv := &to.peer.Paths[p]
		if !pv.LastHeard.IsZero() && !b.Echo.Sent.IsZero() {
			pv.Latency = now.Sub(b.Echo.Sent)
		}
		pv.LastHeard = now
		delivered = true
	}
	if delivered {
		to.peer.Last = b
		to.peer.Heard = now
		to.lastRecv = b
	}
}

// SetLocal implements Heartbeat.
func (e *End) SetLocal(b Beat) {
	e.link.mu.Lock()
	e.local, e.setAt = b, e.link.clock.Now()
	e.link.mu.Unlock()
}

// SendNow implements Heartbeat.
func (e *End) SendNow() { e.link.Send(e.name) }

// Peer implements Heartbeat: a path is up while a beat arrived on it
// within dead time.
func (e *End) Peer() PeerView {
	e.link.mu.Lock()
	defer e.link.mu.Unlock()
	v := e.peer
	now := e.link.clock.Now()
	for p := range v.Paths {
		v.Paths[p].Up = !v.Paths[p].LastHeard.IsZero() && now.Sub(v.Paths[p].LastHeard) < e.link.deadTime
	}
	return v
}

// Events implements Heartbeat: the fake only ticks.
func (e *End) Events() <-chan struct{} { return nil }

// Local returns the beat the box publishes.
func (e *End) Local() Beat { e.link.mu.Lock(); defer e.link.mu.Unlock(); return e.local }

// box holds one simulated box's resources, shared across its restarts.
type box struct {
	mu      sync.Mutex
	name    string
	side    relay.Side
	world   *simWorld
	vipHeld bool
	serving bool
	term    uint64   // persisted
	latched []string // what the box's LatchStore holds (persisted)
	seq     uint64
	source  bool
	log     []string // resource calls, in order

	// probeTakes is how long the VIP probe lasts (it advances the fake
	// clock); zero: it takes no time.
	probeTakes time.Duration

	// failures to inject
	acquireErr error
	serveErr   error
	setTermErr error
	fenced     string
}

func (b *box) record(format string, args ...any) {
	b.log = append(b.log, fmt.Sprintf(format, args...))
}

// calls returns and forgets the resource calls recorded so far.
func (b *box) calls() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.log
	b.log = nil
	return c
}

// simWorld is the shared environment of the two boxes: the link, the
// relay, and the VIP probe's view of who serves.
type simWorld struct {
	link   *Link
	clock  clockwork.Clock
	relay  relay.Side
	relErr error
	mu     sync.Mutex
	boxes  map[string]*box
	mgrs   map[string]*Manager
	hung   map[string]bool
	// lastServed is when each box was last seen serving (see observe).
	lastServed map[string]time.Time
	probeSpan  time.Duration
	// noLatches starts nodes without a LatchStore.
	noLatches bool
}

// observe records who serves now, for the VIP probe.
func (w *simWorld) observe() {
	for _, n := range []string{"a", "b"} {
		if w.serving(n) {
			w.mu.Lock()
			w.lastServed[n] = w.clock.Now()
			w.mu.Unlock()
		}
	}
}

func newSimWorld(clock clockwork.Clock, deadTime time.Duration) *simWorld {
	return &simWorld{link: NewLink(clock, deadTime), clock: clock, boxes: map[string]*box{}, mgrs: map[string]*Manager{}, hung: map[string]bool{},
		lastServed: map[string]time.Time{}, probeSpan: DefaultProbeSpan}
}

// serving reports whether name answers phones on the VIP now: not hung,
// its LAN plugged, its PBX started, and its lease valid (the PBX checks it
// on every request).
func (w *simWorld) serving(name string) bool {
	if !w.link.LANUp(name) {
		return false
	}
	w.mu.Lock()
	b, m, hung := w.boxes[name], w.mgrs[name], w.hung[name]
	w.mu.Unlock()
	if b == nil || m == nil || hung {
		return false
	}
	b.mu.Lock()
	on := b.serving && b.vipHeld
	b.mu.Unlock()
	return on && m.LeaseValid()
}

// fakes for one box: each implements one of the manager's interfaces.
type (
	fakeVIP     struct{ *box }
	fakeRelay   struct{ *box }
	fakeReplica struct{ *box }
	fakeService struct{ *box }
	fakeProbe   struct{ *box }
	fakeTerms   struct{ *box }
	fakeFence   struct{ *box }
)

func (f fakeVIP) Acquire(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("vip acquire")
	if f.acquireErr != nil {
		return f.acquireErr
	}
	f.vipHeld = true
	return nil
}
func (f fakeVIP) Release() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("vip release")
	f.vipHeld = false
	return nil
}
func (f fakeVIP) Held() (bool, error) { f.mu.Lock(); defer f.mu.Unlock(); return f.vipHeld, nil }
func (f fakeVIP) Conflict(context.Context) (bool, error) {
	return false, nil
}
func (f fakeVIP) RemoveStale() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("vip remove stale")
	f.vipHeld = false
	return nil
}

func (f fakeRelay) Select(_ context.Context, side relay.Side) error {
	f.mu.Lock()
	f.record("relay %v", side)
	f.mu.Unlock()
	f.world.mu.Lock()
	defer f.world.mu.Unlock()
	if f.world.relErr != nil {
		return f.world.relErr
	}
	f.world.relay = side
	return nil
}
func (f fakeRelay) Position(context.Context) (relay.Side, bool, error) {
	f.world.mu.Lock()
	defer f.world.mu.Unlock()
	return f.world.relay, true, nil
}

func (f fakeReplica) InSync() bool          { return true }
func (f fakeReplica) StoreSeq() uint64      { f.mu.Lock(); defer f.mu.Unlock(); return f.seq }
func (f fakeReplica) ConfigVersion() uint64 { return 1 }
func (f fakeReplica) BecomeSource() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("source")
	f.source = true
}
func (f fakeReplica) BecomeFollower(peer string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("follow %s", peer)
	f.source = false
}

func (f fakeService) Serve(_ context.Context, term uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("serve %d", term)
	if f.serveErr != nil {
		return f.serveErr
	}
	f.serving = true
	return nil
}
func (f fakeService) Stop() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("stop")
	f.serving = false
	return nil
}
func (f fakeService) Healthy(context.Context) error { return nil }

func (f fakeProbe) VIPAnswers(context.Context) bool {
	f.mu.Lock()
	takes := f.probeTakes
	f.mu.Unlock()
	if fc, ok := f.world.clock.(*clockwork.FakeClock); ok && takes > 0 {
		fc.Advance(takes)
	}
	if !f.world.link.LANUp(f.name) {
		return false
	}
	f.world.mu.Lock()
	var names []string
	for n := range f.world.boxes {
		names = append(names, n)
	}
	f.world.mu.Unlock()
	// The probe's three tries span probeSpan: the twin answers if it
	// served at any moment of that span (the probe is taken to end now).
	now := f.world.clock.Now()
	for _, n := range names {
		if n == f.name {
			continue
		}
		f.world.mu.Lock()
		at, ok := f.world.lastServed[n]
		f.world.mu.Unlock()
		if f.world.serving(n) || (ok && now.Sub(at) <= f.world.probeSpan) {
			return true
		}
	}
	return false
}
func (f fakeProbe) GatewayOK(context.Context) bool { return f.world.link.LANUp(f.name) }

func (f fakeTerms) Term() uint64 { f.mu.Lock(); defer f.mu.Unlock(); return f.term }
func (f fakeTerms) SetTerm(t uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("term %d", t)
	if f.setTermErr != nil {
		return f.setTermErr
	}
	f.term = t
	return nil
}

type fakeLatches struct{ *box }

func (f fakeLatches) Latched() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.latched), nil
}

func (f fakeLatches) SetLatched(names []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.latched = slices.Clone(names)
	return nil
}

func (f fakeFence) FenceNow(reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("fence")
	f.fenced = reason
}

var errInjected = errors.New("injected failure")

// addBox creates name's resources and starts its manager (in BOOT).
func (w *simWorld) addBox(name, peer string, cfg Config, monitors ...Monitor) (*box, *Manager, error) {
	b := &box{name: name, world: w, side: cfg.Side}
	w.mu.Lock()
	w.boxes[name] = b
	w.mu.Unlock()
	m, err := w.start(b, peer, cfg, monitors...)
	return b, m, err
}

// start runs a fresh node process on b (at boot, or after a reset).
func (w *simWorld) start(b *box, peer string, cfg Config, monitors ...Monitor) (*Manager, error) {
	cfg.Node, cfg.Peer, cfg.Clock = b.name, peer, w.clock
	r := Resources{
		Heartbeat: w.link.Attach(b.name),
		VIP:       fakeVIP{b}, Relay: fakeRelay{b}, Replica: fakeReplica{b}, Service: fakeService{b},
		Probe: fakeProbe{b}, Terms: fakeTerms{b}, Fence: fakeFence{b}, Monitors: monitors,
	}
	if !w.noLatches {
		r.Latches = fakeLatches{b}
	}
	m, err := New(cfg, r)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	w.mgrs[b.name] = m
	w.hung[b.name] = false
	w.mu.Unlock()
	return m, nil
}

// crash kills name's node process: the supervisor removes the VIP at
// once, the PBX stops with the process.
func (w *simWorld) crash(name string) {
	w.mu.Lock()
	b := w.boxes[name]
	delete(w.mgrs, name)
	w.mu.Unlock()
	w.link.Mute(name, true)
	b.mu.Lock()
	b.vipHeld, b.serving, b.fenced = false, false, ""
	b.mu.Unlock()
}

// hang stops (or resumes) name's node process: nothing it runs moves.
func (w *simWorld) hang(name string, hung bool) {
	w.mu.Lock()
	w.hung[name] = hung
	w.mu.Unlock()
	w.link.Mute(name, hung)
}

// live returns the managers that run now.
func (w *simWorld) live() map[string]*Manager {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]*Manager{}
	for n, m := range w.mgrs {
		if !w.hung[n] {
			out[n] = m
		}
	}
	return out
}
