package boot

import (
	"fmt"
	"io"
	"log/slog"
	"os"

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
	dev := update.BoxDisk.Stick()
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
