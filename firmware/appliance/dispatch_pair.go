package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinpbx/twinpbx/firmware/boxconfig"
	"github.com/twinpbx/twinpbx/firmware/cluster"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/control"
	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/firmware/twin"
	"github.com/twinpbx/twinpbx/pbx/dispatch"
)

// runDispatcherPair runs a dispatcher box of a twin pair: the dispatcher
// bound to the VIP behind the twin's serving gate, probing the backends
// from this box's own LAN address on both twins (so a standby's view of
// them is current when it takes over), and the twin runtime. The
// dispatcher keeps no call state: what the twins share is the config.
func runDispatcherPair(ctx context.Context, o Options, pb *pairBox) error {
	r := &dispatchRunner{
		log:       o.Logger.With("component", "dispatcher"),
		gate:      pb.node.Serving,
		probeFrom: pb.box.Cluster.LAN.Local,
		server:    "twinpbx/" + pb.box.Node.Name,
	}
	if err := r.prepare(pb.cfg); err != nil {
		return configErr(fmt.Errorf("starting the dispatcher: %w", err))
	}
	a := &dispatchPair{configured: configured{st: pb.st, cfg: pb.cfg}, r: r, node: pb.node, box: pb.box}
	set := func(c *config.Config) {
		a.mu.Lock()
		a.cfg = c
		a.mu.Unlock()
	}
	load := pb.loader(set)
	return pb.run(ctx, o, a, r, set, func(ctx context.Context, wg *sync.WaitGroup, ready func()) error {
		wg.Go(func() { r.follow(ctx, pb.st, load, time.Second) })
		var once sync.Once
		return r.run(ctx, func(addrs []string) {
			once.Do(func() {
				for _, ad := range addrs {
					fmt.Fprintf(o.Out, "SIP dispatcher listening on %s (served while this box is active)\n", listenerName(ad))
				}
				o.Logger.Info("ready", "node", pb.box.Node.Name, "role", "dispatcher", "peer", pb.box.Cluster.Peer,
					"config_version", pb.cfg.Version, "data", o.DataDir)
				ready()
			})
		})
	})
}

// dispatchRunner runs a dispatcher behind a serving gate and replaces it
// with a new one when a config with other dispatcher settings is applied
// (Reload, the twin runtime's way to apply the replicated config at a
// takeover). A replacement costs the pending-request table and the
// backends' health, both of which rebuild within seconds; the dispatcher
// keeps no call state.
type dispatchRunner struct {
	log       *slog.Logger
	gate      func() bool
	probeFrom string
	server    string

	// reload makes one Reload at a time (the takeover's and follow's).
	reload sync.Mutex
	// version is the config version last applied.
	version atomic.Uint64

	mu   sync.Mutex
	cur  *dispatch.Dispatcher
	set  dispatchSettings // what cur was made from
	next *dispatch.Dispatcher
	stop context.CancelFunc
	// started gets the replacement's result: nil once it listens.
	started chan error
}

var _ twin.PBX = (*dispatchRunner)(nil)

// dispatchSettings are the parts of a config the dispatcher is made
// from: a config that changes none of them applies without replacing it.
type dispatchSettings struct {
	Dispatcher config.Dispatcher
	Listen     []string
	Advertise  string
}

func settingsOf(cfg *config.Config) dispatchSettings {
	return dispatchSettings{Dispatcher: *cfg.Dispatcher, Listen: cfg.SIP.Listen, Advertise: cfg.SIP.Advertise}
}

// build returns the dispatcher settings of cfg for this box.
func (r *dispatchRunner) build(cfg *config.Config) (dispatch.Config, error) {
	dc, err := dispatchConfig(cfg, nil)
	if err != nil {
		return dispatch.Config{}, err
	}
	if r.probeFrom != "" {
		a, err := netip.ParseAddr(r.probeFrom)
		if err != nil {
			return dispatch.Config{}, fmt.Errorf("the probes' address %q: %w", r.probeFrom, err)
		}
		dc.ProbeFrom = a
	}
	dc.Server = r.server
	return dc, nil
}

// newDispatcher creates the dispatcher of dc with the runner's gate and
// logger.
func (r *dispatchRunner) newDispatcher(dc dispatch.Config) (*dispatch.Dispatcher, error) {
	dc.Serving, dc.Logger = r.gate, r.log
	return dispatch.New(dc)
}

// prepare creates the first dispatcher, before run.
func (r *dispatchRunner) prepare(cfg *config.Config) error {
	dc, err := r.build(cfg)
	if err != nil {
		return err
	}
	d, err := r.newDispatcher(dc)
	if err != nil {
		return err
	}
	r.cur, r.set = d, settingsOf(cfg)
	r.version.Store(cfg.Version)
	return nil
}

// run runs the current dispatcher, and each replacement in its turn,
// until ctx ends or one fails. ready gets each one's addresses once it
// listens.
func (r *dispatchRunner) run(ctx context.Context, ready func(addrs []string)) error {
	for {
		r.mu.Lock()
		var started chan error
		if r.next != nil {
			r.cur, r.next = r.next, nil
			started, r.started = r.started, nil
		}
		d := r.cur
		dctx, stop := context.WithCancel(ctx)
		r.stop = stop
		r.mu.Unlock()
		err := d.Run(dctx, func(addrs []string) {
			report(started, nil)
			ready(addrs)
		})
		stop()
		if ctx.Err() != nil {
			return nil
		}
		r.mu.Lock()
		swap := r.next != nil
		r.mu.Unlock()
		if err != nil {
			report(started, err)
			return err
		}
		if !swap {
			return errors.New("the dispatcher stopped")
		}
	}
}

// report hands a replacement's start result to the Reload waiting for it,
// if any (its channel has room for one).
func report(c chan error, err error) {
	if c == nil {
		return
	}
	select {
	case c <- err:
	default:
	}
}

// Reload applies cfg's dispatcher settings: nothing happens when they are
// the running ones; otherwise the dispatcher is replaced, and Reload
// returns once the new one listens.
func (r *dispatchRunner) Reload(cfg *config.Config) error {
	if cfg == nil {
		return nil
	}
	if cfg.Dispatcher == nil {
		return errors.New("applying the config: it has no dispatcher section, and this box runs as a dispatcher")
	}
	r.reload.Lock()
	defer r.reload.Unlock()
	set := settingsOf(cfg)
	r.mu.Lock()
	same := reflect.DeepEqual(set, r.set)
	r.mu.Unlock()
	if same {
		r.version.Store(cfg.Version)
		return nil
	}
	dc, err := r.build(cfg)
	if err != nil {
		return fmt.Errorf("applying the dispatcher settings: %w", err)
	}
	d, err := r.newDispatcher(dc)
	if err != nil {
		return fmt.Errorf("applying the dispatcher settings: %w", err)
	}
	r.mu.Lock()
	started := make(chan error, 1)
	r.next, r.set, r.started = d, set, started
	stop := r.stop
	r.mu.Unlock()
	if stop != nil {
		stop()
	}
	select {
	case err := <-started:
		if err != nil {
			return fmt.Errorf("starting the dispatcher with the new settings: %w", err)
		}
	case <-time.After(10 * time.Second):
		return errors.New("the dispatcher with the new settings did not start within 10s")
	}
	r.version.Store(cfg.Version)
	r.log.Info("dispatcher settings applied", "config_version", cfg.Version)
	return nil
}

// follow applies each new config version that reaches the store, every
// period until ctx ends: on the standby these come by replication from
// the active, so the standby probes the backends the active serves with
// long before it takes over. (The active applies an import at once; the
// version is then the applied one already.)
func (r *dispatchRunner) follow(ctx context.Context, st *store.Store, load func() (*config.Config, error), period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ver, _, err := st.LatestConfig()
		if err != nil || ver == r.version.Load() {
			continue
		}
		cfg, err := load()
		if err == nil {
			err = r.Reload(cfg)
		}
		if err != nil {
			r.log.Warn("applying the newest stored config", "version", ver, "err", err)
			// Not again until another version arrives.
			r.version.Store(ver)
		}
	}
}

// Status is the running dispatcher's.
func (r *dispatchRunner) Status() dispatch.Status {
	r.mu.Lock()
	d := r.cur
	r.mu.Unlock()
	return d.Status()
}

// dispatchPair implements control.Appliance and control.Pair for a
// dispatcher box of a twin pair.
type dispatchPair struct {
	configured
	r    *dispatchRunner
	node *twin.Node
	box  *config.Config
}

var (
	_ control.Appliance = (*dispatchPair)(nil)
	_ control.Pair      = (*dispatchPair)(nil)
)

// dispatchPairStatus is `twinpbx status` of a dispatcher pair box: the
// role in the pair (as a PBX pair box reports it), the dispatcher's
// backends and the pair.
type dispatchPairStatus struct {
	Role          string          `json:"role"`
	Service       string          `json:"service"`
	Node          string          `json:"node"`
	ConfigVersion uint64          `json:"config_version"`
	Listeners     []listener      `json:"listeners"`
	Dispatcher    dispatch.Status `json:"dispatcher"`
	Cluster       twin.Status     `json:"cluster"`
}

// listener is one bound address, as the PBX's status lists them.
type listener struct {
	Transport string `json:"transport"`
	Addr      string `json:"addr"`
}

func (a *dispatchPair) Status() any {
	a.mu.Lock()
	cfg := a.cfg
	a.mu.Unlock()
	ts, _ := a.node.Status()
	st := dispatchPairStatus{
		Role: strings.ToLower(a.node.Role().String()), Service: "dispatcher", Node: cfg.Node.Name,
		ConfigVersion: cfg.Version, Dispatcher: a.r.Status(), Cluster: ts,
	}
	for _, e := range cfg.SIP.Listen {
		if l, err := config.ParseListen(e); err == nil {
			st.Listeners = append(st.Listeners, listener{l.Transport, l.Addr()})
		}
	}
	return st
}

// ImportConfig stores a new config on the active box, which replicates
// it to the twin, and applies it at once; the standby refuses.
func (a *dispatchPair) ImportConfig(text []byte) (uint64, bool, error) {
	cfg, err := boxconfig.Parse("imported config", text)
	if err != nil {
		return 0, false, err
	}
	if cfg.Dispatcher == nil {
		return 0, false, errors.New("this box is a dispatcher: a config without a dispatcher section does not apply to it")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if r := a.node.Role(); r != cluster.Active {
		return 0, false, fmt.Errorf("this box is %s: import the config on the active box, it reaches this one by replication", r)
	}
	cfg, err = boxconfig.Save(a.st, cfg)
	if err != nil {
		return 0, false, err
	}
	cfg = twin.Localize(cfg, a.box)
	a.cfg = cfg
	if err := a.r.Reload(cfg); err != nil {
		return cfg.Version, true, err
	}
	return cfg.Version, false, nil
}

func (a *dispatchPair) Switchover(ctx context.Context) error { return a.node.Switchover(ctx) }
func (a *dispatchPair) SetMaintenance(on bool) error         { return a.node.SetMaintenance(on) }
