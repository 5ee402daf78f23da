package boot

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/twinpbx/twinpbx/firmware/update"
)

// MinDataSize is the smallest data partition init uses: below it the
// store, the CDRs and the logs would soon fill it, and init runs on a
// tmpfs instead (and says so).
const MinDataSize = 32 << 20

// Mke2fs is where the image carries e2fsprogs' mke2fs (with its shared
// libraries and /etc/mke2fs.conf), which init runs on a blank data
// partition.
const Mke2fs = "/sbin/mke2fs"

// DataFSOptions are mke2fs's options for the data file system, the same
// whether the image build makes it or init makes it on a blank
// partition: ext4 labelled as the partition, without metadata checksums
// (they need the crc32c module, which the kernel asks a modprobe for
// that the image does not have), 1 % reserved for root.
var DataFSOptions = []string{"-t", "ext4", "-L", update.PartData, "-O", "^metadata_csum", "-m", "1"}

// signature is a run of bytes at an offset that marks a partition as
// holding something.
type signature struct {
	name  string
	off   int64
	magic string
}

// signatures are the marks Probe looks for: file systems, volume
// managers, encryption, swap, partition tables and boot sectors, and our
// own update bundle (a slot or an update stick named as the data
// partition by mistake). ext2/3/4's backup superblocks are looked for
// separately (extBackups).
var signatures = []signature{
	{"ext2/3/4", 0x438, "\x53\xef"},
	{"twinpbx update bundle", 0, update.BundleMagic},
	{"xfs", 0, "XFSB"},
	{"LUKS", 0, "LUKS\xba\xbe"},
	{"LUKS2 (second header)", 0x4000, "SKUL\xba\xbe"},
	{"squashfs", 0, "hsqs"},
	{"btrfs", 0x10040, "_BHRfS_M"},
	{"f2fs", 0x400, "\x10\x20\xf5\xf2"},
	{"swap", 4086, "SWAPSPACE2"},
	{"swap (old)", 4086, "SWAP-SPACE"},
	{"LVM2", 0x218, "LVM2 001"},
	{"Linux RAID (1.1)", 0, "\xfc\x4e\x2b\xa9"},
	{"Linux RAID (1.2)", 4096, "\xfc\x4e\x2b\xa9"},
	{"iso9660", 0x8001, "CD001"},
	{"GPT", 512, "EFI PART"},
	{"NTFS", 3, "NTFS    "},
	{"exFAT", 3, "EXFAT   "},
	// FAT's boot sector, an MBR, and any other boot record.
	{"boot sector (FAT, MBR)", 510, "\x55\xaa"},
}

// extMagic is ext2/3/4's superblock magic, at extMagicOff in a
// superblock.
const (
	extMagic    = 0xef53
	extMagicOff = 0x38
)

// extBackups are the offsets of ext2/3/4's first backup superblocks
// (block groups 1, 3, 5, 7, 9, 25 and 27, where sparse_super keeps
// them) for each block size mke2fs makes, as far as they lie within
// size: a file system whose first superblock was overwritten is still
// there, and e2fsck can restore it from these.
func extBackups(size int64) []int64 {
	var offs []int64
	for _, bs := range []int64{1024, 2048, 4096} {
		perGroup := 8 * bs // blocks per group: one bitmap block's bits
		first := int64(0)  // the first data block
		if bs == 1024 {
			first = 1
		}
		for _, g := range []int64{1, 3, 5, 7, 9, 25, 27} {
			off := (first+g*perGroup)*bs + extMagicOff
			if off+2 <= size {
				offs = append(offs, off)
			}
		}
	}
	return offs
}

// Probe looks at a partition of size bytes for the signature of anything
// it might hold and returns the first one's name, or "" when it finds
// none: the partition is blank and may be formatted. It errs toward
// finding something (two bytes of a boot sector's mark are enough), as a
// wrongly formatted partition loses data while a wrongly kept one only
// raises an alarm. A read error is returned, never taken for blank.
func Probe(r io.ReaderAt, size int64) (string, error) {
	if size < 0 {
		return "", fmt.Errorf("probing the data partition: negative size %d", size)
	}
	for _, s := range signatures {
		ok, err := hasAt(r, size, s.off, []byte(s.magic))
		if err != nil {
			return "", err
		}
		if ok {
			return s.name, nil
		}
	}
	var m [2]byte
	binary.LittleEndian.PutUint16(m[:], extMagic)
	for _, off := range extBackups(size) {
		ok, err := hasAt(r, size, off, m[:])
		if err != nil {
			return "", err
		}
		if ok {
			return fmt.Sprintf("ext2/3/4 (backup superblock at byte %d)", off-extMagicOff), nil
		}
	}
	return "", nil
}

// hasAt reports whether r holds magic at off; a signature past the end
// of the partition is not there.
func hasAt(r io.ReaderAt, size, off int64, magic []byte) (bool, error) {
	if off+int64(len(magic)) > size {
		return false, nil
	}
	b := make([]byte, len(magic))
	if n, err := r.ReadAt(b, off); n < len(b) {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return false, fmt.Errorf("probing the data partition at byte %d: %w", off, err)
	}
	return bytes.Equal(b, magic), nil
}
