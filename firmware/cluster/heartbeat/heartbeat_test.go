package heartbeat

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/internal/waitfor"
)

// Timing of the loopback tests: fast enough to keep tests short, slow
// enough for a loaded two-core machine not to miss DeadTime by accident.
const (
	testInterval = 20 * time.Millisecond
	testDeadTime = 200 * time.Millisecond
	waitLimit    = 10 * time.Second
)

var pathNames = []string{"crossover", "lan"}

// waitFor polls cond until it holds or waitLimit passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitfor.Cond(t, waitLimit, what, cond)
}

// relay forwards datagrams from its socket to a target, standing in for a
// cable the test can cut. It remembers what it forwarded, for replays.
type relay struct {
	conn   *net.UDPConn
	target atomic.Pointer[netip.AddrPort]
	cut    atomic.Bool
	delay  time.Duration

	mu   sync.Mutex
	seen [][]byte
}

func newRelay(t *testing.T, delay time.Duration) *relay {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{conn: conn, delay: delay}
	done := make(chan struct{})
	t.Cleanup(func() { conn.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, _, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			to := r.target.Load()
			if r.cut.Load() || to == nil {
				continue
			}
			b := bytes.Clone(buf[:n])
			r.mu.Lock()
			r.seen = append(r.seen, b)
			r.mu.Unlock()
			if r.delay > 0 {
				time.AfterFunc(r.delay, func() { _, _ = conn.WriteToUDPAddrPort(b, *to) })
				continue
			}
			_, _ = conn.WriteToUDPAddrPort(b, *to)
		}
	}()
	return r
}

func (r *relay) addr() netip.AddrPort { return r.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (r *relay) setTarget(a netip.AddrPort) { r.target.Store(&a) }

// last returns the last datagram the relay forwarded.
func (r *relay) last(t *testing.T) []byte {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seen) == 0 {
		t.Fatal("relay forwarded nothing")
	}
	return r.seen[len(r.seen)-1]
}

// inject sends b to a socket from the relay's own socket.
func (r *relay) inject(t *testing.T, b []byte, to netip.AddrPort) {
	t.Helper()
	if _, err := r.conn.WriteToUDPAddrPort(b, to); err != nil {
		t.Fatal(err)
	}
}

// node is a running Heartbeat with its event log.
type node struct {
	*Heartbeat
	name string
	stop func()

	mu     sync.Mutex
	events []Event
}

// loopbackAddr returns a random 127.x.y.z address with port 0, so that
// parallel tests do not share addresses.
func loopbackAddr() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, byte(1 + rand.IntN(250)), byte(rand.IntN(256)), byte(1 + rand.IntN(250))}), 0)
}

// start makes and runs a node whose paths send to peers (by path name).
// local, if set, gives the local addresses to bind.
func start(t *testing.T, cfg Config, peers map[string]netip.AddrPort, local map[string]netip.AddrPort) *node {
	t.Helper()
	if cfg.Key == ([32]byte{}) {
		cfg.Key = testKey
	}
	if cfg.Interval == 0 {
		cfg.Interval, cfg.DeadTime = testInterval, testDeadTime
	}
	if cfg.LocalMaxAge == 0 {
		cfg.LocalMaxAge = -1 // tests set the beat once
	}
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	for _, name := range pathNames {
		l, ok := local[name]
		if !ok {
			l = loopbackAddr()
		}
		cfg.Paths = append(cfg.Paths, Path{Name: name, Local: l, Peer: peers[name]})
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// No beat leaves before the first SetLocal; tests that care set
	// their own beat afterwards.
	h.SetLocal(Beat{Role: RoleBoot})
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{Heartbeat: h, name: cfg.Node}
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	evDone := make(chan struct{})
	go func() {
		defer close(evDone)
		for e := range h.Events() {
			n.mu.Lock()
			n.events = append(n.events, e)
			n.mu.Unlock()
		}
	}()
	var once sync.Once
	n.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run of %s: %v", cfg.Node, err)
			}
			<-evDone
		})
	}
	t.Cleanup(n.stop)
	return n
}

func (n *node) hasEvent(match func(Event) bool) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, e := range n.events {
		if match(e) {
			return true
		}
	}
	return false
}

func (n *node) countEvents(kind EventKind, path string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, e := range n.events {
		if e.Kind == kind && e.Path == path {
			c++
		}
	}
	return c
}

func (n *node) path(name string) PathView {
	v, _ := n.Peer().Path(name)
	return v
}

func (n *node) up(name string) bool { return n.path(name).Up }

// pair is two nodes, a and b, joined on both paths through relays.
type pair struct {
	a, b   *node
	ab, ba map[string]*relay // by path: a→b and b→a
}

func newPair(t *testing.T, cfgA, cfgB Config, delay time.Duration) *pair {
	t.Helper()
	p := &pair{ab: map[string]*relay{}, ba: map[string]*relay{}}
	toB, toA := map[string]netip.AddrPort{}, map[string]netip.AddrPort{}
	for _, name := range pathNames {
		p.ab[name], p.ba[name] = newRelay(t, delay), newRelay(t, delay)
		toB[name], toA[name] = p.ab[name].addr(), p.ba[name].addr()
	}
	if cfgA.Node == "" {
		cfgA.Node = "a"
	}
	if cfgB.Node == "" {
		cfgB.Node = "b"
	}
	p.a = start(t, cfgA, toB, nil)
	p.b = start(t, cfgB, toA, nil)
	for _, name := range pathNames {
		aAddr, _ := p.a.LocalAddr(name)
		bAddr, _ := p.b.LocalAddr(name)
		p.ab[name].setTarget(bAddr)
		p.ba[name].setTarget(aAddr)
	}
	return p
}

func (p *pair) waitAllUp(t *testing.T) {
	t.Helper()
	for _, n := range []*node{p.a, p.b} {
		for _, name := range pathNames {
			waitFor(t, fmt.Sprintf("%s to see path %s up", n.name, name), func() bool { return n.up(name) })
		}
	}
}

func TestPairSeesEachOther(t *testing.T) {
	t.Parallel()
	p := newPair(t, Config{Peer: "b"}, Config{Peer: "a"}, 0)
	want := Beat{Role: RoleActive, Term: 7, StoreSeq: 1234, ConfigVersion: 5, Flags: GatewayOK, WatchdogTimeout: 5 * time.Second}
	p.a.SetLocal(want)
	p.waitAllUp(t)
	waitFor(t, "b to hear a's beat", func() bool { return p.b.Peer().Latest.Beat == want })

	for _, n := range []*node{p.a, p.b} {
		waitFor(t, n.name+" to see both ways on both paths", func() bool {
			v := n.Peer()
			return v.Paths[0].PeerHearsUs && v.Paths[1].PeerHearsUs && v.Paths[0].RTT > 0 && v.Paths[1].RTT > 0
		})
		v := n.Peer()
		if v.Silent || !v.Heard {
			t.Errorf("%s: silent %v, heard %v", n.name, v.Silent, v.Heard)
		}
		if v.Rejected.Total() != 0 {
			t.Errorf("%s rejected beats: %+v", n.name, v.Rejected)
		}
		for _, pv := range v.Paths {
			if pv.Received == 0 || pv.Last.Arrived.IsZero() || pv.Since.IsZero() {
				t.Errorf("%s path %s: %+v", n.name, pv.Name, pv)
			}
		}
		if !n.hasEvent(func(e Event) bool { return e.Kind == PeerBack }) {
			t.Errorf("%s: no peer back event", n.name)
		}
		for _, name := range pathNames {
			if c := n.countEvents(PathUp, name); c != 1 {
				t.Errorf("%s: %d path up events for %s, want 1", n.name, c, name)
			}
		}
	}
	v := p.b.Peer()
	if v.Latest.Node != "a" || v.Latest.Incarnation != p.a.Incarnation() {
		t.Errorf("b's latest beat: %+v; want node a, incarnation %x", v.Latest, p.a.Incarnation())
	}
	if p.a.Incarnation() == p.b.Incarnation() {
		t.Error("both nodes drew the same incarnation")
	}
}

func TestEchoNamesOurBeat(t *testing.T) {
	t.Parallel()
	begin := time.Now()
	p := newPair(t, Config{}, Config{}, 0)
	p.a.SetLocal(Beat{Role: RoleActive, Term: 7})
	for _, name := range pathNames {
		waitFor(t, "b to echo a's term on "+name, func() bool { return p.a.path(name).Last.Echo.Term == 7 })
		last := p.a.path(name).Last
		if e := last.Echo; e.Seq == 0 || e.Sent.Before(begin) || e.Sent.After(last.Arrived) {
			t.Errorf("%s: echo %+v of a beat received at %v; test began %v", name, e, last.Arrived, begin)
		}
	}
	// a echoes the term b sent (0), not its own.
	if e := p.b.Peer().Latest.Echo; e.Term != 0 {
		t.Errorf("b sent term 0 but a echoes %d", e.Term)
	}
	select {
	case <-p.a.Changed():
	default:
		t.Error("no change signalled after the twin came up")
	}
}

func TestNothingSentBeforeSetLocal(t *testing.T) {
	t.Parallel()
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	h, err := New(Config{
		Node: "a", Key: testKey,
		Paths: []Path{{Name: "lan", Local: loopbackAddr(), Peer: peer.LocalAddr().(*net.UDPAddr).AddrPort()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	h.send(h.paths[0])
	if h.paths[0].seq != 0 {
		t.Fatal("a beat went out before SetLocal")
	}
	h.SetLocal(Beat{Term: 42})
	h.send(h.paths[0])
	_ = peer.SetReadDeadline(time.Now().Add(waitLimit))
	buf := make([]byte, maxDatagram)
	n, _, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	aead, _ := newAEAD(testKey)
	pkt, err := open(aead, buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if pkt.Seq != 1 || pkt.Beat.Term != 42 || pkt.Echo.Seq != 0 {
		t.Errorf("first beat %+v; want seq 1, term 42, no echo", pkt)
	}
}

func TestRTTByEcho(t *testing.T) {
	t.Parallel()
	// Each relay holds a datagram 30 ms, so a round trip takes at least
	// 60 ms however fast the machine is.
	const delay = 30 * time.Millisecond
	p := newPair(t, Config{}, Config{}, delay)
	p.waitAllUp(t)
	for _, n := range []*node{p.a, p.b} {
		for _, name := range pathNames {
			waitFor(t, n.name+" to measure the RTT of "+name, func() bool { return n.path(name).RTT > 0 })
			if rtt := n.path(name).RTT; rtt < 2*delay {
				t.Errorf("%s %s: RTT %v, below the %v the relays add", n.name, name, rtt, 2*delay)
			}
		}
	}
}

func TestPathCuts(t *testing.T) {
	t.Parallel()
	p := newPair(t, Config{}, Config{}, 0)
	p.waitAllUp(t)

	// A silent cut of the crossover from a to b: b loses that path only.
	p.ab["crossover"].cut.Store(true)
	waitFor(t, "b's crossover down", func() bool { return !p.b.up("crossover") })
	if !p.b.up("lan") {
		t.Error("b's lan went down with the crossover")
	}
	if p.b.Peer().Silent || p.b.hasEvent(func(e Event) bool { return e.Kind == PeerSilent }) {
		t.Error("b calls the twin silent while the lan is up")
	}
	if c := p.b.countEvents(PathDown, "crossover"); c != 1 {
		t.Errorf("%d path down events for the crossover, want 1", c)
	}
	// a still hears b on the crossover but b no longer hears a.
	waitFor(t, "a to learn b no longer hears it", func() bool {
		v := p.a.path("crossover")
		return v.Up && !v.PeerHearsUs
	})

	// Mend it: the path comes back.
	p.ab["crossover"].cut.Store(false)
	waitFor(t, "b's crossover up again", func() bool { return p.b.up("crossover") })
	if c := p.b.countEvents(PathUp, "crossover"); c != 2 {
		t.Errorf("%d path up events for the crossover, want 2", c)
	}

	// Cut both paths: b finds a silent, then back when one returns.
	lanBacks := p.b.countEvents(PeerBack, "lan")
	crossBacks := p.b.countEvents(PeerBack, "crossover")
	p.ab["crossover"].cut.Store(true)
	p.ab["lan"].cut.Store(true)
	waitFor(t, "b to find a silent", func() bool { return p.b.Peer().Silent })
	waitFor(t, "a peer silent event", func() bool { return p.b.hasEvent(func(e Event) bool { return e.Kind == PeerSilent }) })
	p.ab["lan"].cut.Store(false)
	waitFor(t, "b to hear a again", func() bool { return !p.b.Peer().Silent })
	if n := p.b.countEvents(PeerBack, "lan"); n != lanBacks+1 {
		t.Errorf("%d peer back events on the lan, want %d", n, lanBacks+1)
	}
	if n := p.b.countEvents(PeerBack, "crossover"); n != crossBacks {
		t.Errorf("%d peer back events on the crossover, want %d", n, crossBacks)
	}
	if p.b.up("crossover") {
		t.Error("b's crossover is up while cut")
	}
}

func TestClosedSocketTakesOnlyItsPath(t *testing.T) {
	t.Parallel()
	p := newPair(t, Config{}, Config{}, 0)
	p.waitAllUp(t)
	// a's crossover socket dies under it; Run carries on with the lan.
	p.a.paths[0].conn.Close()
	waitFor(t, "b's crossover down", func() bool { return !p.b.up("crossover") })
	waitFor(t, "a's crossover down", func() bool { return !p.a.up("crossover") })
	for _, n := range []*node{p.a, p.b} {
		if !n.up("lan") {
			t.Errorf("%s lost the lan with a's crossover socket", n.name)
		}
	}
	before := p.b.path("lan").Received
	waitFor(t, "more beats on the lan", func() bool { return p.b.path("lan").Received > before+2 })
}

func TestStoppedTwinGoesSilent(t *testing.T) {
	t.Parallel()
	p := newPair(t, Config{}, Config{}, 0)
	p.waitAllUp(t)
	p.a.stop()
	waitFor(t, "b to find a silent", func() bool { return p.b.Peer().Silent })
	for _, name := range pathNames {
		if p.b.up(name) {
			t.Errorf("path %s up after a stopped", name)
		}
	}
}

func TestStaleBeatFallsSilent(t *testing.T) {
	t.Parallel()
	// a's decision loop "stops" after its one SetLocal: a falls silent.
	p := newPair(t, Config{LocalMaxAge: testDeadTime / 2}, Config{}, 0)
	// Refresh a's beat, like a live decision loop, until b hears it.
	waitFor(t, "b to hear a", func() bool {
		p.a.SetLocal(Beat{Role: RoleStandby})
		return p.b.Peer().Heard
	})
	waitFor(t, "b to find a silent", func() bool { return p.b.Peer().Silent })
	// b's beats go on: a still hears b.
	if !p.a.up("lan") || !p.a.up("crossover") {
		t.Error("a lost b while only a's beats stopped")
	}
	// The loop comes back.
	p.a.SetLocal(Beat{Role: RoleStandby})
	waitFor(t, "b to hear a again", func() bool { return !p.b.Peer().Silent })
}

func TestWrongKeyNeverUp(t *testing.T) {
	t.Parallel()
	other := testKey
	other[31] ^= 0xff
	p := newPair(t, Config{}, Config{Key: other}, 0)
	for _, n := range []*node{p.a, p.b} {
		waitFor(t, n.name+" to reject beats", func() bool {
			v := n.Peer()
			return v.Paths[0].Rejected.WrongKey >= 3 && v.Paths[1].Rejected.WrongKey >= 3
		})
		v := n.Peer()
		if v.Heard || !v.Silent || v.Paths[0].Up || v.Paths[1].Up || v.Paths[0].Unverified != 0 {
			t.Errorf("%s accepted a twin with another key: %+v", n.name, v)
		}
		// One alarm per path, however many beats: the alarm is rate-limited.
		for _, name := range pathNames {
			if !n.hasEvent(func(e Event) bool { return e.Kind == Rejected && e.Reason == ReasonWrongKey && e.Path == name }) {
				t.Errorf("%s: no wrong key alarm on %s", n.name, name)
			}
			if c := n.countEvents(Rejected, name); c != 1 {
				t.Errorf("%s: %d alarms on %s, want 1", n.name, c, name)
			}
		}
	}
}

func TestRejections(t *testing.T) {
	t.Parallel()
	p := newPair(t, Config{Peer: "b"}, Config{Peer: "a"}, 0)
	p.waitAllUp(t)
	bCross, _ := p.b.LocalAddr("crossover")
	bLAN, _ := p.b.LocalAddr("lan")

	tests := []struct {
		name  string
		make  func() []byte
		to    netip.AddrPort
		count func(Rejects) uint64
	}{
		{"replayed beat", func() []byte { return p.ab["crossover"].last(t) }, bCross, func(r Rejects) uint64 { return r.Replay }},
		{"beat of the other path", func() []byte { return p.ab["crossover"].last(t) }, bLAN, func(r Rejects) uint64 { return r.WrongPath }},
		{"our own beat reflected", func() []byte { return p.ba["lan"].last(t) }, bLAN, func(r Rejects) uint64 { return r.Reflected }},
		{"tampered beat", func() []byte {
			b := bytes.Clone(p.ab["lan"].last(t))
			b[len(b)/2] ^= 0x10
			return b
		}, bLAN, func(r Rejects) uint64 { return r.WrongKey }},
		{"another version", func() []byte {
			b := bytes.Clone(p.ab["lan"].last(t))
			b[len(magic)] = Version + 1
			return b
		}, bLAN, func(r Rejects) uint64 { return r.Version }},
		{"not a heartbeat", func() []byte { return []byte("hello") }, bLAN, func(r Rejects) uint64 { return r.Malformed }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.count(p.b.Peer().Rejected)
			latest := p.b.Peer().Latest
			p.ab["crossover"].inject(t, tt.make(), tt.to)
			waitFor(t, "the rejection to be counted", func() bool { return tt.count(p.b.Peer().Rejected) > before })
			if got := p.b.Peer().Latest; got.Seq < latest.Seq && got.Incarnation == latest.Incarnation {
				t.Errorf("latest beat went back from seq %d to %d", latest.Seq, got.Seq)
			}
		})
	}

	// A third node with the right key but another name: a expects b only.
	aAddrs := map[string]netip.AddrPort{}
	for _, name := range pathNames {
		aAddrs[name], _ = p.a.LocalAddr(name)
	}
	start(t, Config{Node: "c"}, aAddrs, nil)
	waitFor(t, "a to reject c", func() bool {
		v := p.a.Peer()
		return v.Paths[0].Rejected.WrongPeer > 0 && v.Paths[1].Rejected.WrongPeer > 0
	})
	if got := p.a.Peer().Latest.Node; got != "b" {
		t.Errorf("a's latest beat is from %q", got)
	}
	for _, n := range []*node{p.a, p.b} {
		for _, name := range pathNames {
			if !n.up(name) {
				t.Errorf("%s: path %s went down during the rejections", n.name, name)
			}
		}
	}
}

func TestRecordingCannotFakeATwin(t *testing.T) {
	t.Parallel()
	p := newPair(t, Config{}, Config{}, 0)
	p.waitAllUp(t)
	recorded := p.ab["lan"].last(t)
	bLAN, _ := p.b.LocalAddr("lan")
	p.a.stop()
	p.b.stop()

	// b starts again on the same address: a new incarnation with no
	// record of a's. a's recorded beats, however many, must not bring the
	// path up, since they cannot echo b's new incarnation.
	fresh := start(t, Config{Node: "b"}, map[string]netip.AddrPort{"crossover": p.ba["crossover"].addr(), "lan": p.ba["lan"].addr()}, map[string]netip.AddrPort{"lan": bLAN})
	for range 5 {
		p.ab["lan"].inject(t, recorded, bLAN)
	}
	waitFor(t, "the recorded beats to arrive", func() bool {
		v := fresh.path("lan")
		return v.Unverified+v.Rejected.Total() >= 5
	})
	if v := fresh.Peer(); v.Heard || v.Paths[1].Up {
		t.Errorf("recorded beats brought the twin up: %+v", v)
	}
}

func TestRestartWithNewIncarnation(t *testing.T) {
	t.Parallel()
	p := newPair(t, Config{}, Config{}, 0)
	p.waitAllUp(t)
	first := p.a.Incarnation()
	aAddrs := map[string]netip.AddrPort{}
	for _, name := range pathNames {
		aAddrs[name], _ = p.a.LocalAddr(name)
	}
	p.a.stop()

	// a comes back on the same addresses, before b's dead time ends.
	a2 := start(t, Config{Node: "a"}, map[string]netip.AddrPort{"crossover": p.ab["crossover"].addr(), "lan": p.ab["lan"].addr()}, aAddrs)
	if a2.Incarnation() == first {
		t.Fatal("the restarted node drew the same incarnation")
	}
	waitFor(t, "b to accept a's new incarnation", func() bool { return p.b.Peer().Latest.Incarnation == a2.Incarnation() })
	waitFor(t, "a peer restarted event", func() bool {
		return p.b.hasEvent(func(e Event) bool { return e.Kind == PeerRestarted && e.Beat.Incarnation == a2.Incarnation() })
	})
	for _, name := range pathNames {
		waitFor(t, "b's "+name+" up with the new incarnation", func() bool {
			v := p.b.path(name)
			return v.Up && v.Last.Incarnation == a2.Incarnation()
		})
		waitFor(t, "the restarted a to see "+name+" up", func() bool { return a2.up(name) })
	}
	if r := p.b.Peer().Rejected; r.Total() != 0 {
		t.Errorf("b rejected beats across the restart: %+v", r)
	}
}

func TestSendNowDeliversGoodbye(t *testing.T) {
	t.Parallel()
	// An interval no test outlives: only SendNow sends after the first beat.
	slow := Config{Interval: time.Hour, DeadTime: 2 * time.Hour}
	p := newPair(t, slow, slow, 0)
	waitFor(t, "both up by SendNow alone", func() bool {
		p.a.SendNow()
		p.b.SendNow()
		return p.a.up("lan") && p.b.up("lan") && p.a.up("crossover") && p.b.up("crossover")
	})
	// A shutdown: goodbye, then Run ends at once. SendNow has handed the
	// beat to the kernel before it returns, so it is not lost.
	p.a.SetLocal(Beat{Role: RoleActive, Term: 3, Flags: Goodbye})
	p.a.SendNow()
	p.a.stop()
	waitFor(t, "b to see the goodbye", func() bool {
		return p.b.hasEvent(func(e Event) bool { return e.Kind == PeerChanged && e.Beat.Beat.Flags&Goodbye != 0 })
	})
	if got := p.b.Peer().Latest.Beat; got.Flags != Goodbye || got.Term != 3 || got.Role != RoleActive {
		t.Errorf("b's view of a: %+v", got)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	good := func() Config {
		return Config{
			Node: "a", Key: testKey,
			Paths: []Path{{Name: "lan", Local: netip.MustParseAddrPort("127.0.0.1:0"), Peer: netip.MustParseAddrPort("127.0.0.1:9")}},
		}
	}
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"no node", func(c *Config) { c.Node = "" }},
		{"peer is us", func(c *Config) { c.Peer = "a" }},
		{"no key", func(c *Config) { c.Key = [32]byte{} }},
		{"no paths", func(c *Config) { c.Paths = nil }},
		{"path without a name", func(c *Config) { c.Paths[0].Name = "" }},
		{"path twice", func(c *Config) { c.Paths = append(c.Paths, c.Paths[0]) }},
		{"no local address", func(c *Config) { c.Paths[0].Local = netip.AddrPort{} }},
		{"no peer port", func(c *Config) { c.Paths[0].Peer = netip.MustParseAddrPort("127.0.0.1:0") }},
		{"dead time too short", func(c *Config) { c.Interval, c.DeadTime = time.Second, time.Second }},
		{"address not ours", func(c *Config) { c.Paths[0].Local = netip.MustParseAddrPort("192.0.2.1:0") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good()
			tt.mod(&cfg)
			h, err := New(cfg)
			if err == nil {
				h.Close()
				t.Fatal("New accepted the config")
			}
			t.Log(err)
		})
	}
	h, err := New(good())
	if err != nil {
		t.Fatalf("New refused a good config: %v", err)
	}
	if err := h.Close(); err != nil {
		t.Error(err)
	}
}
