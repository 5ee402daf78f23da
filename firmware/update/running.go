package update

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
)

// SlotFromCmdline is the slot a kernel command line says the boot stage
// started this system from (twinpbx.slot), or NoSlot.
func SlotFromCmdline(cmdline string) Slot {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "twinpbx.slot="); ok {
			if s, err := ParseSlot(v); err == nil {
				return s
			}
		}
	}
	return NoSlot
}

// RunningSlot is the slot the running system was started from, or NoSlot
// (not booted by the stage, or not on a box).
func RunningSlot() Slot {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return NoSlot
	}
	return SlotFromCmdline(string(b))
}

// RebootBox asks the box's init for a clean reboot (SIGTERM to PID 1, as
// the console does). It refuses where PID 1 is not the image's init.
func RebootBox() error {
	if exe, err := os.Readlink("/proc/1/exe"); err != nil || exe != "/init" {
		return errors.New("PID 1 is not the box's init (not on a box): reboot by hand")
	}
	if err := syscall.Kill(1, syscall.SIGTERM); err != nil {
		return fmt.Errorf("asking init to reboot: %w", err)
	}
	return nil
}
