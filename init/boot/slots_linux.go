package boot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/twinpbx/twinpbx/firmware/control"
	"github.com/twinpbx/twinpbx/firmware/update"
)

// bootSlot is the boot stage. When this kernel was not itself started
// from a slot and the box's disk has a boot state partition, it chooses
// the slot (update.Choose), records the choice (a trial's try is counted
// before it runs), and starts the slot's kernel with kexec. It returns
// only when it started nothing: no disk, a stage turned off, or an
// error; the stage's own kernel and initramfs, a complete firmware,
// then boot on.
func bootSlot(log *slog.Logger, cmdline string, sp SlotParams) error {
	if sp.Slot != update.NoSlot || sp.NoStage {
		return nil
	}
	disk := update.BoxDisk
	var statePart string
	// The disk's driver was just loaded: give its partitions a moment,
	// unless there is no disk at all (a network or QEMU -kernel boot).
	wait := time.Second
	if ents, err := os.ReadDir(disk.SysBlock); err != nil || len(ents) == 0 {
		wait = 0
	}
	_ = waitFor(wait, func() bool {
		dev, err := disk.Device(update.PartState)
		statePart = dev
		return err == nil
	})
	if statePart == "" {
		log.Info("no A/B disk (no partition " + update.PartState + "): booting this kernel")
		return nil
	}
	pub, err := update.LoadPublicKey(update.KeyPath)
	if err != nil {
		return fmt.Errorf("boot stage: %w", err)
	}
	// A trial slot that cannot be started has used its try: the second
	// round falls back to the active slot.
	for {
		var d update.Decision
		st, err := update.ChangeBootState(disk, func(s update.State) (update.State, error) {
			var next update.State
			d, next = update.Choose(s)
			if d.FellBack {
				log.Error("UPDATE FAILED: the trial boot did not commit; falling back", "failed_slot", d.FailedSlot.String(),
					"failed_version", s.Version(d.FailedSlot), "slot", d.Slot.String(), "version", s.Version(d.Slot))
			}
			return next, nil
		})
		if err != nil {
			return fmt.Errorf("boot stage: %w", err)
		}
		log.Info("boot stage: starting a slot", "slot", d.Slot.String(), "version", st.Version(d.Slot), "trial", d.Trial)
		err = kexecSlot(disk, d, pub, SlotCmdline(cmdline, d))
		if !d.Trial {
			return err
		}
		log.Error("boot stage: the trial slot cannot be started", "slot", d.Slot.String(), "err", err)
	}
}

// abBoot is init's part of the A/B boot, after the kernel modules are
// loaded: read the A/B settings, be the boot stage when this kernel was
// not started from a slot (bootSlot; returns only when nothing was
// started), apply an update stick (updateFromStick), and find the data
// partition by its name when the command line names none.
func abBoot(log *slog.Logger, cmdline string, p *Params) SlotParams {
	sp, errs := ParseSlotParams(cmdline)
	for _, e := range errs {
		log.Warn("ignoring a kernel command line setting", "err", e)
	}
	stageFailed := false
	if err := bootSlot(log, cmdline, sp); err != nil {
		log.Error("BOOT STAGE FAILED: booting the stage's own kernel and initramfs", "err", err)
		stageFailed = true
	}
	if sp.Slot != update.NoSlot {
		log.Info("booted from a slot", "slot", sp.Slot.String(), "trial", sp.Trial)
	}
	updateFromStick(log, sp, stageFailed)
	if p.DataDevice == "" {
		if dev, err := update.BoxDisk.Device(update.PartData); err == nil {
			p.DataDevice = dev
		}
	}
	return sp
}

// kexecSlot loads the kernel and initramfs of the slot's bundle (each
// checked against its sha256) and starts the kernel.
func kexecSlot(disk update.Disk, d update.Decision, pub []byte, cmdline string) error {
	b, r, err := update.OpenSlot(disk, d.Slot, pub)
	if err != nil {
		return fmt.Errorf("boot stage: %w", err)
	}
	defer r.Close()
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, part := range []string{update.PartKernel, update.PartInitramfs} {
		fd, err := unix.MemfdCreate("twinpbx-"+part, 0)
		if err != nil {
			return fmt.Errorf("boot stage: %w", err)
		}
		fds = append(fds, fd)
		f := os.NewFile(uintptr(fd), part)
		if err := b.Extract(part, f); err != nil {
			return fmt.Errorf("boot stage: slot %v: %w", d.Slot, err)
		}
	}
	if err := unix.KexecFileLoad(fds[0], fds[1], cmdline, 0); err != nil {
		return fmt.Errorf("boot stage: loading slot %v's kernel (kexec_file_load): %w", d.Slot, err)
	}
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_KEXEC); err != nil {
		return fmt.Errorf("boot stage: starting slot %v's kernel: %w", d.Slot, err)
	}
	return errors.New("boot stage: kexec returned")
}

// watchTrial runs on a trial boot while twinpbx runs: once the running
// appliance reports healthy it commits the slot; when the deadline
// passes first it asks for init's clean reboot (reboot), and the boot
// stage falls back to the old slot.
func watchTrial(ctx context.Context, log *slog.Logger, sp SlotParams, reboot func()) {
	if !sp.Trial {
		return
	}
	w := trialWatch{
		log:      log,
		slot:     sp.Slot,
		deadline: sp.Deadline,
		every:    time.Second,
		status: func() ([]byte, error) {
			c, err := control.Dial(DataDir)
			if err != nil {
				return nil, err
			}
			var buf bytes.Buffer
			err = c.Status(&buf)
			return buf.Bytes(), err
		},
		commit: func() (update.State, error) {
			return update.ChangeBootState(update.BoxDisk, func(s update.State) (update.State, error) { return s.Commit(sp.Slot) })
		},
		reboot: reboot,
	}
	w.run(ctx)
}
