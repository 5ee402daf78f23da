package boot

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Mount is one file system init mounts.
type Mount struct {
	Source, Target, FSType string
	Flags                  uintptr
	Data                   string
}

// DataDir is where the data partition (or its tmpfs stand-in) is mounted.
const DataDir = "/data"

// BaseMounts are the file systems every boot needs, in order: /dev before
// /dev/pts, and /run and /tmp as tmpfs (the initramfs itself is writable,
// but these must not grow it unbounded).
func BaseMounts() []Mount {
	const nodev = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	return []Mount{
		{Source: "proc", Target: "/proc", FSType: "proc", Flags: nodev},
		{Source: "sysfs", Target: "/sys", FSType: "sysfs", Flags: nodev},
		{Source: "devtmpfs", Target: "/dev", FSType: "devtmpfs", Flags: unix.MS_NOSUID, Data: "mode=0755"},
		{Source: "devpts", Target: "/dev/pts", FSType: "devpts", Flags: unix.MS_NOSUID | unix.MS_NOEXEC, Data: "gid=5,mode=0620,ptmxmode=0666"},
		{Source: "tmpfs", Target: "/run", FSType: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: "mode=0755,size=16m"},
		{Source: "tmpfs", Target: "/tmp", FSType: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: "mode=1777,size=32m"},
	}
}

// DataMount is the data partition on dev (ext4), or with dev empty the
// tmpfs that stands in for it.
func DataMount(dev string) Mount {
	if dev == "" {
		return Mount{Source: "tmpfs", Target: DataDir, FSType: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: "mode=0700,size=64m"}
	}
	return Mount{Source: dev, Target: DataDir, FSType: "ext4", Flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOATIME}
}

// mounter is what mountAll needs of the system; tests record the calls.
type mounter interface {
	MkdirAll(path string, perm os.FileMode) error
	Mount(source, target, fstype string, flags uintptr, data string) error
}

type sysMounter struct{}

func (sysMounter) MkdirAll(path string, perm os.FileMode) error { return os.MkdirAll(path, perm) }
func (sysMounter) Mount(source, target, fstype string, flags uintptr, data string) error {
	return unix.Mount(source, target, fstype, flags, data)
}

// mountAll mounts ms in order, creating the targets. A target that is
// already mounted (EBUSY: the kernel mounted devtmpfs itself) is fine.
// It stops at the first failure: later entries may depend on it.
func mountAll(m mounter, ms []Mount) error {
	for _, e := range ms {
		if err := m.MkdirAll(e.Target, 0o755); err != nil {
			return fmt.Errorf("creating mount point %s: %w", e.Target, err)
		}
		err := m.Mount(e.Source, e.Target, e.FSType, e.Flags, e.Data)
		if err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mounting %s (%s) on %s: %w", e.Source, e.FSType, e.Target, err)
		}
	}
	return nil
}
