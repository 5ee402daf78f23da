package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/twinpbx/twinpbx/board"
	"github.com/twinpbx/twinpbx/firmware/boxconfig"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/control"
	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/firmware/twin"
	"github.com/twinpbx/twinpbx/pbx"
)

// nonlocalBind is the sysctl that lets the standby bind SIP and RTP to the
// VIP before it holds it.
const nonlocalBind = "/proc/sys/net/ipv4/ip_nonlocal_bind"

// boxConfig returns this box's own config when it is a twin (the config
// file given, else the one kept in boxconfig.FileName), or nil for a standalone box.
func boxConfig(dataDir, path string) (*config.Config, error) {
	boxPath := filepath.Join(dataDir, boxconfig.FileName)
	if path != "" {
		cfg, err := config.Load(path)
		if err != nil {
			return nil, err
		}
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		if cfg.Cluster == nil {
			// Standalone now: a box file from an earlier pairing no
			// longer applies.
			if err := os.Remove(boxPath); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("removing %s: %w", boxPath, err)
			}
			return nil, nil
		}
		text, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		tmp := boxPath + ".tmp"
		if err := os.WriteFile(tmp, text, 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", tmp, err)
		}
		if err := os.Rename(tmp, boxPath); err != nil {
			return nil, fmt.Errorf("installing %s: %w", boxPath, err)
		}
		return cfg, nil
	}
	cfg, err := config.Load(boxPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading this box's own config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Cluster == nil {
		return nil, nil
	}
	return cfg, nil
}

// loadBoard reads a board profile by name or from a YAML file.
func loadBoard(name string) (board.Profile, error) {
	if name == "" {
		name = board.Default
	}
	if strings.ContainsAny(name, "/.") {
		return board.Load(name)
	}
	return board.Lookup(name)
}

// settleTwinConfig stores box as the next config version unless the
// newest stored one already holds the same shared settings (it may be the
// twin's, replicated), and returns the newest stored config made this
// box's.
func settleTwinConfig(st *store.Store, box *config.Config) (*config.Config, error) {
	cur, err := latestConfig(st)
	if err != nil {
		return nil, err
	}
	if cur == nil || !twin.SameShared(cur, box) {
		if _, err := boxconfig.Save(st, box); err != nil {
			return nil, err
		}
		if cur, err = latestConfig(st); err != nil {
			return nil, err
		}
	}
	return twin.Localize(cur, box), nil
}

// latestConfig returns the newest stored config, nil when none is.
func latestConfig(st *store.Store) (*config.Config, error) {
	ver, text, err := st.LatestConfig()
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the stored config: %w", err)
	}
	cfg, err := config.Parse(fmt.Sprintf("stored config version %d", ver), text)
	if err != nil {
		return nil, err
	}
	cfg.Version = ver
	return cfg, nil
}

// setNonlocalBind lets sockets bind to the VIP before it is on an
// interface, in this network namespace.
func setNonlocalBind(log *slog.Logger) error {
	b, err := os.ReadFile(nonlocalBind)
	if err == nil && strings.TrimSpace(string(b)) == "1" {
		log.Info("net.ipv4.ip_nonlocal_bind is already 1: the PBX binds the VIP on both twins")
		return nil
	}
	if err := os.WriteFile(nonlocalBind, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("setting net.ipv4.ip_nonlocal_bind=1 (the standby binds the VIP before it holds it): %w", err)
	}
	log.Info("set net.ipv4.ip_nonlocal_bind=1: the PBX binds the VIP on both twins, so a takeover needs no new sockets")
	return nil
}

// pairBox is what every box of a twin pair has, whatever it serves (the
// PBX or the dispatcher): the twin runtime, the store whose commits wait
// for the twin, this box's own config and the config it starts with.
type pairBox struct {
	node *twin.Node
	st   *store.Store
	box  *config.Config
	cfg  *config.Config
}

// openPair sets up what a box of a pair needs before its service starts:
// the VIP bindable on both twins, the twin runtime, the store and the
// settled config.
func openPair(o Options, box *config.Config) (*pairBox, error) {
	if err := setNonlocalBind(o.Logger); err != nil {
		return nil, err
	}
	prof, err := loadBoard(o.Board)
	if err != nil {
		return nil, configErr(fmt.Errorf("board %q: %w", o.Board, err))
	}
	node, err := twin.New(twin.Config{Box: box, DataDir: o.DataDir, Board: prof, Watchdog: o.Watchdog, Logger: o.Logger})
	if err != nil {
		return nil, configErr(err)
	}
	st, err := store.Open(o.DataDir, store.Options{BeforeCommit: node.BeforeCommit})
	if err != nil {
		return nil, err
	}
	cfg, err := settleTwinConfig(st, box)
	if err != nil {
		st.Close()
		return nil, err
	}
	return &pairBox{node: node, st: st, box: box, cfg: cfg}, nil
}

// loader returns the twin's config loader: the newest stored config (it
// may have come from the twin), made this box's, handed to set too.
func (b *pairBox) loader(set func(*config.Config)) func() (*config.Config, error) {
	return func() (*config.Config, error) {
		cur, err := latestConfig(b.st)
		if err != nil {
			return nil, err
		}
		if cur == nil {
			cur = b.box
		}
		c := twin.Localize(cur, b.box)
		set(c)
		return c, nil
	}
}

// run runs the box's control socket, its service (serve, which calls
// ready once it listens) and, from then on, the twin runtime that opens
// and closes the service's gate, until ctx ends or one of them fails.
func (b *pairBox) run(ctx context.Context, o Options, ctl control.Appliance, svc twin.PBX, set func(*config.Config),
	serve func(ctx context.Context, wg *sync.WaitGroup, ready func()) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	start := func(name string, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := fn()
			if err != nil {
				err = fmt.Errorf("%s: %w", name, err)
				cancel()
			}
			errs <- err
		}()
	}
	start("control socket", func() error { return control.Serve(ctx, o.DataDir, ctl, o.Logger) })
	ready := make(chan struct{})
	start("twin pair", func() error {
		select {
		case <-ready:
		case <-ctx.Done():
			return nil
		}
		return b.node.Run(ctx, twin.RunOptions{Store: b.st, PBX: svc, LoadConfig: b.loader(set)})
	})
	err := serve(ctx, &wg, func() { close(ready) })
	cancel()
	wg.Wait()
	close(errs)
	for e := range errs {
		if e != nil && err == nil {
			err = e
		}
	}
	return err
}

// runTwin runs a box of a twin pair: its service (the PBX, or the
// dispatcher when the config has a dispatcher section) bound to the VIP
// behind the serving gate, and the twin runtime that opens the gate while
// the box is active.
func runTwin(ctx context.Context, o Options, box *config.Config) error {
	pb, err := openPair(o, box)
	if err != nil {
		return err
	}
	defer pb.st.Close()
	if pb.cfg.Dispatcher != nil {
		return runDispatcherPair(ctx, o, pb)
	}
	log, st, cfg := o.Logger, pb.st, pb.cfg
	key, err := twin.NonceKey(box.Cluster.PairingKey)
	if err != nil {
		return err
	}
	marks, err := twin.NewMarker(box)
	if err != nil {
		return configErr(err)
	}
	p, err := pbx.New(pbx.Options{Config: cfg, Store: st, AuthKey: key, Logger: log, Serving: pb.node.Serving, Forwarded: marks,
		SpanChannels: spanChannels(o.Board)})
	if err != nil {
		return err
	}
	a := &running{configured: configured{st: st, cfg: cfg}, pbx: p, log: log, twin: pb.node, box: box, isdn: &isdnSpans{dataDir: o.DataDir, side: twin.Side(box.Node.Name, box.Cluster.Peer)}}
	set := func(c *config.Config) {
		a.mu.Lock()
		a.cfg = c
		a.mu.Unlock()
	}
	return pb.run(ctx, o, pairRunning{a}, p, set, func(ctx context.Context, wg *sync.WaitGroup, ready func()) error {
		return p.Run(ctx, func(ls []pbx.Listener) {
			for _, l := range ls {
				fmt.Fprintf(o.Out, "SIP listening on %s:%s (served while this box is active)\n", l.Transport, l.Addr)
			}
			log.Info("ready", "node", cfg.Node.Name, "peer", box.Cluster.Peer, "config_version", cfg.Version, "data", o.DataDir)
			// Both twins run their span's gateway: the relay connects the
			// line to one card at a time, and the other box's gateway sees
			// its line down (and its PBX, not serving, answers nothing).
			a.isdn.start(ctx, wg, log, o.Board, cfg, ls)
			a.isdn.watchPSTN(log, cfg.PSTN, pb.node)
			// This box's own address takes requests too and passes them
			// to whichever box is active (docs/CLUSTER.md, "Both boxes
			// take requests"). The PBX on the VIP works without it, so a
			// forwarder that cannot listen is an error in the log only.
			wg.Go(func() {
				if err := pb.node.RunForwarder(ctx, cfg.SIP.Listen, marks, func(addrs []string) {
					for _, a := range addrs {
						fmt.Fprintf(o.Out, "SIP listening on %s (this box's own address, passed on to the active box)\n", a)
					}
				}); err != nil {
					log.Error("this box's own address takes no SIP", "err", err)
				}
			})
			ready()
		})
	})
}

// twinStatus is the status of a twin pair box: the PBX's and the pair's.
func (a *running) twinStatus(ver uint64) any {
	ts, _ := a.twin.Status()
	role := strings.ToLower(a.twin.Role().String())
	return struct {
		Role          string `json:"role"`
		ConfigVersion uint64 `json:"config_version"`
		DataAlarm     string `json:"data_alarm,omitempty"`
		pbx.Status
		Cluster twin.Status  `json:"cluster"`
		ISDN    []SpanStatus `json:"isdn,omitempty"`
	}{role, ver, dataAlarm(), a.pbx.Status(), ts, a.isdn.Status()}
}

// pairRunning is a running twin box: the control API also takes the
// pair's switchover and maintenance requests.
type pairRunning struct{ *running }

func (p pairRunning) Switchover(ctx context.Context) error { return p.twin.Switchover(ctx) }
func (p pairRunning) SetMaintenance(on bool) error         { return p.twin.SetMaintenance(on) }
func (p pairRunning) StartRollout(path string) error       { return p.twin.StartRollout(path) }

var (
	_ control.Pair   = pairRunning{}
	_ control.Roller = pairRunning{}
)
