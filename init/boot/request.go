package boot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// A console asks init for a reboot by sending it SIGTERM, the signal the
// usual reboot commands send to PID 1. Init then stops twinpbx (which
// closes its store), disarms the watchdog it keeps and reboots. When the
// file ResetRequestFile exists as well, init wipes the data folder before
// it reboots: a factory reset, after which the box boots into the wizard.

// ResetRequestFile asks init for a factory reset at the next deliberate
// reboot. It lives in /run, a tmpfs, so a request never survives a reboot.
const ResetRequestFile = "/run/twinpbx/factory-reset"

// ErrNotUnderInit means the caller was not started by the box's init, so
// nothing will reboot the machine for it (a console on a developer
// machine, or run from a shell).
var ErrNotUnderInit = errors.New("only the box's own console can reboot it")

// UnderInit reports whether this process is a console that init started.
func UnderInit() bool {
	return os.Getenv(EnvConsole) == "1" && os.Getppid() == 1
}

// RequestReboot asks init to reboot the box cleanly, after wiping the
// data folder when factoryReset is set. It returns once the request is
// sent; the console is stopped with everything else.
func RequestReboot(factoryReset bool) error {
	if !UnderInit() {
		return ErrNotUnderInit
	}
	if factoryReset {
		if err := os.MkdirAll(filepath.Dir(ResetRequestFile), 0o700); err != nil {
			return fmt.Errorf("requesting a factory reset: %w", err)
		}
		if err := os.WriteFile(ResetRequestFile, []byte("factory reset requested on the console\n"), 0o600); err != nil {
			return fmt.Errorf("requesting a factory reset: %w", err)
		}
	}
	if err := syscall.Kill(1, syscall.SIGTERM); err != nil {
		return fmt.Errorf("asking init to reboot: %w", err)
	}
	return nil
}

// takeResetRequest reports, and removes, a factory reset request.
func takeResetRequest(path string) bool {
	err := os.Remove(path)
	return err == nil
}

// WipeData removes everything in the data folder dir but the file
// system's own lost+found: the store (config, registrations, CDRs), the
// twin's box file, the node's keys, exports and logs. The folder itself
// stays (it is the mount point of the data partition).
func WipeData(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("wiping the data folder: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if e.Name() == "lost+found" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("wiping the data folder: %w", err)
	}
	return nil
}
