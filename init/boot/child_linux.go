package boot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"

	"github.com/twinpbx/twinpbx/hw/watchdog"
)

// ErrStopped is what runChild returns after a deliberate stop (a reboot
// asked for on the console): the child was told to stop and has ended.
var ErrStopped = errors.New("twinpbx stopped for a reboot")

// childOpts are runChild's hooks; the zero value has none.
type childOpts struct {
	// others hears of every other process init reaps (the consoles).
	others func(pid int, ws unix.WaitStatus)
	// stop delivers a deliberate stop: it is forwarded to the child as
	// SIGTERM, which is killed after stopTimeout (zero: 15 s).
	stop        <-chan os.Signal
	stopTimeout time.Duration
	// stdout is the child's standard output; nil: init's own. Init
	// closes its copy once the child has started.
	stdout *os.File
}

// runChild starts path with args and waits until it ends, reaping every
// other process that ends meanwhile: as PID 1, init inherits orphans.
func runChild(log *slog.Logger, path string, args, env []string, o childOpts) error {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGCHLD)
	defer signal.Stop(sigs)
	stdout := os.Stdout
	if o.stdout != nil {
		stdout = o.stdout
	}
	proc, err := os.StartProcess(path, append([]string{path}, args...), &os.ProcAttr{
		Env:   env,
		Files: []*os.File{os.Stdin, stdout, os.Stderr},
	})
	if o.stdout != nil {
		o.stdout.Close()
	}
	if err != nil {
		return fmt.Errorf("starting %s: %w", path, err)
	}
	log.Info("twinpbx started", "pid", proc.Pid, "args", args)
	if o.stopTimeout == 0 {
		o.stopTimeout = 15 * time.Second
	}
	stop := o.stop
	var kill <-chan time.Time
	stopped := false
	for {
		select {
		case <-sigs:
		case s := <-stop:
			log.Warn("stopping twinpbx for a reboot", "signal", s, "pid", proc.Pid)
			stopped, stop = true, nil
			_ = proc.Signal(unix.SIGTERM)
			kill = time.After(o.stopTimeout)
			continue
		case <-kill:
			log.Error("twinpbx did not stop in time: killing it", "pid", proc.Pid, "after", o.stopTimeout)
			_ = proc.Kill()
			continue
		}
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err != nil || pid <= 0 {
				break
			}
			if pid != proc.Pid {
				if o.others != nil {
					o.others(pid, ws)
				}
				continue
			}
			switch {
			case stopped:
				log.Info("twinpbx stopped", "status", ws.ExitStatus(), "signaled", ws.Signaled())
				return ErrStopped
			case ws.Signaled():
				return fmt.Errorf("%s ended by signal %v", path, ws.Signal())
			}
			return fmt.Errorf("%s exited with status %d", path, ws.ExitStatus())
		}
	}
}

// keeper kicks the board's watchdog for a standalone box.
type keeper struct {
	log *slog.Logger
	wd  watchdog.Watchdog
}

func keepWatchdog(log *slog.Logger, dev string, timeout time.Duration) (*keeper, error) {
	d, err := watchdog.Open(dev, timeout)
	if err != nil {
		return nil, err
	}
	log.Info("watchdog armed", "device", dev, "identity", d.Identity(), "timeout", d.Timeout())
	return &keeper{log: log, wd: d}, nil
}

// run kicks the watchdog at a third of its timeout until ctx ends. With
// hang > 0 it stops kicking after hang, so the board resets the box: the
// debug hook of the VM watchdog test.
func (k *keeper) run(ctx context.Context, hang time.Duration) {
	t := time.NewTicker(k.wd.Timeout() / 3)
	defer t.Stop()
	var hangAt <-chan time.Time
	if hang > 0 {
		k.log.Warn("debug: the watchdog will stop being kicked", "after", hang)
		hangAt = time.After(hang)
	}
	k.kick(ctx, t.C, hangAt)
}

// kick kicks the watchdog on every tick until ctx ends or hangAt fires.
func (k *keeper) kick(ctx context.Context, tick, hangAt <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hangAt:
			k.log.Warn("debug hang: no longer kicking the watchdog; expect a reset", "timeout", k.wd.Timeout())
			return // keep the device open: closing would not disarm it anyway
		case <-tick:
			if err := k.wd.Kick(); err != nil {
				k.log.Error("kicking the watchdog", "err", err)
			}
		}
	}
}
