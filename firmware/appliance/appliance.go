// Package appliance runs one twinpbx box: it opens the store in the data
// folder, settles which config applies, starts the PBX and the local
// control socket, and stops them in order. `twinpbx run` is a thin shell
// around Run; the offline commands (config, cdr) use the helpers here when
// no appliance is running on the data folder.
package appliance

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/twinpbx/twinpbx/firmware/boxconfig"
	"github.com/twinpbx/twinpbx/firmware/cluster"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/control"
	"github.com/twinpbx/twinpbx/firmware/site"
	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/firmware/twin"
	"github.com/twinpbx/twinpbx/hw/watchdog"
	"github.com/twinpbx/twinpbx/init/boot/request"
	"github.com/twinpbx/twinpbx/pbx"
	"github.com/twinpbx/twinpbx/pbx/b2bua"
	"github.com/twinpbx/twinpbx/pbx/cdr"
)

// Options for Run.
type Options struct {
	// ConfigPath, if set, is imported (as a new version, when it differs
	// from the stored one) before the PBX starts.
	ConfigPath string
	// DataDir holds the store, the control socket and the nonce key.
	DataDir string
	Logger  *slog.Logger
	// Out receives the few lines meant for the person who started it.
	Out io.Writer
	// Board is the board profile: a built-in name ("sim", "qemu", "apu2")
	// or a profile YAML file. Empty: "sim". A twin pair box opens all of
	// it; a standalone box uses only its ISDN spans. Spans are used only
	// when the config has isdn trunks.
	Board string
	// Watchdog, when set, is the watchdog a twin kicks instead of its
	// board's: the one its supervisor hosts (supervisor.ChildWatchdog).
	Watchdog watchdog.Watchdog
}

// Run runs the appliance until ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating the data folder %s: %w", o.DataDir, err)
	}
	box, err := boxConfig(o.DataDir, o.ConfigPath)
	if err != nil {
		return configErr(err)
	}
	if box != nil {
		return runTwin(ctx, o, box)
	}
	st, err := store.Open(o.DataDir, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()

	cfg, created, err := settleConfig(st, o.ConfigPath)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(o.Out, "First run: created a starter config (version %d) with extensions", cfg.Version)
		for _, e := range cfg.Extensions {
			fmt.Fprintf(o.Out, " %s", e.Number)
		}
		fmt.Fprintf(o.Out, " and random secrets.\nSee the credentials with: twinpbx config export --data %s\n", o.DataDir)
	}
	if cfg.Dispatcher != nil {
		return runDispatcher(ctx, o, st, cfg)
	}
	key, err := nonceKey(o.DataDir)
	if err != nil {
		return err
	}
	sitePart, err := startSite(ctx, o, cfg)
	if err != nil {
		return err
	}
	var pst pbx.Store = st
	var siteCalls b2bua.Site
	if sitePart != nil {
		defer sitePart.Close()
		pst = siteStore{st, sitePart}
		siteCalls = sitePart
	}
	p, err := pbx.New(pbx.Options{Config: cfg, Store: pst, AuthKey: key, Logger: o.Logger, Site: siteCalls,
		SpanChannels: spanChannels(o.Board)})
	if err != nil {
		return err
	}
	a := &running{configured: configured{st: st, cfg: cfg}, pbx: p, log: o.Logger, site: sitePart, isdn: &isdnSpans{}}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	ctlErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctlErr <- control.Serve(ctx, o.DataDir, a, o.Logger)
	}()
	err = p.Run(ctx, func(ls []pbx.Listener) {
		for _, l := range ls {
			fmt.Fprintf(o.Out, "SIP listening on %s:%s\n", l.Transport, l.Addr)
		}
		o.Logger.Info("ready", "node", cfg.Node.Name, "config_version", cfg.Version, "data", o.DataDir)
		a.isdn.start(ctx, &wg, o.Logger, o.Board, cfg, ls)
	})
	cancel()
	wg.Wait()
	if cerr := <-ctlErr; cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// settleConfig picks the config to run: the file given (stored as a new
// version when it differs), else the newest stored one, else a starter
// config with random secrets.
func settleConfig(st *store.Store, path string) (cfg *config.Config, created bool, err error) {
	if path != "" {
		cfg, err := config.Load(path)
		if err != nil {
			return nil, false, configErr(err)
		}
		if err := cfg.Validate(); err != nil {
			return nil, false, configErr(err)
		}
		cfg, err = boxconfig.Save(st, cfg)
		return cfg, false, err
	}
	ver, text, err := st.LatestConfig()
	switch {
	case err == nil:
		cfg, err := config.Parse(fmt.Sprintf("stored config version %d", ver), text)
		if err != nil {
			return nil, false, err
		}
		cfg.Version = ver
		return cfg, false, cfg.Validate()
	case errors.Is(err, store.ErrNotFound):
		cfg, err := boxconfig.Save(st, config.Starter(rand.Reader))
		return cfg, true, err
	default:
		return nil, false, fmt.Errorf("reading the stored config: %w", err)
	}
}

// nonceKey returns the box's digest nonce key, creating it on first use.
func nonceKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, "nonce.key")
	b, err := os.ReadFile(path)
	if err == nil && len(b) == 32 {
		return b, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	b = make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("creating the nonce key: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return nil, fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("installing %s: %w", path, err)
	}
	return b, nil
}

// running implements control.Appliance for a running box.
type running struct {
	configured
	pbx *pbx.PBX
	log *slog.Logger
	// twin is the box's part in a pair; nil when standalone. box is then
	// the box's own config (node name, cluster section).
	twin *twin.Node
	box  *config.Config
	// site is the box's part in a site cluster; nil when it has none.
	site *site.Site
	// isdn runs the gateways of the board's ISDN spans.
	isdn *isdnSpans
}

// configured is what every kind of running box has: its store and the
// config it runs with (guarded by mu), with the control API's exports.
type configured struct {
	st  *store.Store
	mu  sync.Mutex
	cfg *config.Config
}

func (c *configured) ExportCDRs(w io.Writer, from, to time.Time) error {
	return ExportCDRs(c.st, w, from, to)
}

func (c *configured) ExportConfig() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return config.Marshal(c.cfg)
}

// Status reports the PBX's state with the config version.
func (a *running) Status() any {
	a.mu.Lock()
	ver := a.cfg.Version
	a.mu.Unlock()
	if a.twin != nil {
		return a.twinStatus(ver)
	}
	if a.site != nil {
		// A site box is a standalone PBX with the site's view beside it.
		return struct {
			Role          string `json:"role"`
			ConfigVersion uint64 `json:"config_version"`
			DataAlarm     string `json:"data_alarm,omitempty"`
			pbx.Status
			Site site.Status  `json:"site"`
			ISDN []SpanStatus `json:"isdn,omitempty"`
		}{"standalone", ver, dataAlarm(), a.pbx.Status(), a.site.Status(), a.isdn.Status()}
	}
	return struct {
		Role          string `json:"role"`
		ConfigVersion uint64 `json:"config_version"`
		DataAlarm     string `json:"data_alarm,omitempty"`
		pbx.Status
		ISDN []SpanStatus `json:"isdn,omitempty"`
	}{"standalone", ver, dataAlarm(), a.pbx.Status(), a.isdn.Status()}
}

// dataAlarmFile is where init leaves its alarm about the data partition.
var dataAlarmFile = request.DataAlarmFile

// dataAlarm is the alarm init raised at boot about the data partition
// (damaged and left untouched, missing, not checked...; the data folder
// may then be a tmpfs), "" when there is none or the box did not boot
// through the image's init.
func dataAlarm() string {
	b, err := os.ReadFile(dataAlarmFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (a *running) ImportConfig(text []byte) (uint64, bool, error) {
	cfg, err := boxconfig.Parse("imported config", text)
	if err != nil {
		return 0, false, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.twin != nil {
		if r := a.twin.Role(); r != cluster.Active {
			return 0, false, fmt.Errorf("this box is %s: import the config on the active box, it reaches this one by replication", r)
		}
	}
	cfg, err = boxconfig.Save(a.st, cfg)
	if err != nil {
		return 0, false, err
	}
	if a.twin != nil {
		cfg = twin.Localize(cfg, a.box)
	}
	a.cfg = cfg
	restart := a.pbx.SetConfig(cfg)
	a.log.Info("config applied", "version", cfg.Version, "restart_needed", restart)
	return cfg.Version, restart, nil
}

// ExportCDRs writes the stored CDRs between from and to as CSV.
func ExportCDRs(st *store.Store, w io.Writer, from, to time.Time) error {
	if to.IsZero() {
		to = time.Now().Add(24 * time.Hour)
	}
	recs, err := st.CDRs(from, to)
	if err != nil {
		return fmt.Errorf("reading CDRs: %w", err)
	}
	return cdr.WriteCSV(w, recs)
}
