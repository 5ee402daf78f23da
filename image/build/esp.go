package build

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/twinpbx/twinpbx/firmware/update"
)

// The boot stage on a real board: the board's UEFI firmware starts
// \EFI\BOOT\BOOTX64.EFI from the disk's EFI system partition, a unified
// kernel image (systemd's EFI stub with the kernel, the initramfs and the
// command line as sections). That is the image's own kernel and
// initramfs, whose init then starts a slot with kexec.

// EFIStub is the stub the unified kernel image is made from (Debian's
// systemd-boot-efi).
const EFIStub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"

// DefaultESPSize is the EFI system partition's size: the unified kernel
// image (about 18 MB) and room for a second one.
const DefaultESPSize = 64 << 20

// UKI is the unified kernel image's file name in the image folder.
const UKI = "BOOTX64.EFI"

// MakeUKI writes the unified kernel image of dir's bzImage and initramfs
// with cmdline to out, with objcopy, and zeroes its PE time stamp so that
// the same inputs give the same bytes.
func MakeUKI(ctx context.Context, dir, cmdline, out string) error {
	scratch, err := os.MkdirTemp(filepath.Dir(out), ".uki-")
	if err != nil {
		return fmt.Errorf("making the unified kernel image: %w", err)
	}
	defer os.RemoveAll(scratch)
	cl := filepath.Join(scratch, "cmdline")
	if err := os.WriteFile(cl, []byte(strings.TrimSpace(cmdline)+"\x00"), 0o644); err != nil {
		return fmt.Errorf("making the unified kernel image: %w", err)
	}
	tmp := filepath.Join(scratch, UKI)
	// Section addresses as systemd's documentation gives them; the
	// kernel (8 MB) fits below the initramfs's 16 MB later.
	cmd := exec.CommandContext(ctx, "objcopy",
		"--add-section", ".cmdline="+cl, "--change-section-vma", ".cmdline=0x30000",
		"--add-section", ".linux="+filepath.Join(dir, BzImage), "--change-section-vma", ".linux=0x2000000",
		"--add-section", ".initrd="+filepath.Join(dir, Initramfs), "--change-section-vma", ".initrd=0x3000000",
		EFIStub, tmp)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("making the unified kernel image (objcopy, %s: scripts/install-deps.sh vm): %w\n%s", EFIStub, err, b)
	}
	b, err := os.ReadFile(tmp)
	if err != nil {
		return fmt.Errorf("making the unified kernel image: %w", err)
	}
	if err := zeroPETimestamp(b); err != nil {
		return fmt.Errorf("making the unified kernel image: %w", err)
	}
	return writeFile(out, b)
}

// zeroPETimestamp clears the COFF header's TimeDateStamp, which objcopy
// sets to the time of the build, and computes the optional header's
// CheckSum again: objcopy's covers the timestamp, so it too would differ
// between builds.
func zeroPETimestamp(b []byte) error {
	if len(b) < 0x40 || string(b[:2]) != "MZ" {
		return errors.New("not a PE file")
	}
	pe := int(binary.LittleEndian.Uint32(b[0x3c:]))
	sum := pe + 4 + 20 + 64 // signature, COFF header, optional header's CheckSum
	if pe < 0 || sum+4 > len(b) || string(b[pe:pe+4]) != "PE\x00\x00" {
		return errors.New("not a PE file")
	}
	binary.LittleEndian.PutUint32(b[pe+8:], 0)
	binary.LittleEndian.PutUint32(b[sum:], peChecksum(b, sum))
	return nil
}

// peChecksum is the PE image checksum: the file's 16-bit words summed
// with end-around carry, the CheckSum field at at counted as zero, plus
// the file's length.
func peChecksum(b []byte, at int) uint32 {
	var s uint32
	for i := 0; i < len(b); i += 2 {
		if i >= at && i < at+4 {
			continue
		}
		w := uint32(b[i])
		if i+1 < len(b) {
			w |= uint32(b[i+1]) << 8
		}
		s += w
		s = (s & 0xffff) + (s >> 16)
	}
	return (s & 0xffff) + uint32(len(b))
}

// espFS makes a FAT file system of size holding uki as
// \EFI\BOOT\BOOTX64.EFI, with mkfs.vfat and mtools, reproducibly (fixed
// volume id, times from SOURCE_DATE_EPOCH), and returns its bytes.
func espFS(ctx context.Context, uki string, size int64, scratch string) ([]byte, error) {
	img := filepath.Join(scratch, ".esp.fat")
	defer os.Remove(img)
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		return nil, fmt.Errorf("making the EFI system partition: %w", err)
	}
	if err := os.Truncate(img, size); err != nil {
		return nil, fmt.Errorf("making the EFI system partition: %w", err)
	}
	epoch := time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := os.Chtimes(uki, epoch, epoch); err != nil {
		return nil, fmt.Errorf("making the EFI system partition: %w", err)
	}
	env := append(os.Environ(), fmt.Sprintf("SOURCE_DATE_EPOCH=%d", epoch.Unix()), "MTOOLS_SKIP_CHECK=1")
	for _, args := range [][]string{
		{"mkfs.vfat", "-F", "32", "-n", "TWINPBX", "--invariant", img},
		{"mmd", "-i", img, "::/EFI", "::/EFI/BOOT"},
		{"mcopy", "-m", "-i", img, uki, "::/EFI/BOOT/" + UKI},
	} {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = env
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("making the EFI system partition (%s: scripts/install-deps.sh vm): %w\n%s", args[0], err, b)
		}
	}
	b, err := os.ReadFile(img)
	if err != nil {
		return nil, fmt.Errorf("making the EFI system partition: %w", err)
	}
	return b, nil
}

// writeSparse writes b at the start of the partition, skipping blocks of
// zeros (the image file stays sparse), and syncs.
func writeSparse(r update.Region, b []byte) error {
	if int64(len(b)) > r.Size() {
		return fmt.Errorf("%d bytes do not fit a partition of %d", len(b), r.Size())
	}
	const blk = 64 << 10
	zero := make([]byte, blk)
	for off := 0; off < len(b); off += blk {
		chunk := b[off:min(off+blk, len(b))]
		if bytes.Equal(chunk, zero[:len(chunk)]) {
			continue
		}
		if _, err := r.WriteAt(chunk, int64(off)); err != nil {
			return err
		}
	}
	return r.Sync()
}
