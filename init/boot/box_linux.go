package boot

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/twinpbx/twinpbx/board"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/control"
	"github.com/twinpbx/twinpbx/init/boot/request"
)

// ntpInterval is how often init sets the clock again from the time servers.
const ntpInterval = time.Hour

// firstBoot prepares an empty data folder: the first-boot config is stored
// (the PBX answers at once on every address) and the setup is marked
// pending, so the console shows the wizard.
func firstBoot(log *slog.Logger, p Params) error {
	text, err := FirstBootConfig(nil, p.Addr.Addr())
	if err != nil {
		return err
	}
	if err := StoreFirstBootConfig(DataDir, text); err != nil {
		return err
	}
	if err := MarkSetupPending(DataDir); err != nil {
		log.Error("the console will show the dashboard instead of the wizard", "err", err)
	}
	log.Warn("first boot: the PBX runs on a starter config listening on every address; the console shows the setup wizard")
	return nil
}

// box is the part of init that looks after the running box: its settings,
// its consoles and deliberate reboots.
type box struct {
	log  *slog.Logger
	prof board.Profile
	dir  string
	set  *applier
	// stop receives SIGTERM, a reboot request (package request), and the
	// reboot init decides on itself after a twin's setup.
	stop chan os.Signal

	mu       sync.Mutex
	settings Settings
	// keepCancel ends the renewal of the DHCP lease and the clock's
	// setting of the settings applied last.
	keepCancel context.CancelFunc
}

func newBox(log *slog.Logger, prof board.Profile, dir string) *box {
	b := &box{log: log, prof: prof, dir: dir, set: newApplier(log), stop: make(chan os.Signal, 2)}
	signal.Notify(b.stop, unix.SIGTERM)
	return b
}

// reboot asks for the clean reboot init makes on SIGTERM: twinpbx
// stopped (its store closed), the watchdog disarmed, the data partition
// unmounted. A request already pending is enough.
func (b *box) reboot() {
	select {
	case b.stop <- unix.SIGTERM:
	default:
	}
}

// lanNIC is the board's LAN NIC, "" when it names none.
func (b *box) lanNIC() string {
	for _, n := range b.prof.NICs {
		if n.Role == board.RoleLAN {
			return n.Name
		}
	}
	return ""
}

// applyStored applies the settings of the config twinpbx will run. Only
// on a box: the simulated board is a developer's machine.
func (b *box) applyStored(ctx context.Context) {
	if b.prof.Name == "sim" || os.Getpid() != 1 {
		return
	}
	cfg, err := StoredConfig(b.dir)
	if err != nil {
		b.log.Error("settings not applied: reading the config", "err", err)
		return
	}
	if cfg != nil {
		b.apply(ctx, cfg)
	}
}

// apply applies cfg's network, time zone and clock settings: the network
// now, the clock in the background (time servers may be slow to answer);
// a DHCP lease is renewed in the background too.
func (b *box) apply(ctx context.Context, cfg *config.Config) {
	s, err := SettingsOf(cfg, b.lanNIC())
	if err != nil {
		b.log.Error("settings not applied", "err", err)
		return
	}
	renew, err := b.set.network(ctx, s)
	if err != nil {
		b.log.Error("LAN setting not fully applied", "err", err)
	}
	b.mu.Lock()
	b.settings = s
	if b.keepCancel != nil {
		b.keepCancel() // the lease and clock of the settings before
	}
	kctx, cancel := context.WithCancel(ctx)
	b.keepCancel = cancel
	b.mu.Unlock()
	go b.set.keepLease(kctx, s, renew)
	go b.set.keepClock(kctx, s, ntpInterval)
}

// consoleEnv is the environment the settings give the console programs.
func (b *box) consoleEnv() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.settings.ConsoleEnv()
}

// startConsoles starts the consoles once heard is closed (the PBX
// listens) or ConsoleWait has passed: the PBX first (ready.go).
func (b *box) startConsoles(ctx context.Context, heard <-chan struct{}) *consoles {
	c := newConsoles(b.log, Twinpbx, b.dir, func() { b.afterSetup(ctx) }, b.consoleEnv)
	go func() {
		start := time.Now()
		listening := waitHeard(ctx, heard, ConsoleWait)
		b.log.Info("starting the consoles", "pbx_listening", listening, "after", time.Since(start).Round(time.Millisecond))
		c.start(ctx, ConsoleTTYs)
	}()
	return c
}

// afterSetup makes the wizard's config apply: a single box gets its
// settings applied and its PBX restarted (for the new listeners); a
// twin reboots, as it starts as one of a pair and its node takes over
// the watchdog.
func (b *box) afterSetup(ctx context.Context) {
	state, err := InspectData(b.dir)
	if err == nil && state.Twin {
		b.log.Info("twin set up: rebooting to start as one of the pair")
		b.reboot()
		return
	}
	c, err := control.Dial(b.dir)
	if err != nil {
		b.log.Error("after setup: the PBX is not reachable", "err", err)
		return
	}
	var text bytes.Buffer
	if err := c.Config(&text); err != nil {
		b.log.Error("after setup: reading the config", "err", err)
	} else if cfg, err := config.Parse("config after setup", text.Bytes()); err != nil {
		b.log.Error("after setup: reading the config", "err", err)
	} else if b.prof.Name != "sim" {
		b.apply(ctx, cfg)
	}
	msg, err := c.Restart()
	if err != nil {
		b.log.Error("after setup: restarting the PBX", "err", err)
		return
	}
	b.log.Info("after setup: "+msg, "config", fmt.Sprintf("%d bytes", text.Len()))
}

// shutdown is the end of a deliberate reboot, once twinpbx has stopped:
// the data folder is wiped when a factory reset was asked for, the
// watchdog init keeps is disarmed, and the data partition is written out.
func (b *box) shutdown(wd *keeper) {
	if takeResetRequest(request.ResetFile) {
		if err := WipeData(b.dir); err != nil {
			b.log.Error("FACTORY RESET INCOMPLETE", "err", err)
		} else {
			b.log.Warn("factory reset: data folder wiped; the box boots into the setup wizard")
		}
	}
	if wd != nil {
		if err := wd.wd.Close(); err != nil {
			b.log.Error("disarming the watchdog", "err", err)
		}
	}
	unix.Sync()
	if err := unix.Unmount(b.dir, 0); err != nil {
		b.log.Warn("unmounting the data folder", "err", err)
	}
}
