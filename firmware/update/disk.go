package update

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// Region is one partition opened for reading and writing.
type Region interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	// Size is the partition's length in bytes.
	Size() int64
	Close() error
}

// Disk opens the box's partitions by name.
type Disk interface {
	Open(name string) (Region, error)
}

// ImageDisk is a disk image file (or a whole disk device) whose
// partitions are found in its GPT: what `twinpbx update --disk` and the
// tests use.
type ImageDisk struct{ Path string }

// Open opens the named partition of the image.
func (d ImageDisk) Open(name string) (Region, error) {
	f, err := os.OpenFile(d.Path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the disk: %w", err)
	}
	parts, err := ReadGPT(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", d.Path, err)
	}
	p, ok := Find(parts, name)
	if !ok {
		f.Close()
		return nil, fmt.Errorf("%s has no partition %s: not a twinpbx disk", d.Path, name)
	}
	return &fileRegion{f: f, off: p.Start, size: p.Size}, nil
}

// DeviceDisk finds the partitions among the block devices the kernel
// knows, by their GPT names (PARTNAME in sysfs): the running box.
type DeviceDisk struct {
	// SysBlock is /sys/class/block; Dev is /dev (changed by tests).
	SysBlock, Dev string
}

// BoxDisk is the disk of the running box.
var BoxDisk = DeviceDisk{SysBlock: "/sys/class/block", Dev: "/dev"}

// Device returns the device file of the partition named name.
func (d DeviceDisk) Device(name string) (string, error) {
	ents, err := os.ReadDir(d.SysBlock)
	if err != nil {
		return "", fmt.Errorf("listing block devices: %w", err)
	}
	for _, e := range ents {
		f, err := os.Open(filepath.Join(d.SysBlock, e.Name(), "uevent"))
		if err != nil {
			continue
		}
		var dev, part string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), "=")
			switch k {
			case "DEVNAME":
				dev = v
			case "PARTNAME":
				part = v
			}
		}
		f.Close()
		if part == name && dev != "" && !strings.Contains(dev, "..") {
			return filepath.Join(d.Dev, dev), nil
		}
	}
	return "", fmt.Errorf("no partition named %s: %w", name, os.ErrNotExist)
}

// Open opens the named partition's device.
func (d DeviceDisk) Open(name string) (Region, error) {
	dev, err := d.Device(name)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("opening partition %s: %w", name, err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("sizing partition %s: %w", name, err)
	}
	return &fileRegion{f: f, size: size}, nil
}

type fileRegion struct {
	f         *os.File
	off, size int64
}

func (r *fileRegion) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= r.size {
		return 0, io.EOF
	}
	if rest := r.size - off; int64(len(p)) > rest {
		n, err := r.f.ReadAt(p[:rest], r.off+off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return r.f.ReadAt(p, r.off+off)
}

func (r *fileRegion) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > r.size {
		return 0, fmt.Errorf("write of %d bytes at %d beyond the partition's %d", len(p), off, r.size)
	}
	return r.f.WriteAt(p, r.off+off)
}

func (r *fileRegion) Sync() error  { return syncDrop(r.f) }
func (r *fileRegion) Size() int64  { return r.size }
func (r *fileRegion) Close() error { return r.f.Close() }

// ReadBootState reads the boot state of disk. A state partition without
// a valid record reads as a box flashed with slot A.
func ReadBootState(d Disk) (State, error) {
	r, err := d.Open(PartState)
	if err != nil {
		return State{}, err
	}
	defer r.Close()
	s, err := ReadState(r)
	if errors.Is(err, ErrNoState) {
		return State{Active: SlotA}, nil
	}
	return s, err
}

// ChangeBootState reads the boot state, applies change and writes the
// result. It returns the state written.
func ChangeBootState(d Disk, change func(State) (State, error)) (State, error) {
	r, err := d.Open(PartState)
	if err != nil {
		return State{}, err
	}
	defer r.Close()
	prev, err := ReadState(r)
	if errors.Is(err, ErrNoState) {
		prev, err = State{Active: SlotA}, nil
	}
	if err != nil {
		return prev, err
	}
	next, err := change(prev)
	if err != nil {
		return prev, err
	}
	return WriteState(r, prev, next)
}

// Result says what Apply did.
type Result struct {
	Slot    Slot
	Version string
	Size    int64
}

// Apply writes the bundle in file into the inactive slot of disk and
// puts it on trial for the next boot. file may also be a block device
// the bundle was written onto (a USB stick). The bundle is verified (signature
// with pub, every part's sha256) before anything is written, and again
// from the slot after writing. running is the slot the box booted from
// (NoSlot when not known); Apply never writes it.
func Apply(d Disk, file string, pub ed25519.PublicKey, running Slot, log *slog.Logger) (Result, error) {
	f, err := os.Open(file)
	if err != nil {
		return Result{}, fmt.Errorf("opening the bundle: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Result{}, fmt.Errorf("opening the bundle: %w", err)
	}
	size := st.Size()
	device := st.Mode()&os.ModeDevice != 0
	if device {
		// A bundle written raw onto a USB stick: the device is longer.
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			return Result{}, fmt.Errorf("sizing the bundle's device: %w", err)
		}
	}
	b, err := OpenVerified(f, size, pub)
	if err != nil {
		return Result{}, fmt.Errorf("checking the bundle: %w", err)
	}
	if b.Size != size && !device {
		return Result{}, fmt.Errorf("checking the bundle: %d bytes after its end: not a bundle as signed", size-b.Size)
	}
	res := Result{Version: b.Manifest.Version, Size: b.Size}

	s, err := ReadBootState(d)
	if err != nil {
		return res, err
	}
	res.Slot = s.Active.Other()
	if res.Slot == running {
		return res, fmt.Errorf("slot %v is running (booted on trial or as a fallback) but is not the active one: reboot first", running)
	}
	slot, err := d.Open(SlotPart(res.Slot))
	if err != nil {
		return res, err
	}
	defer slot.Close()
	if slot.Size() < b.Size {
		return res, fmt.Errorf("bundle of %d bytes does not fit slot %v (%d bytes)", b.Size, res.Slot, slot.Size())
	}
	// From here until the trial is set the slot is not bootable: a power
	// cut leaves the box on its active slot.
	if _, err := ChangeBootState(d, func(s State) (State, error) { return s.BeginWrite(res.Slot) }); err != nil {
		return res, err
	}
	log.Info("writing the bundle", "version", res.Version, "slot", res.Slot.String(), "bytes", b.Size)
	if _, err := io.Copy(io.NewOffsetWriter(slot, 0), io.NewSectionReader(f, 0, b.Size)); err != nil {
		return res, fmt.Errorf("writing slot %v: %w", res.Slot, err)
	}
	if err := slot.Sync(); err != nil {
		return res, fmt.Errorf("syncing slot %v: %w", res.Slot, err)
	}
	back, err := OpenVerified(slot, slot.Size(), pub)
	if err != nil {
		return res, fmt.Errorf("reading slot %v back: %w", res.Slot, err)
	}
	if back.Manifest.Version != res.Version {
		return res, fmt.Errorf("reading slot %v back: version %q", res.Slot, back.Manifest.Version)
	}
	if _, err := ChangeBootState(d, func(s State) (State, error) { return s.StartTrial(res.Slot, res.Version) }); err != nil {
		return res, err
	}
	log.Info("bundle written: the next boot tries it once", "version", res.Version, "slot", res.Slot.String())
	return res, nil
}

// OpenSlot opens the bundle in slot s of disk; the caller closes the
// region. The manifest is checked, not the parts (Extract checks them).
func OpenSlot(d Disk, s Slot, pub ed25519.PublicKey) (*Bundle, Region, error) {
	r, err := d.Open(SlotPart(s))
	if err != nil {
		return nil, nil, err
	}
	b, err := Open(r, r.Size(), pub)
	if err != nil {
		r.Close()
		return nil, nil, fmt.Errorf("slot %v: %w", s, err)
	}
	return b, r, nil
}

// CreateImage makes a sparse disk image file at path with the box's
// layout (Layout) and an empty boot state; slots and data are zeros.
func CreateImage(path string, espSize, slotSize, dataSize int64, seed string) error {
	parts, size := Layout(espSize, slotSize, dataSize)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("creating the disk image: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("creating the disk image: %w", err)
	}
	if err := WriteGPT(f, size, parts, seed); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Install writes a verified bundle into slot s of a disk that is not
// running (a new image) and makes s the active slot.
func Install(d Disk, s Slot, bundle []byte, pub ed25519.PublicKey) error {
	b, err := OpenVerified(bytes.NewReader(bundle), int64(len(bundle)), pub)
	if err != nil {
		return fmt.Errorf("installing a bundle: %w", err)
	}
	r, err := d.Open(SlotPart(s))
	if err != nil {
		return err
	}
	defer r.Close()
	if int64(len(bundle)) > r.Size() {
		return fmt.Errorf("bundle of %d bytes does not fit slot %v (%d bytes)", len(bundle), s, r.Size())
	}
	if _, err := r.WriteAt(bundle, 0); err != nil {
		return fmt.Errorf("writing slot %v: %w", s, err)
	}
	if err := r.Sync(); err != nil {
		return fmt.Errorf("writing slot %v: %w", s, err)
	}
	_, err = ChangeBootState(d, func(st State) (State, error) {
		st.Active, st.Trial, st.TriesLeft = s, NoSlot, 0
		st.Versions[s.index()] = b.Manifest.Version
		return st, nil
	})
	return err
}
