// Command twinpbx is the one binary of the appliance: the PBX itself
// (`twinpbx run`) and the commands an administrator uses on the box.
// Every subcommand is documented in the README and in `twinpbx help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/twinpbx/twinpbx/firmware/appliance"
	"github.com/twinpbx/twinpbx/firmware/boxconfig"
	"github.com/twinpbx/twinpbx/firmware/cluster/vip"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/control"
	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/firmware/supervisor"
)

const usage = `twinpbx: the firmware of a twin PBX pair.

Usage:
  twinpbx run [--config FILE] [--data DIR] [--log-level LEVEL] [--board NAME|FILE]
      Run the appliance. With no config stored yet and no --config, a starter
      config with extensions 100-104 and random secrets is created. A config
      with a cluster section runs the box as one of a twin pair; --board names
      its board profile (default sim) for the watchdog, the PSTN relay and
      the ISDN spans (on sim, an exchange emulator answers an isdn trunk).
  twinpbx setup [--data DIR] [--lang en|de] [--accessible]
      The console setup wizard: which twin this is, addresses, pairing,
      admin PIN, extensions, PSTN trunk; writes the config as import does.
  twinpbx console [--data DIR] [--lang en|de] [--accessible]
      The status dashboard of the running box, locked by the admin PIN.
  twinpbx config validate FILE
      Check a config file; every problem is printed with its line and field.
  twinpbx config import FILE [--data DIR]
      Store FILE as the next config version (applied at once when running).
  twinpbx config export [--data DIR]
      Print the current config (with the extensions' secrets) as YAML.
  twinpbx cdr export [--data DIR] [--from TIME] [--to TIME]
      Print call detail records as CSV (TIME in RFC 3339).
  twinpbx voicemail list [--data DIR] | voicemail export [--data DIR] EXT DIR
      On a stopped box: list the messages of every mailbox, or write those
      of extension EXT into DIR as WAV files (G.711, as recorded).
  twinpbx dns-records [--data DIR] [--domain DOMAIN] [--vip|--both] [--format zone|dnsmasq]
      Print the NAPTR, SRV and A records that make SRV-capable phones find
      the PBX: at the pair's VIP (default), or at both boxes (docs/DNS.md).
  twinpbx status [--data DIR] [--gc]
      Show listeners, registered phones and calls in progress, and on a twin
      pair the box's role, its twin, paths, lease and alarms (JSON).
  twinpbx switchover [--data DIR]
      On the active box of a pair: hand service over to the twin gracefully.
  twinpbx maintenance on|off [--data DIR]
      Keep this box from becoming active (an active box hands over first),
      or end that.
  twinpbx update [--reboot] BUNDLE | update status
      Check a signed update bundle and write it into the inactive boot slot;
      the next boot tries it once and keeps it only when the box comes up
      healthy, else the box falls back by itself (docs/IMAGE.md).
  twinpbx update --pair [--data DIR] BUNDLE
      On the active box of a pair: rolling update of both boxes: the
      standby first, a switchover, then this box; follows the roll.
  twinpbx flash IMAGE DEVICE
      Write a disk image (make image) onto a box's disk, read it back and
      compare; refuses a device that is mounted.

DIR defaults to ./twinpbx-data.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		var ee *supervisor.ExitError
		if !errors.As(err, &ee) {
			// A worker's exit was told by the worker itself.
			fmt.Fprintln(os.Stderr, "twinpbx:", err)
		}
		os.Exit(exitCode(err))
	}
}

// exitCode is the status twinpbx exits with after err: 2 for a usage
// error, supervisor.ExitConfigError for a config error (the supervisor
// does not restart a worker that ended so), the worker's own status when
// a supervisor stopped with it, 1 otherwise.
func exitCode(err error) int {
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return 2
	case appliance.IsConfigError(err):
		return supervisor.ExitConfigError
	}
	return supervisor.ExitCode(err)
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg + " (see `twinpbx help`)" }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	}
	switch args[0] {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	case "run":
		return cmdRun(ctx, args[1:], stdout, stderr)
	case "setup", "console":
		return cmdConsoleUI(ctx, args, stdout, stderr)
	case "config":
		if len(args) < 2 {
			return usageError{"config needs validate, import or export"}
		}
		switch args[1] {
		case "validate":
			return cmdConfigValidate(args[2:], stdout)
		case "import":
			return cmdConfigImport(args[2:], stdout)
		case "export":
			return cmdConfigExport(args[2:], stdout)
		}
		return usageError{fmt.Sprintf("unknown config command %q", args[1])}
	case "cdr":
		if len(args) < 2 || args[1] != "export" {
			return usageError{"cdr needs export"}
		}
		return cmdCDRExport(args[2:], stdout)
	case "voicemail":
		return cmdVoicemail(args[1:], stdout)
	case "dns-records":
		return cmdDNSRecords(args[1:], stdout)
	case "update":
		return cmdUpdate(ctx, args[1:], stdout, stderr)
	case "flash":
		return cmdFlash(args[1:], stdout, stderr)
	case "status":
		return cmdStatus(args[1:], stdout)
	case "switchover":
		return cmdSwitchover(ctx, args[1:], stdout)
	case "maintenance":
		if len(args) < 2 || (args[1] != "on" && args[1] != "off") {
			return usageError{"maintenance needs on or off"}
		}
		return cmdMaintenance(ctx, args[1], args[2:], stdout)
	}
	return usageError{fmt.Sprintf("unknown command %q", args[0])}
}

func newFlags(name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	data := fs.String("data", "twinpbx-data", "data folder")
	return fs, data
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return usageError{fmt.Sprintf("%s: %v", fs.Name(), err)}
	}
	return nil
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, data := newFlags("run")
	cfgPath := fs.String("config", "", "config file to import before starting")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	boardName := fs.String("board", "", "board profile: sim, qemu, apu2 or a YAML file (a twin pair box uses all of it, a standalone box its ISDN spans)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("run: unexpected argument %q", fs.Arg(0))}
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return usageError{fmt.Sprintf("run: --log-level %q: want debug, info, warn or error", *level)}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	slog.SetDefault(log)
	o := appliance.Options{ConfigPath: *cfgPath, DataDir: *data, Logger: log, Out: stdout, Board: *boardName}
	if !supervisor.Supervised() {
		return supervise(ctx, o, append([]string{"run"}, args...), stdout, stderr)
	}
	switch k, err := supervisor.ChildWatchdog(); {
	case err == nil:
		o.Watchdog = k
	case !errors.Is(err, supervisor.ErrNoWatchdog):
		return fmt.Errorf("run: %w", err)
	}
	return appliance.Run(ctx, o)
}

// supervise is the parent side of `twinpbx run`: it runs the same command
// again as its worker and keeps it running (firmware/supervisor). On a
// twin it removes the VIP the moment the worker dies, so a dead node does
// not keep the phones' traffic, and on the simulated board it hosts the
// worker's watchdog, so a hung worker is reset from outside. A worker that
// ends with a config error is not restarted.
func supervise(ctx context.Context, o appliance.Options, args []string, stdout, stderr io.Writer) error {
	plan, err := appliance.PlanSupervision(o)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating the data folder %s: %w", o.DataDir, err)
	}
	log := o.Logger.With("component", "supervisor")
	cfg := supervisor.Config{
		Args:            args,
		Dir:             o.DataDir,
		Stdout:          stdout,
		Console:         stderr,
		WatchdogTimeout: plan.WatchdogTimeout,
		Foreground:      true,
	}
	if plan.Twin {
		cfg.OnChildExit = func(code int, signal string) {
			removed, err := vip.RemoveStale(plan.LANInterface, plan.VIP)
			switch {
			case err != nil:
				log.Error("removing the VIP after the node process ended", "code", code, "signal", signal, "err", err)
			case removed:
				log.Warn("node process ended: removed its VIP", "vip", plan.VIP, "interface", plan.LANInterface, "code", code, "signal", signal)
			default:
				log.Info("node process ended; it held no VIP", "code", code, "signal", signal)
			}
		}
	}
	return supervisor.Run(ctx, cfg)
}

func cmdConfigValidate(args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return usageError{"config validate takes one FILE"}
	}
	cfg, err := config.Load(args[0])
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: valid (%d extensions)\n", args[0], len(cfg.Extensions))
	return nil
}

// withData runs online when an appliance runs on the data folder, else
// offline on the store itself.
func withData(dir string, online func(*control.Client) error, offline func(*store.Store) error) error {
	c, err := control.Dial(dir)
	if err == nil {
		return online(c)
	}
	if !errors.Is(err, control.ErrNotRunning) {
		return err
	}
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("data folder %s: %w (start the appliance with `twinpbx run --data %s` first)", dir, err, dir)
	}
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	return offline(st)
}

func cmdConfigImport(args []string, stdout io.Writer) error {
	fs, data := newFlags("config import")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"config import takes one FILE"}
	}
	path := fs.Arg(0)
	text, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return withData(*data, func(c *control.Client) error {
		r, err := c.ImportConfig(text)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "config version %d applied", r.Version)
		if r.Restart {
			fmt.Fprint(stdout, "; listeners or RTP ports changed: restart twinpbx for them to apply")
		}
		fmt.Fprintln(stdout)
		return nil
	}, func(st *store.Store) error {
		if err := os.MkdirAll(*data, 0o700); err != nil {
			return err
		}
		v, err := boxconfig.Import(st, text, path)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "config version %d stored; it applies when twinpbx starts\n", v)
		return nil
	})
}

func cmdConfigExport(args []string, stdout io.Writer) error {
	fs, data := newFlags("config export")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return withData(*data, func(c *control.Client) error { return c.Config(stdout) },
		func(st *store.Store) error {
			b, err := boxconfig.Export(st)
			if err != nil {
				return err
			}
			_, err = stdout.Write(b)
			return err
		})
}

func cmdCDRExport(args []string, stdout io.Writer) error {
	fs, data := newFlags("cdr export")
	fromS := fs.String("from", "", "first start time (RFC 3339)")
	toS := fs.String("to", "", "last start time (RFC 3339)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var from, to time.Time
	var err error
	if *fromS != "" {
		if from, err = time.Parse(time.RFC3339, *fromS); err != nil {
			return usageError{fmt.Sprintf("--from %q: want RFC 3339, e.g. 2026-11-24T08:00:00Z", *fromS)}
		}
	}
	if *toS != "" {
		if to, err = time.Parse(time.RFC3339, *toS); err != nil {
			return usageError{fmt.Sprintf("--to %q: want RFC 3339, e.g. 2026-11-24T18:00:00Z", *toS)}
		}
	}
	return withData(*data, func(c *control.Client) error { return c.CDRs(stdout, from, to) },
		func(st *store.Store) error { return appliance.ExportCDRs(st, stdout, from, to) })
}

func cmdStatus(args []string, stdout io.Writer) error {
	fs, data := newFlags("status")
	gc := fs.Bool("gc", false, "collect garbage in the running process and return the freed memory to the system, before the status (so that process.heap_live_bytes is current) and after it (so that its resident size read next is not the status answer's), for measuring memory")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := control.Dial(*data)
	if errors.Is(err, control.ErrNotRunning) {
		return fmt.Errorf("%w (%s)", err, strings.TrimRight(*data, "/"))
	}
	if err != nil {
		return err
	}
	if *gc {
		return c.StatusAfterGC(stdout)
	}
	return c.Status(stdout)
}

func cmdSwitchover(ctx context.Context, args []string, stdout io.Writer) error {
	fs, data := newFlags("switchover")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("switchover: unexpected argument %q", fs.Arg(0))}
	}
	return pairRequest(ctx, *data, "switchover", stdout)
}

func cmdMaintenance(ctx context.Context, state string, args []string, stdout io.Writer) error {
	fs, data := newFlags("maintenance")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("maintenance: unexpected argument %q", fs.Arg(0))}
	}
	return pairRequest(ctx, *data, "maintenance/"+state, stdout)
}

func pairRequest(ctx context.Context, data, what string, stdout io.Writer) error {
	c, err := control.Dial(data)
	if errors.Is(err, control.ErrNotRunning) {
		return fmt.Errorf("%w (%s)", err, strings.TrimRight(data, "/"))
	}
	if err != nil {
		return err
	}
	msg, err := c.Pair(what)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, msg)
	return nil
}
