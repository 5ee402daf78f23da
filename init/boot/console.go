package boot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/twinpbx/twinpbx/init/boot/request"
)

// The console on the box. Init runs the console program on each console
// terminal that exists (ConsoleTTYs) for as long as the box runs,
// restarting it when it ends: `twinpbx setup` while the box is not set
// up, `twinpbx console` after.
//
// "Not set up" is the marker SetupPendingFile in the data folder. Init
// writes it when it finds the data folder empty (first boot, or after a
// factory reset) and removes it when `twinpbx setup` ends with status 0,
// that is when the wizard's config was stored. Meanwhile the PBX runs on
// the first-boot config, so a phone can be tried before the wizard is
// done, and the wizard imports its config into the running PBX.

// SetupPendingFile in the data folder marks a box whose setup wizard has
// not completed yet.
const SetupPendingFile = "setup-pending"

// ConsoleTTYs are the terminals init runs the console on, where present:
// the first serial port and the first virtual terminal (VGA).
var ConsoleTTYs = []string{"ttyS0", "tty1"}

// SerialTTY reports whether tty (a name under /dev) is a serial line. A
// serial console may be a dumb terminal that cannot place the cursor and
// reports no size, so the console runs line by line there.
func SerialTTY(tty string) bool {
	for _, p := range []string{"ttyS", "ttyUSB", "ttyACM", "ttyAMA"} {
		if rest, ok := strings.CutPrefix(tty, p); ok && rest != "" && strings.Trim(rest, "0123456789") == "" {
			return true
		}
	}
	return false
}

// ConsoleProgram is what init runs on tty: the arguments of twinpbx and
// the environment. setupPending chooses the wizard over the dashboard.
// A serial line gets TERM=dumb and the line-by-line mode; a virtual
// terminal gets TERM=linux and full screen.
func ConsoleProgram(tty string, setupPending bool) (args, env []string) {
	cmd := "console"
	if setupPending {
		cmd = "setup"
	}
	args = []string{cmd, "--data", DataDir}
	term := "linux"
	if SerialTTY(tty) {
		term = "dumb"
		args = append(args, "--accessible")
	}
	env = []string{"PATH=/bin:/bbin", "HOME=" + DataDir, "TERM=" + term, request.EnvConsole + "=1"}
	return args, env
}

// SetupPending reports whether the data folder dir holds the marker of
// an unfinished setup.
func SetupPending(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, SetupPendingFile))
	return err == nil
}

// MarkSetupPending writes the marker of an unfinished setup into dir.
func MarkSetupPending(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, SetupPendingFile), []byte("the setup wizard has not completed\n"), 0o600); err != nil {
		return fmt.Errorf("marking the setup as pending: %w", err)
	}
	return nil
}

// setupDone removes the marker of an unfinished setup.
func setupDone(dir string) error {
	err := os.Remove(filepath.Join(dir, SetupPendingFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("clearing the setup marker: %w", err)
	}
	return nil
}
