package rollout

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/twinpbx/twinpbx/firmware/update"
)

// SlotBox is the box's own firmware: the A/B slots of its disk, the
// update key of its image, and init's reboot.
type SlotBox struct {
	Disk update.Disk
	// KeyPath is the public key bundles must be signed with.
	KeyPath string
	Logger  *slog.Logger
	// Running is the slot this system started from (update.RunningSlot).
	Running update.Slot
	// RebootFunc reboots the box (nil: update.RebootBox).
	RebootFunc func() error

	// applying serialises Apply: the standby's follower (a bundle its
	// active offers) and a roll started on the standby itself may both
	// write the inactive slot; the second then finds the first's trial
	// pending and is refused.
	applying sync.Mutex
}

// NewSlotBox is the running box: its disk, the image's key and slot.
func NewSlotBox(log *slog.Logger) *SlotBox {
	return &SlotBox{Disk: update.BoxDisk, KeyPath: update.KeyPath, Logger: log, Running: update.RunningSlot()}
}

// Firmware is the version in the slot this system started from.
func (b *SlotBox) Firmware() string {
	if b.Running == update.NoSlot {
		return ""
	}
	s, err := update.ReadBootState(b.Disk)
	if err != nil {
		return ""
	}
	return s.Version(b.Running)
}

// LastFailed is the version of the last trial that did not commit.
func (b *SlotBox) LastFailed() string {
	s, err := update.ReadBootState(b.Disk)
	if err != nil {
		return ""
	}
	return s.Failed
}

func (b *SlotBox) key() (ed25519.PublicKey, error) { return update.LoadPublicKey(b.KeyPath) }

// Check verifies the bundle's signature and parts and hashes it. path is
// a bundle file, or a block device a bundle was written onto raw (an
// update stick: the device may be longer than the bundle).
func (b *SlotBox) Check(path string) (Bundle, error) {
	pub, err := b.key()
	if err != nil {
		return Bundle{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return Bundle{}, fmt.Errorf("opening the bundle: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Bundle{}, fmt.Errorf("opening the bundle: %w", err)
	}
	size, device := st.Size(), st.Mode()&os.ModeDevice != 0
	switch {
	case device:
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			return Bundle{}, fmt.Errorf("sizing the bundle's device: %w", err)
		}
	case !st.Mode().IsRegular():
		return Bundle{}, fmt.Errorf("%s is neither a bundle file nor a device", path)
	}
	bu, err := update.OpenVerified(f, size, pub)
	if err != nil {
		return Bundle{}, err
	}
	if bu.Size != size && !device {
		return Bundle{}, fmt.Errorf("%d bytes after the bundle's end: not a bundle as signed", size-bu.Size)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, bu.Size)); err != nil {
		return Bundle{}, fmt.Errorf("reading the bundle: %w", err)
	}
	return Bundle{Version: bu.Manifest.Version, Size: bu.Size, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// Apply writes the bundle into the inactive slot and puts it on trial.
func (b *SlotBox) Apply(path string) error {
	b.applying.Lock()
	defer b.applying.Unlock()
	pub, err := b.key()
	if err != nil {
		return err
	}
	log := b.Logger
	if log == nil {
		log = slog.Default()
	}
	_, err = update.Apply(b.Disk, path, pub, b.Running, log)
	return err
}

// Reboot reboots the box through init.
func (b *SlotBox) Reboot() error {
	if b.RebootFunc != nil {
		return b.RebootFunc()
	}
	return update.RebootBox()
}
