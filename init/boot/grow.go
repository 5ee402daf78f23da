package boot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/twinpbx/twinpbx/firmware/update"
)

// Growing the data partition to fill the disk: a box's disk is flashed
// with an image whose data partition is small (128 MiB), and may later
// be replaced by a larger one. Init grows the partition's GPT entry to
// the end of the disk (it is the layout's last partition) and then the
// ext4 file system on it, online, with the kernel's EXT4_IOC_RESIZE_FS.

// growAlign is the alignment of the grown partition's end (its start is
// aligned the same by update.Layout).
const growAlign = 1 << 20

// gptTail is what the backup GPT takes at the end of a disk: its 32
// sectors of entries and its header.
const gptTail = 33 * update.SectorSize

// ErrNotOurs means the disk or the partition is not laid out as a box's
// disk: init leaves it as it is.
var ErrNotOurs = errors.New("not a twinpbx disk layout")

// planGrow decides how large the data partition can be on a disk of
// diskSize bytes holding parts: to the last 1 MiB boundary before the
// backup GPT. It returns the new size in bytes, or the partition's own
// size when there is nothing to gain. It refuses (ErrNotOurs) unless
// the disk is a box's disk (it has the boot state partition), the data
// partition is the Linux data partition named update.PartData at start
// (its start as the kernel reports it, to be sure it is the partition
// being mounted), and no partition lies after it.
func planGrow(parts []update.Partition, start, diskSize int64) (int64, error) {
	if _, ok := update.Find(parts, update.PartState); !ok {
		return 0, fmt.Errorf("%w: no %s partition", ErrNotOurs, update.PartState)
	}
	data, ok := update.Find(parts, update.PartData)
	switch {
	case !ok:
		return 0, fmt.Errorf("%w: no %s partition", ErrNotOurs, update.PartData)
	case data.Start != start:
		return 0, fmt.Errorf("%w: %s starts at byte %d in the GPT, the kernel's partition at %d", ErrNotOurs, update.PartData, data.Start, start)
	case data.Type != update.TypeLinuxData:
		return 0, fmt.Errorf("%w: %s is not of the Linux data type", ErrNotOurs, update.PartData)
	case data.Start <= 0 || data.Size <= 0:
		return 0, fmt.Errorf("%w: %s spans bytes %d+%d", ErrNotOurs, update.PartData, data.Start, data.Size)
	}
	end := data.Start + data.Size
	for _, p := range parts {
		if p.Name == data.Name {
			continue
		}
		if p.Start+p.Size > data.Start && p.Start < end {
			return 0, fmt.Errorf("%w: %s overlaps %s", ErrNotOurs, p.Name, data.Name)
		}
		if p.Start >= end {
			return 0, fmt.Errorf("%w: %s lies after %s", ErrNotOurs, p.Name, data.Name)
		}
	}
	if end+gptTail > diskSize {
		return 0, fmt.Errorf("%w: %s ends at byte %d, past the disk's usable end (%d bytes)", ErrNotOurs, data.Name, end, diskSize)
	}
	newEnd := (diskSize - gptTail) / growAlign * growAlign
	if newEnd <= end {
		return data.Size, nil
	}
	return newEnd - data.Start, nil
}

// extSuper is what growing needs of an ext2/3/4 superblock.
type extSuper struct {
	BlockSize int64
	Blocks    int64
}

// readExtSuper reads the primary superblock of the ext2/3/4 file system
// on r.
func readExtSuper(r io.ReaderAt) (extSuper, error) {
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, 1024); err != nil {
		return extSuper{}, fmt.Errorf("reading the ext4 superblock: %w", err)
	}
	if binary.LittleEndian.Uint16(sb[extMagicOff:]) != extMagic {
		return extSuper{}, errors.New("reading the ext4 superblock: no ext2/3/4 magic")
	}
	logBS := binary.LittleEndian.Uint32(sb[0x18:])
	if logBS > 6 { // 1 KiB << 6 = 64 KiB, the largest block size
		return extSuper{}, fmt.Errorf("reading the ext4 superblock: block size 1 KiB << %d", logBS)
	}
	blocks := int64(binary.LittleEndian.Uint32(sb[0x04:]))
	const incompat64bit = 0x80
	if binary.LittleEndian.Uint32(sb[0x60:])&incompat64bit != 0 {
		hi := int64(binary.LittleEndian.Uint32(sb[0x150:]))
		if hi >= 1<<20 { // 2^52 blocks: past any disk
			return extSuper{}, fmt.Errorf("reading the ext4 superblock: %d<<32 blocks", hi)
		}
		blocks |= hi << 32
	}
	if blocks == 0 {
		return extSuper{}, errors.New("reading the ext4 superblock: no blocks")
	}
	return extSuper{BlockSize: 1024 << logBS, Blocks: blocks}, nil
}

// fsGrowBlocks is the block count to resize the file system sb to on a
// partition of partSize bytes, or 0 when it already fills it (or the
// partition is smaller, which growing never does).
func fsGrowBlocks(sb extSuper, partSize int64) int64 {
	n := partSize / sb.BlockSize
	if n <= sb.Blocks {
		return 0
	}
	return n
}
