package boot

import (
	"errors"
	"fmt"
	"io/fs"
)

// E2fsck is where the image carries e2fsprogs' e2fsck (it shares
// mke2fs's libraries), which init runs on the data partition before it
// mounts it.
const E2fsck = "/sbin/e2fsck"

// FsckArgs are e2fsck's options at boot: preen (-p, repair what is safe
// to repair without a person, stop on anything else). The device
// follows.
var FsckArgs = []string{"-p"}

// RebootMark is the file, in the data folder, that says init rebooted
// once because e2fsck asked for it: the next boot does not reboot again
// for the same reason, and removes it.
const RebootMark = ".fsck-rebooted"

// e2fsck's exit code is a sum of these (e2fsck(8), "EXIT CODE").
const (
	fsckCorrected   = 1   // file system errors corrected
	fsckRebootAsked = 2   // errors corrected, system should be rebooted
	fsckUncorrected = 4   // file system errors left uncorrected
	fsckOperational = 8   // operational error
	fsckUsage       = 16  // usage or syntax error
	fsckCancelled   = 32  // cancelled by the user
	fsckLibrary     = 128 // shared library error
)

// fsckVerdict is what init does with the data partition after e2fsck.
type fsckVerdict int

const (
	// fsckMount: clean, or repaired: mount it.
	fsckMount fsckVerdict = iota
	// fsckReboot: repaired, and e2fsck asks for a reboot before the file
	// system is used; init reboots once (RebootMark), not twice.
	fsckReboot
	// fsckKeep: errors left, or e2fsck failed or did not finish: leave
	// the partition untouched (nothing mounted from it) for a person
	// with e2fsck on another machine, and run on the tmpfs.
	fsckKeep
	// fsckUnchecked: e2fsck is not in the image, so nothing is known
	// against the partition: mount it, with a warning.
	fsckUnchecked
)

func (v fsckVerdict) String() string {
	switch v {
	case fsckMount:
		return "mount"
	case fsckReboot:
		return "reboot"
	case fsckKeep:
		return "keep"
	case fsckUnchecked:
		return "unchecked"
	}
	return fmt.Sprintf("fsckVerdict(%d)", int(v))
}

// judgeFsck turns one run of e2fsck into what init does, with the words
// to say why. code is e2fsck's exit code when runErr is nil; runErr says
// e2fsck did not run to an exit code of its own (missing, killed, timed
// out).
func judgeFsck(code int, runErr error) (fsckVerdict, string) {
	switch {
	case runErr != nil && errors.Is(runErr, fs.ErrNotExist):
		return fsckUnchecked, "e2fsck is not in the image: the data partition is mounted unchecked"
	case runErr != nil:
		return fsckKeep, "e2fsck did not finish (" + runErr.Error() + "): the data partition may be half repaired"
	case code < 0:
		return fsckKeep, fmt.Sprintf("e2fsck ended with exit code %d", code)
	case code&^(fsckCorrected|fsckRebootAsked) != 0:
		return fsckKeep, "e2fsck could not repair the data partition: " + fsckCodeText(code)
	case code&fsckRebootAsked != 0:
		return fsckReboot, "e2fsck repaired the data partition and asks for a reboot"
	case code&fsckCorrected != 0:
		return fsckMount, "e2fsck repaired the data partition"
	}
	return fsckMount, "e2fsck found the data partition clean"
}

// fsckCodeText names the bits of an e2fsck exit code.
func fsckCodeText(code int) string {
	names := []struct {
		bit  int
		text string
	}{
		{fsckCorrected, "errors corrected"},
		{fsckRebootAsked, "reboot asked"},
		{fsckUncorrected, "errors left uncorrected"},
		{fsckOperational, "operational error"},
		{fsckUsage, "usage error"},
		{fsckCancelled, "cancelled"},
		{fsckLibrary, "shared library error"},
	}
	s := fmt.Sprintf("exit code %d", code)
	sep := ": "
	for _, n := range names {
		if code&n.bit != 0 {
			s += sep + n.text
			sep = ", "
		}
	}
	return s
}
