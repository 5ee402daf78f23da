package update

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// syncDrop flushes f to stable storage and drops its cached pages, so
// that what is read next comes from the medium: the buffer cache of a
// block device (BLKFLSBUF), the page cache of a file (fadvise).
func syncDrop(f *os.File) error {
	if err := f.Sync(); err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Mode()&os.ModeDevice != 0 {
		_ = unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0) // best effort: not every device has a cache
		return nil
	}
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	return nil
}

// rereadPartitions asks the kernel to read a disk's partition table
// again after flashing it (best effort).
func rereadPartitions(f *os.File) error {
	return unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0)
}

// devNumber is the "major:minor" of a block device file.
func devNumber(st os.FileInfo) (string, bool) {
	s, ok := st.Sys().(*syscall.Stat_t) // what os.Stat gives, not unix.Stat_t
	if !ok || st.Mode()&os.ModeDevice == 0 {
		return "", false
	}
	return fmtDev(unix.Major(uint64(s.Rdev)), unix.Minor(uint64(s.Rdev))), true
}
