// Package request is how a console program asks the box's init (PID 1,
// package init/boot) for a reboot or a factory reset. It is kept apart
// from init/boot so the console does not carry init's code.
//
// A console asks for a reboot by sending init SIGTERM, the signal the
// usual reboot commands send to PID 1. Init then stops twinpbx (which
// closes its store), disarms the watchdog it keeps and reboots. When the
// file ResetFile exists as well, init wipes the data folder before it
// reboots: a factory reset, after which the box boots into the wizard.
package request

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ResetFile asks init for a factory reset at the next deliberate reboot.
// It lives in /run, a tmpfs, so a request never survives a reboot.
const ResetFile = "/run/twinpbx/factory-reset"

// EnvConsole is set to "1" in the environment of the console programs
// init starts: it tells them that init is there to reboot the box.
const EnvConsole = "TWINPBX_INIT_CONSOLE"

// ErrNotUnderInit means the caller was not started by the box's init, so
// nothing will reboot the machine for it (a console on a developer
// machine, or run from a shell).
var ErrNotUnderInit = errors.New("only the box's own console can reboot it")

// UnderInit reports whether this process is a console that init started.
func UnderInit() bool {
	return os.Getenv(EnvConsole) == "1" && os.Getppid() == 1
}

// Reboot asks init to reboot the box cleanly, after wiping the data
// folder when factoryReset is set. It returns once the request is sent;
// the console is stopped with everything else.
func Reboot(factoryReset bool) error {
	if !UnderInit() {
		return ErrNotUnderInit
	}
	if factoryReset {
		if err := os.MkdirAll(filepath.Dir(ResetFile), 0o700); err != nil {
			return fmt.Errorf("requesting a factory reset: %w", err)
		}
		if err := os.WriteFile(ResetFile, []byte("factory reset requested on the console\n"), 0o600); err != nil {
			return fmt.Errorf("requesting a factory reset: %w", err)
		}
	}
	if err := syscall.Kill(1, syscall.SIGTERM); err != nil {
		return fmt.Errorf("asking init to reboot: %w", err)
	}
	return nil
}

// DataAlarmFile holds, one line, the alarm init raised at boot about the
// data partition (damaged and left untouched, missing, too small, not
// checked...): why the data folder is a tmpfs or needs a look. It is
// absent when the data partition is fine. The firmware's status and the
// console show it.
const DataAlarmFile = "/run/twinpbx/data-alarm"
