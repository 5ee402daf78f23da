package vmtest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/twinpbx/twinpbx/image/build"
)

// UncompressedName is the uncompressed initramfs Uncompressed keeps in
// the image folder.
const UncompressedName = "initramfs.cpio"

// Uncompressed returns an uncompressed copy of the image's initramfs,
// made with xz next to it unless one at least as new as the xz file is
// there already. Under TCG the kernel spends about 4 s unpacking the xz
// initramfs; unpacking the plain cpio takes a fraction of a second. The
// files inside are the same, so a test booting it boots the same system.
func Uncompressed(ctx context.Context, img string) (string, error) {
	src := filepath.Join(img, build.Initramfs)
	dst := filepath.Join(img, UncompressedName)
	si, err := os.Stat(src)
	if err != nil {
		return "", fmt.Errorf("uncompressing the initramfs: %w", err)
	}
	di, err := os.Stat(dst)
	switch {
	case err == nil && !di.ModTime().Before(si.ModTime()):
		return dst, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("uncompressing the initramfs: %w", err)
	}
	data, err := exec.CommandContext(ctx, "xz", "-dc", src).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return "", fmt.Errorf("uncompressing %s: %w", src, err)
	}
	// A file of its own, renamed into place: test binaries of parallel
	// packages may share the image folder.
	tmp, err := os.CreateTemp(img, UncompressedName+".*.tmp")
	if err != nil {
		return "", fmt.Errorf("uncompressing the initramfs: %w", err)
	}
	defer os.Remove(tmp.Name()) // gone already once renamed
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		return "", fmt.Errorf("uncompressing the initramfs: %w", err)
	}
	return dst, nil
}

// bootAppend is what the fast boots add to the kernel command line: no
// boot messages on the serial console, and no self-tests of the kernel's
// crypto algorithms (about 0.3–0.5 s under TCG, a few milliseconds on a
// board).
const bootAppend = "quiet cryptomgr.notests"

// MarkerBootDone starts init's log line when it starts twinpbx; the line
// carries the kernel's uptime as uptime=….
const MarkerBootDone = `msg="boot done: starting twinpbx"`

// BootDoneUptime reads the guest's uptime from init's boot done line on
// the console: how long the box itself took from its kernel's start to
// starting twinpbx. ok is false while the console shows no such line.
func BootDoneUptime(console string) (d time.Duration, ok bool) {
	i := strings.Index(console, MarkerBootDone)
	if i < 0 {
		return 0, false
	}
	line, _, _ := strings.Cut(console[i:], "\n")
	for f := range strings.FieldsSeq(line) {
		if v, found := strings.CutPrefix(f, "uptime="); found {
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil || d < 0 {
				return 0, false
			}
			return d, true
		}
	}
	return 0, false
}
