package build

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/twinpbx/twinpbx/firmware/update"
	"github.com/twinpbx/twinpbx/init/boot"
)

// Output file names of the disk build, next to the kernel and initramfs.
const (
	Bundle = "twinpbx.bundle" // the update bundle of this build
	Disk   = "disk.img"       // the disk image to flash (sparse)
)

// Default partition sizes of the disk image. A slot holds one bundle
// (about 16 MB today) with room to grow; the data partition is the
// store, CDRs and logs.
const (
	DefaultSlotSize = 64 << 20
	DefaultDataSize = 128 << 20
)

// DiskOptions say how to make the bundle and the disk image from a built
// image folder.
type DiskOptions struct {
	// Image is the folder Build wrote (bzImage, initramfs.cpio.xz).
	Image string
	// Out receives the bundle and the disk image; default Image.
	Out string
	// Version names the firmware in the bundle and the boot state.
	Version string
	// Key signs the bundle; the image must hold its public key
	// (Options.UpdateKey) for the box to accept it.
	Key ed25519.PrivateKey
	// SlotSize and DataSize default to DefaultSlotSize and DefaultDataSize.
	SlotSize, DataSize int64
	// StageCmdline is the kernel command line of the boot stage in the
	// EFI system partition (the board's firmware starts it); the slots'
	// kernels get it too, with the slot added.
	StageCmdline string
	// NoESP leaves the EFI system partition out (the stage is started
	// from outside: QEMU -kernel, a network boot).
	NoESP bool
	// NoDisk makes only the bundle.
	NoDisk bool
	// SecureBoot, when set, signs the boot stage and the bundle's kernel
	// for UEFI Secure Boot (see SignStage, SignKernel); without it both
	// are as before: the stage unsigned, the kernel Debian's.
	SecureBoot *SecureBoot
}

// DiskResult says what BuildDisk made.
type DiskResult struct {
	Bundle, Disk File
	// Stage is the boot stage (BOOTX64.EFI) on the EFI system partition;
	// StageSigners its signatures (none: not signed for Secure Boot) and
	// KernelSigners those of the bundle's kernel when SecureBoot signed it.
	Stage                       File
	StageSigners, KernelSigners []Signer
	// SigningTime is the time in those signatures (zero: not signed).
	SigningTime time.Time
	// DiskAllocated is what the sparse disk image takes on the host's disk.
	DiskAllocated int64
	Duration      time.Duration
}

// MakeBundle reads the kernel (bzImage: kexec_file_load on x86 takes
// nothing else) and the initramfs of an image folder and returns them as
// a bundle of version signed with key.
func MakeBundle(dir, version string, key ed25519.PrivateKey) ([]byte, error) {
	return makeBundle(filepath.Join(dir, BzImage), filepath.Join(dir, Initramfs), version, key)
}

// makeBundle is MakeBundle of a kernel and an initramfs file.
func makeBundle(kernel, initramfs, version string, key ed25519.PrivateKey) ([]byte, error) {
	var parts []update.Part
	for _, p := range []struct{ name, file string }{{update.PartKernel, kernel}, {update.PartInitramfs, initramfs}} {
		b, err := os.ReadFile(p.file)
		if err != nil {
			return nil, fmt.Errorf("making the bundle: %w", err)
		}
		parts = append(parts, update.Part{Name: p.name, Data: b})
	}
	var out bytes.Buffer
	if err := update.WriteBundle(&out, key, version, parts); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// BuildDisk writes the bundle and, unless NoDisk, the disk image: a GPT
// with the boot state record, slot A holding the bundle (active), an
// empty slot B and an empty ext4 data partition (made by the host's
// mkfs.ext4 with a fixed UUID, hash seed and time, so the image is
// reproducible).
func BuildDisk(ctx context.Context, o DiskOptions) (DiskResult, error) {
	start := time.Now()
	var res DiskResult
	if o.SlotSize == 0 {
		o.SlotSize = DefaultSlotSize
	}
	if o.DataSize == 0 {
		o.DataSize = DefaultDataSize
	}
	if o.Out == "" {
		o.Out = o.Image
	}
	if o.SecureBoot != nil {
		sb := *o.SecureBoot
		var err error
		if sb.Time.IsZero() {
			if sb.Time, err = SigningTime(filepath.Join(o.Image, BzImage)); err != nil {
				return res, err
			}
		}
		if sb.Time, err = sb.SignedTime(); err != nil {
			return res, fmt.Errorf("signing for Secure Boot: %w", err)
		}
		o.SecureBoot, res.SigningTime = &sb, sb.Time
	}
	kernel, err := secureBootKernel(ctx, o, &res)
	if err != nil {
		return res, err
	}
	bundle, err := makeBundle(kernel, filepath.Join(o.Image, Initramfs), o.Version, o.Key)
	if err != nil {
		return res, err
	}
	if err := writeFile(filepath.Join(o.Out, Bundle), bundle); err != nil {
		return res, err
	}
	if res.Bundle, err = describe(filepath.Join(o.Out, Bundle)); err != nil {
		return res, err
	}
	if o.NoDisk {
		res.Duration = time.Since(start)
		return res, nil
	}
	if int64(len(bundle)) > o.SlotSize {
		return res, fmt.Errorf("the bundle (%d bytes) does not fit a slot of %d bytes", len(bundle), o.SlotSize)
	}

	final := filepath.Join(o.Out, Disk)
	tmp := final + ".tmp"
	defer os.Remove(tmp)
	espSize := int64(DefaultESPSize)
	if o.NoESP {
		espSize = 0
	}
	if err := update.CreateImage(tmp, espSize, o.SlotSize, o.DataSize, "twinpbx"); err != nil {
		return res, err
	}
	d := update.ImageDisk{Path: tmp}
	if !o.NoESP {
		uki := filepath.Join(o.Out, UKI)
		if err := MakeUKI(ctx, o.Image, o.StageCmdline, uki); err != nil {
			return res, err
		}
		if err := secureBootStage(ctx, o, uki, &res); err != nil {
			return res, err
		}
		fat, err := espFS(ctx, uki, espSize, filepath.Dir(tmp))
		if err != nil {
			return res, err
		}
		r, err := d.Open(update.PartESP)
		if err != nil {
			return res, err
		}
		err = writeSparse(r, fat)
		r.Close()
		if err != nil {
			return res, fmt.Errorf("writing the EFI system partition: %w", err)
		}
	}
	pub, _ := o.Key.Public().(ed25519.PublicKey)
	if err := update.Install(d, update.SlotA, bundle, pub); err != nil {
		return res, err
	}
	if err := dataFS(ctx, d, o.DataSize, filepath.Dir(tmp)); err != nil {
		return res, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return res, fmt.Errorf("writing the disk image: %w", err)
	}
	if res.Disk, err = describe(final); err != nil {
		return res, err
	}
	if st, err := os.Stat(final); err == nil {
		res.DiskAllocated = allocated(st)
	}
	res.Duration = time.Since(start)
	return res, nil
}

// dataFS makes an empty ext4 file system for the data partition in a
// scratch file and copies it into the partition.
func dataFS(ctx context.Context, d update.ImageDisk, size int64, scratch string) error {
	fsFile := filepath.Join(scratch, ".data.ext4")
	defer os.Remove(fsFile)
	const uuid = "7e1bbb0c-2b5a-4c47-9a57-6d2a3d7b7c01"
	// The options init uses on a blank partition, and fixed values for
	// what mke2fs would draw at random.
	args := append(append([]string{"-q", "-F"}, boot.DataFSOptions...), "-U", uuid,
		"-E", "hash_seed="+uuid+",root_owner=0:0,lazy_itable_init=0,nodiscard",
		fsFile, fmt.Sprintf("%dk", size>>10))
	cmd := exec.CommandContext(ctx, "mke2fs", args...)
	cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("making the data file system (mke2fs, scripts/install-deps.sh vm): %w\n%s", err, out)
	}
	fs, err := os.ReadFile(fsFile)
	if err != nil {
		return fmt.Errorf("making the data file system: %w", err)
	}
	r, err := d.Open(update.PartData)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := writeSparse(r, fs); err != nil {
		return fmt.Errorf("writing the data file system: %w", err)
	}
	return nil
}

// allocated is the space a file takes on disk (less than its size when
// sparse).
func allocated(st os.FileInfo) int64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Blocks * 512
	}
	return st.Size()
}
