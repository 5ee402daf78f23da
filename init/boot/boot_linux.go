package boot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/u-root/u-root/pkg/kmodule"
	"golang.org/x/sys/unix"

	"github.com/twinpbx/twinpbx/board"
	"github.com/twinpbx/twinpbx/firmware/update"
)

// Twinpbx is the firmware binary in the image.
const Twinpbx = "/bin/twinpbx"

// Main is PID 1: it boots the box and runs twinpbx for ever. When twinpbx
// ends, or booting fails, it says why on the console and reboots.
func Main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "init")
	slog.SetDefault(log)
	start := time.Now()
	err := Run(context.Background(), log, start)
	if errors.Is(err, ErrStopped) {
		log.Info("rebooting as asked")
	} else {
		log.Error("twinpbx stopped: rebooting in 5 s", "err", err)
		time.Sleep(5 * time.Second) // time to read the console, not a wait for a condition
	}
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		log.Error("reboot failed", "err", err)
	}
	select {} // PID 1 must not exit: the kernel would panic
}

// Run boots the box and runs twinpbx until it ends; it never returns nil.
func Run(ctx context.Context, log *slog.Logger, start time.Time) error {
	if err := mountAll(sysMounter{}, BaseMounts()); err != nil {
		return err
	}
	line, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("reading the kernel command line: %w", err)
	}
	p, perrs := ParseCmdline(string(line))
	for _, e := range perrs {
		log.Warn("ignoring a kernel command line setting", "err", e)
	}
	prof, err := board.Lookup(p.Board)
	if err != nil {
		return fmt.Errorf("board profile %q: %w", p.Board, err)
	}
	log.Info("booting", "board", prof.Name, "uptime", uptime(), "kernel_cmdline", strings.TrimSpace(string(line)))

	mods, fsMods := SplitDataModules(append(append([]string{}, prof.Modules...), p.Modules...))
	loadModules(log, mods)
	sp := abBoot(log, string(line), &p)
	abDisk := p.DataDevice == "" && onABDisk()
	loadDataModules(log, fsMods, p.DataDevice != "" || abDisk)
	if mountData(ctx, log, sysDataOps, p.DataDevice, abDisk) == dataReboot {
		return fmt.Errorf("e2fsck asked for a reboot after repairing the data partition: %w", ErrStopped)
	}
	if err := setupNetwork(log, prof, p); err != nil {
		// The PBX is still reachable on the console; keep going.
		log.Error("network setup incomplete", "err", err)
	}

	state, err := InspectData(DataDir)
	if err != nil {
		return err
	}
	if !state.Stored && !state.Twin {
		if err := firstBoot(log, p); err != nil {
			return err
		}
	}
	b := newBox(log, prof, DataDir)
	b.applyStored(ctx)

	var wd *keeper
	if InitKeepsWatchdog(prof.Watchdog.Device, state) {
		wd, err = keepWatchdog(log, prof.Watchdog.Device, prof.Watchdog.Timeout)
		if err != nil {
			// A box without its watchdog still serves; say so loudly.
			log.Error("WATCHDOG NOT ARMED: a hung box will not be reset", "err", err)
		}
	} else if p.Hang > 0 {
		log.Warn("debug hang ignored: init does not keep the watchdog of a twin", "hang", p.Hang)
	}

	log.Info("boot done: starting twinpbx", "after", time.Since(start).Round(time.Millisecond), "uptime", uptime())
	env := []string{"PATH=/bin:/bbin", "HOME=" + DataDir, "TERM=linux"}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	kept := make(chan struct{})
	if wd != nil {
		go func() { wd.run(ctx, p.Hang); close(kept) }()
	} else {
		close(kept)
	}
	go watchTrial(ctx, log, sp, b.reboot)
	heard := make(chan struct{})
	stdout := listenPipe(log, os.Stdout, heard)
	cons := b.startConsoles(ctx, heard)
	err = runChild(log, Twinpbx, RunArgs(prof.Name, ""), env, childOpts{others: cons.exited, stop: b.stop, stdout: stdout})
	if errors.Is(err, ErrStopped) {
		cancel()
		<-kept
		b.shutdown(wd)
	}
	return err
}

// loadModules loads each module with its dependencies from the image's
// versioned module tree (modules.dep, made by depmod at build time). A
// module that fails is logged: the box may still work without it.
func loadModules(log *slog.Logger, mods []string) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		log.Error("uname", "err", err)
		return
	}
	rel := unix.ByteSliceToString(u.Release[:])
	pr, err := kmodule.NewProber(kmodule.ProbeOpts{KVer: rel})
	if err != nil {
		log.Error("no kernel modules in the image for this kernel", "release", rel, "err", err)
		return
	}
	for _, m := range mods {
		if err := pr.Probe(m, ""); err != nil {
			log.Error("loading kernel module", "module", m, "err", err)
			continue
		}
		log.Debug("loaded kernel module", "module", m)
	}
	log.Info("kernel modules loaded", "modules", mods)
}

// onABDisk reports whether the box's disk has a boot state partition:
// an A/B disk, which ought to have a data partition too.
func onABDisk() bool {
	_, err := update.BoxDisk.Device(update.PartState)
	return err == nil
}

// uptime is how long the kernel has been running (CLOCK_BOOTTIME), the
// box's own measure of its boot time; 0 if the clock cannot be read.
func uptime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano()).Round(time.Millisecond)
}

// waitFor polls ok until it is true or d has passed.
func waitFor(d time.Duration, ok func() bool) error {
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}
