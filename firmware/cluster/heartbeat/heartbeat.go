// Package heartbeat sends and checks the twin pair's heartbeats: small
// authenticated UDP datagrams sent every Interval on each path between the
// twins (the crossover cable and the office LAN), as docs/CLUSTER.md
// "Heartbeats" describes. It tells the cluster manager what the twin last
// said on each path, whether each path is up (a valid beat within
// DeadTime), the round-trip time, losses, and beats it refused (wrong key,
// another protocol version, replays). It decides nothing: roles, terms and
// failover are the manager's.
//
// # Freshness
//
// Every beat is sealed under the heartbeat key derived from the pairing
// key (see the wire format in wire.go), so only a twin can make one. A
// captured beat could still be sent again; a receiver therefore accepts,
// per path and per sender incarnation (a random number drawn at every
// start), only sequence numbers above the last it accepted. A beat of an
// incarnation the receiver has not accepted yet (the first contact, or the
// twin restarted) must also prove it is live: it must echo a beat of the
// receiver's own current incarnation newer than any echo accepted before,
// which no recording can do. Such beats are counted as Unverified until
// then, which takes one round trip after the twin first hears us. A beat
// whose echo shows a round trip longer than DeadTime was held back on the
// way and is refused too.
//
// # Falling silent
//
// A node announces only what its manager told it recently: no beat goes
// out before the first SetLocal, nor once the last one is older than
// Config.LocalMaxAge, so a stuck decision loop looks dead to the twin.
//
// # Concurrency
//
// New opens the sockets; Run sends and receives until its context ends,
// and may be called once. SetLocal, SendNow, Peer, Events, Incarnation and
// LocalAddr are safe to call from any goroutine at any time, before, during
// and after Run; SendNow sends from the caller's goroutine, ordered with
// the ticker's sends by a per-path lock. Events (and the coalesced
// Changed signal) are sent without blocking: a consumer that falls
// more than EventBuffer events behind loses the newest ones (counted in
// PeerView.DroppedEvents), so a consumer should treat an event as a hint
// and read Peer for the current state.
package heartbeat

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Config, those of docs/CLUSTER.md.
const (
	DefaultInterval = 50 * time.Millisecond
	DefaultDeadTime = 300 * time.Millisecond
)

// EventBuffer is the capacity of the Events channel.
const EventBuffer = 64

// alarmEvery limits Rejected events and their log lines to one per path
// and reason in this time; the counters count every beat.
const alarmEvery = 10 * time.Second

// Path is one route to the twin.
type Path struct {
	// Name identifies the path in beats, views and events: "crossover" or
	// "lan". Both twins must use the same names.
	Name string
	// Local is the address the path's socket binds; port 0 picks a free
	// port (see LocalAddr). Peer is the twin's socket on this path.
	Local, Peer netip.AddrPort
}

// Config configures a Heartbeat. The zero values of Interval, DeadTime,
// Logger, Now and Rand mean their defaults.
type Config struct {
	// Node is this box's name, carried in every beat.
	Node string
	// Peer, if set, is the twin's node name: beats naming another node
	// are rejected (Rejects.WrongPeer). Beats naming Node itself are
	// always rejected, as reflections.
	Peer string
	// Key is the heartbeat key (pairing.Keys.Heartbeat).
	Key   [32]byte
	Paths []Path
	// Interval is the time between beats on a path; DeadTime is how long
	// a path stays up without a valid beat. DeadTime must be at least
	// twice Interval.
	Interval, DeadTime time.Duration
	// LocalMaxAge is how long one SetLocal keeps beats going: a node
	// whose decision loop stops calling SetLocal falls silent after it,
	// so that its twin takes over instead of waiting for the watchdog.
	// Zero means DeadTime; negative means for ever (tests, tools).
	LocalMaxAge time.Duration
	Logger      *slog.Logger
	// Now reads the clock. It must advance with real time, since timers
	// are real; tests use it to shift or observe the clock.
	Now func() time.Time
	// Rand is the source of nonces and of the incarnation; nil means
	// crypto/rand.
	Rand io.Reader
}

// Received is one accepted beat as it arrived.
type Received struct {
	Node        string
	Beat        Beat
	Incarnation uint64
	Seq         uint64
	// Sent is the send time by the twin's clock (wall clock at its start
	// plus monotonic time since). Arrived is by ours.
	Sent, Arrived time.Time
	From          netip.AddrPort
	// Echo is the last of our beats the twin had received on this path
	// when it sent this one.
	Echo Echoed
}

// Echoed names one of our beats as the twin echoed it.
type Echoed struct {
	// Seq and Term are those our beat carried. A zero Seq means the twin
	// had received none of this incarnation's beats on the path.
	Seq  uint64
	Term uint64
	// Sent is when we sent that beat, by Config.Now's clock (carrying its
	// monotonic reading); zero when Seq is zero. A lease counted from it
	// never outlasts what the twin acknowledged.
	Sent time.Time
}

// Rejects counts refused datagrams by reason.
type Rejects struct {
	WrongKey  uint64 // failed authentication: a twin with another pairing key, or forged
	Version   uint64 // another protocol version
	Malformed uint64 // not a heartbeat, or an authentic one that does not decode
	Replay    uint64 // a sequence number already seen (replayed, duplicated, reordered) or a beat held back longer than DeadTime
	Reflected uint64 // our own beat sent back to us
	WrongPeer uint64 // names a node other than Config.Peer
	WrongPath uint64 // sealed for the other path
}

func (r *Rejects) add(o Rejects) {
	r.WrongKey += o.WrongKey
	r.Version += o.Version
	r.Malformed += o.Malformed
	r.Replay += o.Replay
	r.Reflected += o.Reflected
	r.WrongPeer += o.WrongPeer
	r.WrongPath += o.WrongPath
}

// Total is the number of rejected datagrams.
func (r Rejects) Total() uint64 {
	return r.WrongKey + r.Version + r.Malformed + r.Replay + r.Reflected + r.WrongPeer + r.WrongPath
}

// Reason is why a datagram was rejected.
type Reason uint8

const (
	ReasonWrongKey Reason = iota + 1
	ReasonVersion
	ReasonMalformed
	ReasonReplay
	ReasonReflected
	ReasonWrongPeer
	ReasonWrongPath
)

func (r Reason) String() string {
	switch r {
	case ReasonWrongKey:
		return "twin with a wrong pairing key"
	case ReasonVersion:
		return "twin with another heartbeat protocol version"
	case ReasonMalformed:
		return "malformed heartbeat"
	case ReasonReplay:
		return "replayed heartbeat"
	case ReasonReflected:
		return "our own heartbeat reflected"
	case ReasonWrongPeer:
		return "heartbeat from an unexpected node"
	case ReasonWrongPath:
		return "heartbeat of the other path"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

func (r *Rejects) count(reason Reason) {
	switch reason {
	case ReasonWrongKey:
		r.WrongKey++
	case ReasonVersion:
		r.Version++
	case ReasonMalformed:
		r.Malformed++
	case ReasonReplay:
		r.Replay++
	case ReasonReflected:
		r.Reflected++
	case ReasonWrongPeer:
		r.WrongPeer++
	case ReasonWrongPath:
		r.WrongPath++
	}
}

// PathView is the state of one path.
type PathView struct {
	Name string
	// Up: a valid beat arrived within DeadTime. Since is when Up last
	// changed (zero: never).
	Up    bool
	Since time.Time
	// Last is the last accepted beat (Arrived is zero if none yet).
	Last Received
	// RTT is the last round-trip time measured by echo (zero: none yet).
	RTT time.Duration
	// PeerHearsUs: the last accepted beat echoed one of ours sent within
	// DeadTime, so the path works both ways.
	PeerHearsUs bool
	// Received counts accepted beats, Lost the sequence numbers skipped
	// between them, Unverified authentic beats of a twin incarnation not
	// yet proven live (normal for one round trip after a (re)start).
	Received, Lost, Unverified uint64
	Rejected                   Rejects
}

// PeerView is what we know of the twin.
type PeerView struct {
	// Heard: a beat was accepted at some time. Latest is the newest
	// accepted beat over all paths.
	Heard  bool
	Latest Received
	// Silent: every path is down.
	Silent        bool
	Paths         []PathView
	Rejected      Rejects
	DroppedEvents uint64
}

// Path returns the view of the named path.
func (v PeerView) Path(name string) (PathView, bool) {
	for _, p := range v.Paths {
		if p.Name == name {
			return p, true
		}
	}
	return PathView{}, false
}

// EventKind says what changed.
type EventKind uint8

const (
	// PathUp: a path got its first valid beat after being down.
	PathUp EventKind = iota + 1
	// PathDown: a path had no valid beat for DeadTime.
	PathDown
	// PeerSilent: the last up path went down.
	PeerSilent
	// PeerBack: a path came up while all were down (also at first contact).
	PeerBack
	// PeerRestarted: the twin came back with a new incarnation.
	PeerRestarted
	// PeerChanged: the twin's Beat or name differs from its previous one.
	PeerChanged
	// Rejected: datagrams are being refused (rate-limited; see Reason).
	Rejected
)

func (k EventKind) String() string {
	switch k {
	case PathUp:
		return "path up"
	case PathDown:
		return "path down"
	case PeerSilent:
		return "peer silent"
	case PeerBack:
		return "peer back"
	case PeerRestarted:
		return "peer restarted"
	case PeerChanged:
		return "peer changed"
	case Rejected:
		return "rejected"
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Event is a change of the twin's or a path's state.
type Event struct {
	Kind EventKind
	// Path is the path concerned (empty for PeerSilent).
	Path string
	Time time.Time
	// Beat is the beat that caused PathUp, PeerBack, PeerRestarted or
	// PeerChanged.
	Beat Received
	// Reason and Err explain a Rejected event.
	Reason Reason
	Err    error
}

// Heartbeat runs the heartbeats of one box. See the package doc for its
// concurrency rules.
type Heartbeat struct {
	cfg         Config
	log         *slog.Logger
	aead        cipher.AEAD
	incarnation uint64
	start       time.Time
	paths       []*path
	events      chan Event
	changed     chan struct{}
	running     atomic.Bool

	mu      sync.Mutex
	local   Beat
	set     bool      // SetLocal was called: beats may go out
	setAt   time.Time // of the last SetLocal
	stale   bool      // beats are withheld: the last SetLocal is too old
	silent  bool
	heard   bool
	latest  Received
	closed  bool
	dropped uint64
}

type path struct {
	cfg  Path
	conn *net.UDPConn
	// sendMu orders the sends of the ticker and of SendNow, so that
	// sequence numbers leave in order (the twin drops older ones).
	sendMu sync.Mutex
	dead   *time.Timer // nil until the first accepted beat

	// guarded by Heartbeat.mu
	seq         uint64 // of our last beat on this path
	up          bool
	since       time.Time
	last        Received
	known       bool   // peerInc is an accepted incarnation
	peerInc     uint64 // incarnation of the accepted beats
	highestEcho uint64 // highest seq of ours an accepted beat echoed
	echoIn      echo   // what we echo: the last authentic fresh beat
	echoArrived time.Time
	echoedSent  time.Time // send time of our beat last echoed to us
	rtt         time.Duration
	received    uint64
	lost        uint64
	unverified  uint64
	rejected    Rejects
	lastAlarm   map[Reason]time.Time
	sendErr     string
}

// New checks cfg, fills in defaults and opens one UDP socket per path.
// Call Run to start, or Close if Run will not be called.
func New(cfg Config) (*Heartbeat, error) {
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.DeadTime == 0 {
		cfg.DeadTime = DefaultDeadTime
	}
	if cfg.LocalMaxAge == 0 {
		cfg.LocalMaxAge = cfg.DeadTime
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if err := validate(&cfg); err != nil {
		return nil, fmt.Errorf("heartbeat config: %w", err)
	}
	aead, err := newAEAD(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("heartbeat key: %w", err)
	}
	var inc [8]byte
	for binary.BigEndian.Uint64(inc[:]) == 0 {
		if _, err := io.ReadFull(cfg.Rand, inc[:]); err != nil {
			return nil, fmt.Errorf("drawing the heartbeat incarnation: %w", err)
		}
	}
	h := &Heartbeat{
		cfg:         cfg,
		log:         cfg.Logger.With("node", cfg.Node),
		aead:        aead,
		incarnation: binary.BigEndian.Uint64(inc[:]),
		start:       cfg.Now(),
		events:      make(chan Event, EventBuffer),
		changed:     make(chan struct{}, 1),
		silent:      true,
	}
	for _, pc := range cfg.Paths {
		conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(pc.Local))
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("opening the %s heartbeat socket: %w", pc.Name, err)
		}
		h.paths = append(h.paths, &path{cfg: pc, conn: conn, lastAlarm: map[Reason]time.Time{}})
	}
	return h, nil
}

func validate(cfg *Config) error {
	if cfg.Node == "" || len(cfg.Node) > MaxNameLen {
		return fmt.Errorf("node name %q: must have 1 to %d bytes", cfg.Node, MaxNameLen)
	}
	if cfg.Peer == cfg.Node {
		return fmt.Errorf("peer name %q is our own", cfg.Peer)
	}
	if cfg.Key == ([32]byte{}) {
		return errors.New("no heartbeat key")
	}
	if len(cfg.Paths) == 0 {
		return errors.New("no paths")
	}
	names := map[string]bool{}
	for _, p := range cfg.Paths {
		if p.Name == "" || len(p.Name) > maxPathLen {
			return fmt.Errorf("path name %q: must have 1 to %d bytes", p.Name, maxPathLen)
		}
		if names[p.Name] {
			return fmt.Errorf("path %q listed twice", p.Name)
		}
		names[p.Name] = true
		if !p.Local.Addr().IsValid() {
			return fmt.Errorf("path %s: no local address", p.Name)
		}
		if !p.Peer.Addr().IsValid() || p.Peer.Port() == 0 {
			return fmt.Errorf("path %s: peer address %v needs an address and a port", p.Name, p.Peer)
		}
	}
	if cfg.Interval < 0 || cfg.DeadTime < 2*cfg.Interval {
		return fmt.Errorf("dead time %v must be at least twice the interval %v", cfg.DeadTime, cfg.Interval)
	}
	return nil
}

// Incarnation is the random number that tells this start of the node from
// earlier ones in its beats.
func (h *Heartbeat) Incarnation() uint64 { return h.incarnation }

// LocalAddr returns the address the named path's socket is bound to.
func (h *Heartbeat) LocalAddr(name string) (netip.AddrPort, bool) {
	for _, p := range h.paths {
		if p.cfg.Name == name {
			return p.conn.LocalAddr().(*net.UDPAddr).AddrPort(), true
		}
	}
	return netip.AddrPort{}, false
}

// Events returns the channel of state changes. It is closed when Run
// returns.
func (h *Heartbeat) Events() <-chan Event { return h.events }

// Changed signals, without blocking and coalescing, that an event was
// emitted: a consumer that only needs to know "look at Peer again" reads
// this instead of Events. It is never closed.
func (h *Heartbeat) Changed() <-chan struct{} { return h.changed }

// SetLocal sets what the next beats announce; they go out on the next tick
// (or at once after SendNow). No beat is sent before the first SetLocal,
// so the twin never decides on a box that has not said what it is, nor
// once the last SetLocal is older than Config.LocalMaxAge.
func (h *Heartbeat) SetLocal(b Beat) {
	now := h.cfg.Now()
	h.mu.Lock()
	h.local = b
	h.set = true
	h.setAt = now
	h.mu.Unlock()
}

// SendNow sends the current beat on every path at once, out of turn, for
// changes the twin must learn without waiting an interval (a role change,
// goodbye, a handover request). It returns once the beats are handed to
// the kernel, so a goodbye sent just before Run's context ends goes out.
// Before the first SetLocal, and after Run has returned, it sends nothing.
func (h *Heartbeat) SendNow() {
	for _, p := range h.paths {
		h.send(p)
	}
}

// Close releases the sockets of a Heartbeat whose Run was never called.
// Run closes them itself.
func (h *Heartbeat) Close() error {
	var errs []error
	for _, p := range h.paths {
		if err := p.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Run sends and receives beats on every path until ctx ends, then closes
// the sockets and the Events channel. A path whose socket fails keeps
// being retried; only the end of ctx stops Run, which then returns nil.
func (h *Heartbeat) Run(ctx context.Context) error {
	if !h.running.CompareAndSwap(false, true) {
		return errors.New("heartbeat: Run called twice")
	}
	var wg sync.WaitGroup
	for _, p := range h.paths {
		wg.Go(func() { h.sendLoop(ctx, p) })
		wg.Go(func() { h.receiveLoop(ctx, p) })
	}
	<-ctx.Done()
	_ = h.Close() // unblocks the receivers
	wg.Wait()
	h.mu.Lock()
	h.closed = true
	for _, p := range h.paths {
		if p.dead != nil {
			p.dead.Stop()
		}
	}
	close(h.events)
	h.mu.Unlock()
	return nil
}

// clock returns the current time as beats carry it: the wall clock at
// start plus the monotonic time since, so it never goes backwards within
// one incarnation.
func (h *Heartbeat) clock() (time.Time, int64) {
	now := h.cfg.Now()
	return now, h.beatClock(now)
}

// beatClock is t as beats carry it.
func (h *Heartbeat) beatClock(t time.Time) int64 {
	return h.start.UnixNano() + t.Sub(h.start).Nanoseconds()
}

func (h *Heartbeat) sendLoop(ctx context.Context, p *path) {
	t := time.NewTicker(h.cfg.Interval)
	defer t.Stop()
	for {
		h.send(p)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *Heartbeat) send(p *path) {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	now, sent := h.clock()
	h.mu.Lock()
	if !h.set {
		h.mu.Unlock()
		return
	}
	if age := now.Sub(h.setAt); h.cfg.LocalMaxAge > 0 && age > h.cfg.LocalMaxAge {
		if !h.stale {
			h.stale = true
			h.log.Warn("withholding heartbeats: what they would say was not refreshed", "age", age, "max_age", h.cfg.LocalMaxAge)
		}
		h.mu.Unlock()
		return
	}
	if h.stale {
		h.stale = false
		h.log.Info("sending heartbeats again: the beat was refreshed")
	}
	p.seq++
	pkt := packet{
		Node:        h.cfg.Node,
		Path:        p.cfg.Name,
		Incarnation: h.incarnation,
		Seq:         p.seq,
		Sent:        sent,
		Echo:        p.echoIn,
		Beat:        h.local,
	}
	if p.echoIn.Seq != 0 {
		pkt.Echo.Hold = max(0, now.Sub(p.echoArrived).Nanoseconds())
	}
	h.mu.Unlock()
	b, err := seal(h.aead, h.cfg.Rand, &pkt)
	if err == nil {
		_, err = p.conn.WriteToUDPAddrPort(b, p.cfg.Peer)
	}
	h.noteSend(p, err)
}

// noteSend logs a send error when it first appears or changes, and its
// end, rather than every beat.
func (h *Heartbeat) noteSend(p *path, err error) {
	if err != nil && errors.Is(err, net.ErrClosed) {
		return // stopping
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case err != nil && err.Error() != p.sendErr:
		p.sendErr = err.Error()
		h.log.Warn("sending heartbeats fails", "path", p.cfg.Name, "peer", p.cfg.Peer, "err", err)
	case err == nil && p.sendErr != "":
		p.sendErr = ""
		h.log.Info("sending heartbeats works again", "path", p.cfg.Name, "peer", p.cfg.Peer)
	}
}

func (h *Heartbeat) receiveLoop(ctx context.Context, p *path) {
	buf := make([]byte, maxDatagram+1)
	for {
		n, from, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			h.log.Warn("receiving heartbeats", "path", p.cfg.Name, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(h.cfg.Interval):
			}
			continue
		}
		h.receive(p, buf[:n], from)
	}
}

// receive handles one datagram that arrived on p.
func (h *Heartbeat) receive(p *path, b []byte, from netip.AddrPort) {
	arrived := h.cfg.Now()
	pkt, err := open(h.aead, b)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		reason := ReasonMalformed
		switch {
		case errors.Is(err, errAuth):
			reason = ReasonWrongKey
		case errors.Is(err, errVersion):
			reason = ReasonVersion
		}
		h.reject(p, reason, err, from, arrived)
		return
	}
	switch {
	case pkt.Node == h.cfg.Node:
		h.reject(p, ReasonReflected, fmt.Errorf("beat names us (%s)", pkt.Node), from, arrived)
		return
	case h.cfg.Peer != "" && pkt.Node != h.cfg.Peer:
		h.reject(p, ReasonWrongPeer, fmt.Errorf("beat from %q, our twin is %q", pkt.Node, h.cfg.Peer), from, arrived)
		return
	case pkt.Path != p.cfg.Name:
		h.reject(p, ReasonWrongPath, fmt.Errorf("beat for path %q arrived on %q", pkt.Path, p.cfg.Name), from, arrived)
		return
	}

	// The echo names one of our beats if it has our incarnation and a
	// beat we have sent; anything else (only a twin with our key and a
	// bug could send it) is ignored.
	ourNow := h.beatClock(arrived)
	echoOurs := pkt.Echo.Incarnation == h.incarnation && pkt.Echo.Seq != 0 &&
		pkt.Echo.Seq <= p.seq && pkt.Echo.Sent <= ourNow
	// A beat that echoes ours tells its round trip: our send time to
	// its arrival, less the time the twin held our beat. One that took
	// longer than DeadTime was held back on the way (a delayed replay)
	// and says nothing about now.
	if echoOurs {
		if rtt := time.Duration(ourNow - pkt.Echo.Sent - pkt.Echo.Hold); rtt > h.cfg.DeadTime {
			h.reject(p, ReasonReplay, fmt.Errorf("beat delayed: round trip %v", rtt), from, arrived)
			return
		}
	}
	newInc := false // the first accepted beat of its incarnation on p
	if p.known && pkt.Incarnation == p.peerInc {
		if pkt.Seq <= p.last.Seq {
			h.reject(p, ReasonReplay, fmt.Errorf("sequence %d, last accepted %d", pkt.Seq, p.last.Seq), from, arrived)
			return
		}
		p.lost += pkt.Seq - p.last.Seq - 1
	} else {
		// A new incarnation: echo it, so it can prove itself, but accept
		// it only once it echoes our newest beats. While the known
		// incarnation is up, echo only a newcomer that started later
		// by its clock: a replayed beat of an earlier incarnation must
		// not take the echo from the live one (the lease hangs on it).
		// A twin whose clock went back across a restart is echoed once
		// the path is down.
		if !p.known || !p.up || pkt.Sent > p.last.Sent.UnixNano() {
			p.echoIn = echo{Incarnation: pkt.Incarnation, Seq: pkt.Seq, Sent: pkt.Sent, Term: pkt.Beat.Term}
			p.echoArrived = arrived
		}
		if !echoOurs || pkt.Echo.Seq <= p.highestEcho {
			p.unverified++
			return
		}
		newInc = true
		p.known = true
		p.peerInc = pkt.Incarnation
	}
	p.echoIn = echo{Incarnation: pkt.Incarnation, Seq: pkt.Seq, Sent: pkt.Sent, Term: pkt.Beat.Term}
	p.echoArrived = arrived
	var echoed Echoed
	if echoOurs {
		p.highestEcho = max(p.highestEcho, pkt.Echo.Seq)
		// Our beats carry our own send times, so the echo is in our
		// clock; rebase it on arrived to keep the monotonic reading.
		// The age includes the twin's hold: what it acknowledged is
		// the beat as it was when sent.
		age := time.Duration(ourNow - pkt.Echo.Sent)
		if rtt := age - time.Duration(pkt.Echo.Hold); rtt >= 0 {
			p.rtt = rtt
		}
		p.echoedSent = arrived.Add(-age)
		echoed = Echoed{Seq: pkt.Echo.Seq, Term: pkt.Echo.Term, Sent: p.echoedSent}
	}
	rec := Received{
		Node:        pkt.Node,
		Beat:        pkt.Beat,
		Incarnation: pkt.Incarnation,
		Seq:         pkt.Seq,
		Sent:        time.Unix(0, pkt.Sent),
		Arrived:     arrived,
		From:        from,
		Echo:        echoed,
	}
	p.last = rec
	p.received++
	h.armDead(p)

	wasSilent := h.silent
	if !p.up {
		p.up, p.since = true, arrived
		h.silent = false
		h.log.Info("heartbeat path up", "path", p.cfg.Name, "peer", pkt.Node)
		h.emit(Event{Kind: PathUp, Path: p.cfg.Name, Time: arrived, Beat: rec})
	}
	if wasSilent {
		h.log.Info("twin heard", "peer", pkt.Node, "path", p.cfg.Name, "role", pkt.Beat.Role, "term", pkt.Beat.Term)
		h.emit(Event{Kind: PeerBack, Path: p.cfg.Name, Time: arrived, Beat: rec})
	}
	// Latest is the newest beat over all paths by the twin's own clock,
	// which beats keep monotonic within an incarnation. Another
	// incarnation replaces it only with a beat that proved itself on its
	// path, not with late beats of the old one on another path.
	var newer bool
	switch {
	case !h.heard:
		newer = true
	case rec.Incarnation == h.latest.Incarnation:
		newer = !rec.Sent.Before(h.latest.Sent)
	default:
		newer = newInc
	}
	if !newer {
		return
	}
	prev, heard := h.latest, h.heard
	h.heard, h.latest = true, rec
	switch {
	case !heard:
	case rec.Incarnation != prev.Incarnation:
		h.log.Info("twin restarted", "peer", pkt.Node, "path", p.cfg.Name)
		h.emit(Event{Kind: PeerRestarted, Path: p.cfg.Name, Time: arrived, Beat: rec})
		if rec.Beat != prev.Beat || rec.Node != prev.Node {
			h.emit(Event{Kind: PeerChanged, Path: p.cfg.Name, Time: arrived, Beat: rec})
		}
	case rec.Beat != prev.Beat || rec.Node != prev.Node:
		h.emit(Event{Kind: PeerChanged, Path: p.cfg.Name, Time: arrived, Beat: rec})
	}
}

// reject counts a refused datagram and raises a rate-limited alarm.
// h.mu is held.
func (h *Heartbeat) reject(p *path, reason Reason, err error, from netip.AddrPort, now time.Time) {
	p.rejected.count(reason)
	if last, ok := p.lastAlarm[reason]; ok && now.Sub(last) < alarmEvery {
		return
	}
	p.lastAlarm[reason] = now
	h.log.Warn("heartbeat rejected", "path", p.cfg.Name, "from", from, "reason", reason.String(), "err", err)
	h.emit(Event{Kind: Rejected, Path: p.cfg.Name, Time: now, Reason: reason, Err: err})
}

// armDead (re)starts p's dead timer from now. h.mu is held.
func (h *Heartbeat) armDead(p *path) {
	if p.dead == nil {
		p.dead = time.AfterFunc(h.cfg.DeadTime, func() { h.checkDead(p) })
		return
	}
	p.dead.Reset(h.cfg.DeadTime)
}

// checkDead runs when p's dead timer fires: the path goes down unless a
// beat arrived since (the timer and a new beat can race).
func (h *Heartbeat) checkDead(p *path) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || !p.up {
		return
	}
	now := h.cfg.Now()
	if quiet := now.Sub(p.last.Arrived); quiet < h.cfg.DeadTime {
		p.dead.Reset(h.cfg.DeadTime - quiet)
		return
	}
	p.up, p.since = false, now
	h.log.Warn("heartbeat path down", "path", p.cfg.Name, "last_beat", p.last.Arrived)
	h.emit(Event{Kind: PathDown, Path: p.cfg.Name, Time: now})
	for _, o := range h.paths {
		if o.up {
			return
		}
	}
	h.silent = true
	h.log.Warn("twin silent on every path")
	h.emit(Event{Kind: PeerSilent, Time: now})
}

// emit sends an event without blocking. h.mu is held.
func (h *Heartbeat) emit(e Event) {
	if h.closed {
		return
	}
	select {
	case h.events <- e:
	default:
		h.dropped++
	}
	select {
	case h.changed <- struct{}{}:
	default:
	}
}

// Peer returns a snapshot of what we know of the twin.
func (h *Heartbeat) Peer() PeerView {
	now := h.cfg.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	v := PeerView{Heard: h.heard, Latest: h.latest, Silent: h.silent, DroppedEvents: h.dropped}
	for _, p := range h.paths {
		pv := PathView{
			Name:        p.cfg.Name,
			Up:          p.up,
			Since:       p.since,
			Last:        p.last,
			RTT:         p.rtt,
			PeerHearsUs: p.up && !p.echoedSent.IsZero() && now.Sub(p.echoedSent) <= h.cfg.DeadTime,
			Received:    p.received,
			Lost:        p.lost,
			Unverified:  p.unverified,
			Rejected:    p.rejected,
		}
		v.Rejected.add(p.rejected)
		v.Paths = append(v.Paths, pv)
	}
	return v
}
