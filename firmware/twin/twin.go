// Package twin runs one box of a twin pair: it wires the cluster role
// manager (firmware/cluster) to the real resources (heartbeats on the
// crossover and the LAN, the VIP, the PSTN relay of the board, store
// replication, the PBX's serving gate, the SIP and ARP probes, the term
// in the store, the watchdog fence and the resource monitors), as
// docs/CLUSTER.md describes. The appliance creates a Node before it opens
// the store (the store hands every commit to Node.BeforeCommit), gives
// the PBX Node.Serving as its gate, and runs Node.Run beside the PBX.
//
// The PSTN relay's side A is the box with the lexically lower node name.
package twin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinpbx/twinpbx/board"
	"github.com/twinpbx/twinpbx/firmware/cluster"
	"github.com/twinpbx/twinpbx/firmware/cluster/heartbeat"
	"github.com/twinpbx/twinpbx/firmware/cluster/pairing"
	"github.com/twinpbx/twinpbx/firmware/cluster/vip"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/replication"
	"github.com/twinpbx/twinpbx/firmware/rollout"
	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/hw/relay"
	"github.com/twinpbx/twinpbx/hw/watchdog"
)

// Config describes one box of the pair.
type Config struct {
	// Box is this box's own config: its node name and its cluster section
	// (which must be set). Defaults are applied by New.
	Box *config.Config
	// DataDir is the box's data folder (the simulated board keeps its
	// watchdog record and relay state there).
	DataDir string
	// Board is the board profile whose watchdog and relay are used. On
	// the simulated board the watchdog's timeout is the cluster's
	// watchdog_timeout.
	Board board.Profile
	// Watchdog, when set, is used instead of the board's (the one a
	// supervisor hosts).
	Watchdog watchdog.Watchdog
	// OnWatchdogReset is what the simulated watchdog does when it fires;
	// nil: log and exit with watchdog.ExitCodeReset.
	OnWatchdogReset func()
	Logger          *slog.Logger
	// Updates is this box's firmware for rolling updates (nil: the
	// box's own disk and the image's update key, firmware/rollout).
	Updates rollout.Box
}

// Node is one box of the pair. Serving and BeforeCommit may be called at
// any time; Status, Switchover and SetMaintenance once Run has started.
type Node struct {
	cfg    Config
	box    *config.Config
	cl     config.Cluster
	vip    netip.Prefix
	keys   *pairing.Keys
	sender *replication.Sender
	log    *slog.Logger

	serving atomic.Bool
	mgr     atomic.Pointer[cluster.Manager]
	rep     atomic.Pointer[replica]
	ready   chan struct{}
	once    sync.Once

	hb       atomic.Pointer[heartbeat.Heartbeat]
	wrongKey keyAlarm
	roll     rollParts
	// wd is the watchdog in use and its fence, once Run has opened them.
	wd atomic.Pointer[watchdogInUse]
	// relay is the board's PSTN relay and this box's side, once Run has
	// opened the board.
	relay atomic.Pointer[relayInUse]
	// fwd is the forwarder on this box's own address, while it runs.
	fwd atomic.Pointer[forwarder]
	// extra are the caller's monitors (AddMonitor).
	monMu    sync.Mutex
	extra    []cluster.Monitor
	monTaken bool
}

type relayInUse struct {
	r    cluster.Relay
	side relay.Side
}

type watchdogInUse struct {
	wd    watchdog.Watchdog
	fence *watchdog.Fence
}

// WatchdogStatus is the hardware watchdog as the box uses it.
type WatchdogStatus struct {
	// Device names it ("none": the board has none, so a hung box is not
	// reset; its lease still stops it serving).
	Device  string        `json:"device"`
	Timeout time.Duration `json:"timeout,omitempty"`
	// Fenced: the fence stopped kicking (unhealthy, or a deliberate
	// fence); the watchdog resets the box when Timeout runs out.
	Fenced bool `json:"fenced"`
}

// AlarmWrongKey is raised while beats sealed with another pairing key
// arrive: the twin (or something posing as it) was set up with another key.
const AlarmWrongKey = "twin with a wrong pairing key"

// wrongKeyHold is how long the alarm stays after the last such beat.
const wrongKeyHold = 10 * time.Second

// keyAlarm turns the heartbeat's count of beats refused for their key
// into the alarm AlarmWrongKey.
type keyAlarm struct {
	mu          sync.Mutex
	count       uint64
	since, last time.Time
}

// observe takes the current count and returns whether the alarm is up,
// and since when.
func (k *keyAlarm) observe(count uint64, now time.Time) (bool, time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if count > k.count {
		if k.last.IsZero() || now.Sub(k.last) > wrongKeyHold {
			k.since = now
		}
		k.count, k.last = count, now
	}
	if k.last.IsZero() || now.Sub(k.last) > wrongKeyHold {
		return false, time.Time{}
	}
	return true, k.since
}

// ErrNotRunning is returned by the control calls before Run has started
// the role manager.
var ErrNotRunning = errors.New("the twin pair is not running yet")

// New checks the box's cluster settings and derives the pair's keys.
func New(c Config) (*Node, error) {
	if c.Box == nil || c.Box.Cluster == nil {
		return nil, errors.New("twin: the config has no cluster section")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	box := c.Box.WithDefaults()
	cl := *box.Cluster
	keys, err := pairing.Derive(cl.PairingKey)
	if err != nil {
		return nil, fmt.Errorf("twin: deriving the pairing keys: %w", err)
	}
	prefix, err := netip.ParsePrefix(cl.VIP)
	if err != nil {
		return nil, fmt.Errorf("twin: cluster.vip %q: %w", cl.VIP, err)
	}
	log := c.Logger.With("component", "twin")
	n := &Node{cfg: c, box: box, cl: cl, vip: prefix, keys: keys, log: log, ready: make(chan struct{})}
	n.sender = replication.NewSender(replication.SenderConfig{
		Node:    box.Node.Name,
		Peer:    cl.Peer,
		TLS:     keys.TLSConfig(true),
		OnEvent: n.replicationEvent,
		Logger:  log.With("part", "replication"),
	})
	n.initRollout(c)
	return n, nil
}

// BeforeCommit is store.Options.BeforeCommit for the box's store: while
// this box is active and its twin in sync, a write waits for the twin.
func (n *Node) BeforeCommit(changes []store.Change) error { return n.sender.BeforeCommit(changes) }

// Serving is the PBX's gate: true while this box is active, has started
// serving and holds a valid lease.
func (n *Node) Serving() bool {
	if !n.serving.Load() {
		return false
	}
	m := n.mgr.Load()
	return m != nil && m.LeaseValid()
}

// Status is the pair as this box sees it.
type Status struct {
	cluster.Status
	Replication ReplicationStatus `json:"replication"`
	// Serving: the PBX answers on the VIP now.
	Serving bool `json:"serving"`
	// Fingerprint of the pairing key (equal on both boxes when paired).
	Fingerprint string         `json:"pairing_fingerprint"`
	Watchdog    WatchdogStatus `json:"watchdog"`
	// Firmware is the running firmware version; Rollout the current or
	// last rolling update (firmware/rollout).
	Firmware string          `json:"firmware,omitempty"`
	Rollout  *rollout.Status `json:"rollout,omitempty"`
	// Forwarder is this box's own address, which passes requests to the
	// active box (absent while it does not run).
	Forwarder *ForwarderStatus `json:"forwarder,omitempty"`
}

// Status returns the pair's status, or false before Run started.
func (n *Node) Status() (Status, bool) {
	m := n.mgr.Load()
	if m == nil {
		return Status{}, false
	}
	s := Status{Status: m.Status(), Serving: n.Serving(), Fingerprint: n.keys.Fingerprint(), Watchdog: WatchdogStatus{Device: "none"}}
	if w := n.wd.Load(); w != nil && w.wd != nil {
		s.Watchdog = WatchdogStatus{Device: w.wd.Identity(), Timeout: w.wd.Timeout(), Fenced: w.fence != nil && w.fence.Fenced()}
	}
	if r := n.rep.Load(); r != nil {
		s.Replication = r.status()
	}
	if hb := n.hb.Load(); hb != nil {
		if up, since := n.wrongKey.observe(hb.Peer().Rejected.WrongKey, time.Now()); up {
			s.Alarms = append(s.Alarms, cluster.Alarm{Text: AlarmWrongKey, Since: since})
		}
	}
	n.rolloutStatus(&s)
	if f := n.fwd.Load(); f != nil {
		s.Forwarder = f.status()
	}
	return s, true
}

// Role is the box's role, Boot before Run.
func (n *Node) Role() cluster.Role {
	if m := n.mgr.Load(); m != nil {
		return m.Role()
	}
	return cluster.Boot
}

// Switchover hands service to the twin (see cluster.Manager.Switchover).
func (n *Node) Switchover(ctx context.Context) error {
	m := n.mgr.Load()
	if m == nil {
		return ErrNotRunning
	}
	return m.Switchover(ctx)
}

// SetMaintenance turns maintenance on or off. It is kept in the data
// folder (MaintenanceFile) before the manager is told, so it holds across
// a restart of the node process or of the box.
func (n *Node) SetMaintenance(on bool) error {
	m := n.mgr.Load()
	if m == nil {
		return ErrNotRunning
	}
	if err := saveMaintenance(n.cfg.DataDir, on); err != nil {
		return err
	}
	m.SetMaintenance(on)
	return nil
}

// ActiveSince is when this box last became active; zero while it is not
// active or before Run.
func (n *Node) ActiveSince() time.Time {
	if m := n.mgr.Load(); m != nil {
		return m.ActiveSince()
	}
	return time.Time{}
}

// SelectRelay connects the PSTN line to this box again if the relay has
// left its side (a restart in place of the PSTN monitor; the manager
// selects it at each takeover). It reads the position first and switches
// only when it differs: the call comes from the decision loop, and a
// switch may wait for the disk (the simulated relay syncs its file). Only
// the active box may call it: the relay is the active's.
func (n *Node) SelectRelay(ctx context.Context) error {
	r := n.relay.Load()
	if r == nil || n.Role() != cluster.Active {
		return errors.New("twin: selecting the relay: this box is not active")
	}
	if side, _, err := r.r.Position(ctx); err == nil && side == r.side {
		return nil
	}
	n.log.Warn("the PSTN relay is not on this box's side: selecting it again", "side", r.side.String())
	if err := r.r.Select(ctx, r.side); err != nil {
		return fmt.Errorf("twin: selecting relay side %v: %w", r.side, err)
	}
	return nil
}

// Ready is closed once the role manager runs.
func (n *Node) Ready() <-chan struct{} { return n.ready }

func (n *Node) replicationEvent(e replication.Event) {
	args := []any{"event", e.Kind.String(), "peer", e.Peer, "seq", e.Seq}
	if e.Err != nil {
		args = append(args, "err", e.Err)
	}
	switch e.Kind {
	case replication.Refused, replication.Disconnected, replication.OutOfSync:
		n.log.Warn("replication", args...)
	default:
		n.log.Info("replication", args...)
	}
}

// RunOptions are what Run drives besides the box's own devices.
type RunOptions struct {
	// Store is the box's store, opened with BeforeCommit.
	Store *store.Store
	// PBX is started and stopped through its serving gate (Serving).
	PBX PBX
	// LoadConfig returns the config to serve with at takeover: the newest
	// stored one (replicated from the twin), made this box's (Localize).
	LoadConfig func() (*config.Config, error)
}

// AddMonitor adds a resource check that the role manager runs beside the
// twin's own (lan-carrier, store, vip, pbx): the PSTN layer-1 monitor of
// the ISDN spans, which start once the PBX listens. Call it before Run.
func (n *Node) AddMonitor(m cluster.Monitor) error {
	n.monMu.Lock()
	defer n.monMu.Unlock()
	if n.monTaken {
		return fmt.Errorf("twin: monitor %s added after the pair started", m.Name)
	}
	n.extra = append(n.extra, m)
	return nil
}

// monitors are the monitors added with AddMonitor; none can be added
// once Run has taken them.
func (n *Node) monitors() []cluster.Monitor {
	n.monMu.Lock()
	defer n.monMu.Unlock()
	n.monTaken = true
	return slices.Clone(n.extra)
}

// Run runs the box in the pair until ctx ends: heartbeats, replication,
// the role manager and the watchdog fence. When ctx ends it stops
// serving, drops the VIP, says goodbye to the twin and disarms the
// watchdog.
func (n *Node) Run(ctx context.Context, o RunOptions) error {
	if o.Store == nil || o.PBX == nil || o.LoadConfig == nil {
		return errors.New("twin: Run needs the store, the PBX and a config loader")
	}
	node, cl := n.box.Node.Name, n.cl
	log := n.log

	addr := func(field, s string) (netip.Addr, error) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("twin: %s %q: %w", field, s, err)
		}
		return a, nil
	}
	xl, err1 := addr("cluster.crossover.local", cl.Crossover.Local)
	xp, err2 := addr("cluster.crossover.peer", cl.Crossover.Peer)
	ll, err3 := addr("cluster.lan.local", cl.LAN.Local)
	lp, err4 := addr("cluster.lan.peer", cl.LAN.Peer)
	gw, err5 := addr("cluster.gateway", cl.Gateway)
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return err
	}
	port := uint16(cl.Port)

	// The board: watchdog and relay.
	prof := n.cfg.Board
	if prof.Name == "" {
		prof = board.Sim()
	}
	if prof.Watchdog.Device == board.WatchdogSim || n.cfg.Watchdog != nil {
		prof.Watchdog.Timeout = cl.WatchdogTimeout.D()
	}
	if n.cfg.Watchdog != nil {
		// The supervisor hosts the watchdog. A profile needs one, so the
		// board opens a simulated one, disarmed below before it can fire.
		prof.Watchdog = board.Watchdog{Device: board.WatchdogSim, Timeout: cl.WatchdogTimeout.D()}
	}
	devs, err := board.Open(ctx, prof, n.cfg.DataDir, board.Options{OnWatchdogReset: n.cfg.OnWatchdogReset, Logger: log})
	if devs == nil {
		return fmt.Errorf("twin: opening the board %q: %w", prof.Name, err)
	}
	if err != nil {
		log.Error("board opened degraded", "board", prof.Name, "err", err)
	}
	defer devs.Close()
	wd := n.cfg.Watchdog
	if wd == nil {
		wd = devs.Watchdog
	} else if devs.Watchdog != nil {
		if err := devs.Watchdog.Close(); err != nil {
			log.Warn("disarming the board's simulated watchdog (the supervisor hosts it)", "err", err)
		}
		devs.Watchdog = nil
	}
	var rel cluster.Relay = &noRelay{}
	if devs.Relay != nil {
		rel = devs.Relay
	} else {
		log.Warn("no PSTN relay on this board: the line is not switched")
	}
	side := relaySide(node, cl.Peer)
	n.relay.Store(&relayInUse{r: rel, side: side})
	defer n.relay.Store(nil)

	hbLog := log.With("part", "heartbeat")
	hb, err := heartbeat.New(heartbeat.Config{
		Node: node, Peer: cl.Peer, Key: n.keys.Heartbeat,
		Paths: []heartbeat.Path{
			{Name: pathNames[cluster.Crossover], Local: netip.AddrPortFrom(xl, port), Peer: netip.AddrPortFrom(xp, port)},
			{Name: pathNames[cluster.LAN], Local: netip.AddrPortFrom(ll, port), Peer: netip.AddrPortFrom(lp, port)},
		},
		Interval: cl.Interval.D(), DeadTime: cl.DeadTime.D(),
		Logger: hbLog,
	})
	if err != nil {
		return fmt.Errorf("twin: starting the heartbeats: %w", err)
	}
	n.hb.Store(hb)
	hbCtx, hbStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hbStop()
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		_ = hb.Run(hbCtx)
	}()
	defer func() { hbStop(); <-hbDone }()

	// runCtx outlives ctx a little: the manager's shutdown releases the
	// VIP after ctx ended.
	runCtx, runStop := context.WithCancel(context.WithoutCancel(ctx))
	defer runStop()

	v, err := vip.New(vip.Config{
		Interface: cl.LANInterface, Addr: n.vip,
		GARPCount: cl.GARPCount, GARPInterval: cl.GARPInterval.D(), GARPRefresh: cl.GARPRefresh.D(),
		Logger: log.With("part", "vip"),
	})
	if err != nil {
		return fmt.Errorf("twin: %w", err)
	}

	rep := &replica{
		ctx: runCtx, st: o.Store, sender: n.sender, node: node,
		listen:    []netip.AddrPort{netip.AddrPortFrom(xl, port), netip.AddrPortFrom(ll, port)},
		dial:      []netip.AddrPort{netip.AddrPortFrom(xp, port), netip.AddrPortFrom(lp, port)},
		clientTLS: n.keys.TLSConfig(false),
		log:       log.With("part", "replication"),
		onEvent:   n.replicationEvent,
	}
	n.rep.Store(rep)
	n.startRollout(runCtx, rep)
	defer rep.close()

	target := sipTarget(n.box, n.vip.Addr())
	prb := &probe{
		sip: sipProber{from: ll, target: target}, peer: cl.Peer,
		iface: cl.LANInterface, gateway: gw, arpWait: 100 * time.Millisecond,
		span: cluster.ProbeSpanFor(cl.Interval.D()),
		log:  log.With("part", "probe"),
	}
	defer prb.close()
	svc := &service{
		pbx: o.PBX, serving: &n.serving, load: o.LoadConfig,
		probe: sipProber{from: ll, target: target}, self: node, log: log.With("part", "service"),
	}

	fref := &fenceRef{}
	mcfg := cluster.FromConfig(node, side, cl)
	mcfg.Logger = log.With("part", "manager")
	mgr, err := cluster.New(mcfg, cluster.Resources{
		Heartbeat: beats{hb},
		VIP:       vipAdapter{v: v, ctx: runCtx},
		Relay:     rel,
		Replica:   rep,
		Service:   svc,
		Probe:     prb,
		Terms:     terms{o.Store},
		Latches:   latches(n.cfg.DataDir),
		Fence:     fref,
		Monitors: append([]cluster.Monitor{
			{Name: "lan-carrier", Check: carrierCheck(cl.LANInterface)},
			{Name: "store", Check: storeCheck(o.Store), Every: time.Second},
			{Name: "vip", Check: vipCheck(v), ActiveOnly: true, Every: time.Second,
				Restart: func(ctx context.Context) error { return v.Acquire(runCtx) }},
			{Name: "pbx", Check: svc.Healthy, ActiveOnly: true, Every: time.Second,
				// Nothing to restart in place but the gate; repeated
				// failures move service to the twin.
				Restart: func(context.Context) error { return nil }},
		}, n.monitors()...),
	})
	if err != nil {
		return fmt.Errorf("twin: %w", err)
	}
	var fence *watchdog.Fence
	if wd != nil {
		fence = watchdog.NewFence(wd, mgr.Healthy, watchdog.FenceConfig{Logger: log.With("part", "fence")})
		fref.f.Store(fence)
	} else {
		log.Error("no watchdog: a hung box is not reset; its lease still stops it serving")
	}
	n.wd.Store(&watchdogInUse{wd: wd, fence: fence})
	// Maintenance asked for before a restart holds: set before the first
	// tick, so the box never becomes active on the way.
	switch maint, err := loadMaintenance(n.cfg.DataDir); {
	case err != nil:
		return fmt.Errorf("twin: %w", err)
	case maint:
		log.Warn("in maintenance since before this start: this box does not become active until `twinpbx maintenance off`")
		mgr.SetMaintenance(true)
	}
	n.mgr.Store(mgr)
	n.once.Do(func() { close(n.ready) })

	log.Info("twin pair starting", "node", node, "peer", cl.Peer, "relay_side", side.String(),
		"vip", n.vip, "crossover", cl.Crossover.Local, "lan", cl.LAN.Local, "timing", cl.Timing,
		"dead_time", cl.DeadTime.D(), "watchdog", watchdogName(wd), "pairing", n.keys.Fingerprint())

	var wg sync.WaitGroup
	fenceCtx, fenceStop := context.WithCancel(runCtx)
	if fence != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fence.Run(fenceCtx); err != nil {
				log.Error("watchdog fence stopped", "err", err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		svc.watch(fenceCtx, 2*time.Second)
	}()
	err = mgr.Run(ctx)
	fenceStop()
	wg.Wait()
	if wd != nil {
		// A deliberate shutdown: disarm.
		if cerr := wd.Close(); cerr != nil {
			log.Warn("disarming the watchdog", "err", cerr)
		}
	}
	return err
}

// fenceRef lets the manager reach the fence, which is created after it
// (the fence asks the manager whether the box is healthy).
type fenceRef struct {
	f atomic.Pointer[watchdog.Fence]
}

func (r *fenceRef) FenceNow(reason string) {
	if f := r.f.Load(); f != nil {
		f.FenceNow(reason)
	}
}

func watchdogName(wd watchdog.Watchdog) string {
	if wd == nil {
		return "none"
	}
	return wd.Identity()
}

// Side is the PSTN relay side of node in a pair with peer.
func Side(node, peer string) relay.Side { return relaySide(node, peer) }
