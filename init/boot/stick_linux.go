package boot

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/twinpbx/twinpbx/firmware/update"
)

// updateFromStick is the update stick: a block device (a USB stick, a
// second virtual disk) onto which an update bundle was written raw
// (`dd if=twinpbx.bundle of=/dev/sdX`). A box booted normally from a
// slot applies it (update.Apply: signature, hashes, inactive slot,
// trial) and reboots into the trial. A bundle whose version is already
// the active one, or is the one whose trial failed, is left alone, so a
// stick left in the box does nothing more. A stage that could start no
// slot (stageFailed) takes a stick too: it is the way to repair such a
// box. It returns only when it did not reboot.
func updateFromStick(log *slog.Logger, sp SlotParams, stageFailed bool) {
	if sp.Trial || sp.Slot == update.NoSlot && !stageFailed {
		return
	}
	dev := findStick(update.BoxDisk)
	if dev == "" {
		return
	}
	pub, err := update.LoadPublicKey(update.KeyPath)
	if err != nil {
		log.Error("update stick: no update key in this image", "device", dev, "err", err)
		return
	}
	version, err := stickVersion(dev, pub)
	if err != nil {
		log.Error("update stick: not a bundle for this box", "device", dev, "err", err)
		return
	}
	s, err := update.ReadBootState(update.BoxDisk)
	if err != nil {
		log.Error("update stick: reading the boot state", "err", err)
		return
	}
	switch version {
	case s.Version(s.Active):
		log.Info("update stick: its version is the active one; nothing to do", "device", dev, "version", version)
		return
	case s.Failed:
		log.Warn("update stick: its version failed its trial before; not trying it again", "device", dev, "version", version)
		return
	}
	log.Info("update stick: applying", "device", dev, "version", version)
	res, err := update.Apply(update.BoxDisk, dev, pub, sp.Slot, log)
	if err != nil {
		log.Error("UPDATE REFUSED: the update stick's bundle", "device", dev, "err", err)
		return
	}
	log.Info("update stick: bundle written; rebooting to try it", "slot", res.Slot.String(), "version", res.Version)
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		log.Error("reboot failed", "err", err)
	}
}

// findStick returns the first block device that starts with a bundle's
// magic and is not one of the box's own partitions (the slots hold
// bundles too), or "".
func findStick(d update.DeviceDisk) string {
	ents, err := os.ReadDir(d.SysBlock)
	if err != nil {
		return ""
	}
	for _, e := range ents {
		ue, err := os.ReadFile(filepath.Join(d.SysBlock, e.Name(), "uevent"))
		if err != nil || strings.Contains(string(ue), "\nPARTNAME=twinpbx-") {
			continue
		}
		dev := filepath.Join(d.Dev, e.Name())
		if hasBundleMagic(dev) {
			return dev
		}
	}
	return ""
}

func hasBundleMagic(dev string) bool {
	f, err := os.Open(dev)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 8)
	_, err = f.ReadAt(b, 0)
	return err == nil && update.IsBundle(b)
}

func stickVersion(dev string, pub []byte) (string, error) {
	f, err := os.Open(dev)
	if err != nil {
		return "", err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return "", fmt.Errorf("sizing %s: %w", dev, err)
	}
	b, err := update.Open(f, size, pub)
	if err != nil {
		return "", err
	}
	return b.Manifest.Version, nil
}
