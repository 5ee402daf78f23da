package boot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unsafe"

	"github.com/u-root/u-root/pkg/mount/gpt"
	"golang.org/x/sys/unix"

	"github.com/twinpbx/twinpbx/firmware/update"
)

// Linux's ioctls for growing: BLKPG (_IO(0x12, 105)) tells the kernel a
// partition's new size while the disk is in use (BLKRRPART would need
// every partition closed); EXT4_IOC_RESIZE_FS (_IOW('f', 16, __u64))
// grows a mounted ext4 to a block count, as resize2fs does on a mounted
// file system.
const (
	ioctlBLKPG        = 0x1269
	ioctlExt4ResizeFS = 0x40086610
)

// growPart grows the data partition dev (a partition of a box's disk,
// found through sysfs) to the end of its disk, and returns its size
// before and after. A dev that is a whole disk, or a partition of a
// disk not laid out as a box's disk, is left as it is (ErrNotOurs).
func growPart(sysBlock, dev string) (before, after int64, err error) {
	real, err := filepath.EvalSymlinks(dev)
	if err != nil {
		return 0, 0, fmt.Errorf("growing the data partition: %w", err)
	}
	name := filepath.Base(real)
	sys, err := filepath.EvalSymlinks(filepath.Join(sysBlock, name))
	if err != nil {
		return 0, 0, fmt.Errorf("growing the data partition: %w", err)
	}
	pno, err := readSysInt(filepath.Join(sys, "partition"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, fmt.Errorf("%w: %s is a whole disk, not a partition", ErrNotOurs, dev)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("growing the data partition: %w", err)
	}
	startSectors, err := readSysInt(filepath.Join(sys, "start"))
	if err != nil {
		return 0, 0, fmt.Errorf("growing the data partition: %w", err)
	}
	// sysfs counts in 512-byte sectors whatever the disk's.
	start := startSectors * 512
	disk := filepath.Join(filepath.Dir(real), filepath.Base(filepath.Dir(sys)))
	f, err := os.OpenFile(disk, os.O_RDWR|os.O_SYNC, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("growing the data partition: opening its disk: %w", err)
	}
	defer f.Close()
	diskSize, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, 0, fmt.Errorf("growing the data partition: sizing its disk %s: %w", disk, err)
	}
	if ss, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET); err == nil && ss != update.SectorSize {
		return 0, 0, fmt.Errorf("%w: %s has %d-byte sectors, the GPT is written for %d", ErrNotOurs, disk, ss, update.SectorSize)
	}
	before, after, err = growGPT(f, start, diskSize)
	if err != nil || after == before {
		return before, after, err
	}
	arg := unix.BlkpgPartition{Start: start, Length: after, Pno: int32(pno)}
	ioc := unix.BlkpgIoctlArg{Op: unix.BLKPG_RESIZE_PARTITION, Datalen: int32(unsafe.Sizeof(arg)), Data: (*byte)(unsafe.Pointer(&arg))}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), ioctlBLKPG, uintptr(unsafe.Pointer(&ioc))); errno != 0 {
		return before, before, fmt.Errorf("growing the data partition: the GPT says %d bytes, telling the kernel failed (it sees the new size at the next boot): %w", after, errno)
	}
	return before, after, nil
}

// growGPT grows the GPT entry of the data partition starting at byte
// start on the disk d of diskSize bytes, as planGrow decides: the
// backup GPT moves to the disk's end first (even when the partition
// cannot grow) (update.FitGPT, as `twinpbx
// flash` does for a larger disk), then u-root's GPT package rewrites
// both copies with the entry's new end and their checksums. It returns
// the partition's size before and after.
func growGPT(d interface {
	io.ReaderAt
	io.WriterAt
}, start, diskSize int64) (before, after int64, err error) {
	parts, err := update.ReadGPT(d)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %v", ErrNotOurs, err)
	}
	data, _ := update.Find(parts, update.PartData)
	size, err := planGrow(parts, start, diskSize)
	if err != nil {
		return data.Size, data.Size, err
	}
	// A no-op when the backup GPT is already at the disk's end.
	if err := update.FitGPT(d, diskSize); err != nil {
		return data.Size, data.Size, fmt.Errorf("growing the data partition: moving the backup GPT to the disk's end: %w", err)
	}
	if size == data.Size {
		return data.Size, data.Size, nil
	}
	pt, err := gpt.New(d)
	if err != nil {
		return data.Size, data.Size, fmt.Errorf("growing the data partition: reading the GPT again: %w", err)
	}
	var name gpt.PartName
	copy(name[:], utf16le(update.PartData))
	n := 0
	for _, g := range []*gpt.GPT{pt.Primary, pt.Backup} {
		for i := range g.Parts {
			p := &g.Parts[i]
			if int64(p.FirstLBA)*update.SectorSize == start && p.Name == name {
				p.LastLBA = uint64((start+size)/update.SectorSize - 1)
				n++
			}
		}
	}
	if n != 2 {
		return data.Size, data.Size, fmt.Errorf("growing the data partition: found its entry %d times in the two GPT copies, want 2", n)
	}
	if err := gpt.Write(d, pt); err != nil {
		return data.Size, data.Size, fmt.Errorf("growing the data partition: writing the GPT: %w", err)
	}
	parts, err = update.ReadGPT(d)
	if err != nil {
		return data.Size, data.Size, fmt.Errorf("growing the data partition: the GPT written does not read back: %w", err)
	}
	if got, _ := update.Find(parts, update.PartData); got.Size != size || got.Start != start {
		return data.Size, data.Size, fmt.Errorf("growing the data partition: the GPT reads back bytes %d+%d, want %d+%d", got.Start, got.Size, start, size)
	}
	return data.Size, size, nil
}

// utf16le is s as a GPT entry's name holds it (without the padding).
func utf16le(s string) []byte {
	var b []byte
	for _, c := range utf16.Encode([]rune(s)) {
		b = append(b, byte(c), byte(c>>8))
	}
	return b
}

func readSysInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// superOf reads the ext4 superblock of dev.
func superOf(dev string) (extSuper, error) {
	f, err := os.Open(dev)
	if err != nil {
		return extSuper{}, err
	}
	defer f.Close()
	return readExtSuper(f)
}

// resizeFS grows the ext4 file system mounted on dir to blocks blocks.
func resizeFS(ctx context.Context, dir string, blocks int64) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("growing the data file system: %w", err)
	}
	n := uint64(blocks)
	done := make(chan unix.Errno, 1)
	// The goroutine owns f: closed only once the ioctl returned, so a
	// timeout below never frees the descriptor under a resize still to
	// start (its number could be reused by then).
	go func() {
		defer f.Close()
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), ioctlExt4ResizeFS, uintptr(unsafe.Pointer(&n)))
		done <- errno
	}()
	select {
	case errno := <-done:
		if errno != 0 {
			return fmt.Errorf("growing the data file system to %d blocks (EXT4_IOC_RESIZE_FS): %w", blocks, errno)
		}
		return nil
	case <-ctx.Done():
		// The kernel finishes (or stops) the resize by itself; the box
		// goes on with the file system as large as it got.
		return fmt.Errorf("growing the data file system: %w", ctx.Err())
	}
}

// growData is the growing step of the data partition for checkData and
// formatData: the partition first, before the file system is made or
// mounted. A disk that is not a box's disk is said once, quietly.
func growData(log *slog.Logger, ops dataOps, dev string) {
	start := time.Now()
	before, after, err := ops.growPart(dev)
	switch {
	case errors.Is(err, ErrNotOurs):
		log.Info("data partition not grown: not a partition of a box's disk", "device", dev, "why", err)
	case err != nil:
		log.Warn("data partition not grown", "device", dev, "err", err)
	case after > before:
		log.Warn("data partition grown to the end of the disk", "device", dev, "from_mib", before>>20, "to_mib", after>>20, "took", time.Since(start).Round(time.Millisecond))
	}
}

// growFS grows the mounted data file system to fill its partition of
// partSize bytes, sb being its superblock as read before the mount.
func growFS(ctx context.Context, log *slog.Logger, ops dataOps, dev string, sb extSuper, partSize int64) {
	n := fsGrowBlocks(sb, partSize)
	if n == 0 {
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := ops.resize(ctx, n); err != nil {
		log.Warn("data file system not grown; it keeps its size", "device", dev, "err", err)
		return
	}
	log.Warn("data file system grown to fill its partition", "device", dev,
		"from_mib", sb.Blocks*sb.BlockSize>>20, "to_mib", n*sb.BlockSize>>20, "took", time.Since(start).Round(time.Millisecond))
}
