package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	fwupdate "github.com/twinpbx/twinpbx/firmware/update"
)

// cmdUpdate is `twinpbx update [--disk IMAGE] [--key FILE] [--reboot]
// BUNDLE`, `twinpbx update --pair [--data DIR] BUNDLE` and `twinpbx
// update status [--disk IMAGE]`: write a signed bundle into the inactive
// slot and put it on trial for the next boot (firmware/update), roll it
// over both boxes of a twin pair (firmware/rollout), or show the boot
// state.
func cmdUpdate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, data := newFlags("update")
	diskPath := fs.String("disk", "", "a disk image file instead of the box's own disk")
	keyPath := fs.String("key", fwupdate.KeyPath, "public key bundles must be signed with")
	reboot := fs.Bool("reboot", false, "reboot into the new slot at once (on the box)")
	pair := fs.Bool("pair", false, "rolling update of the twin pair: the standby, a switchover, then this box")
	if len(args) > 0 && args[0] == "status" {
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		return updateStatus(diskFor(*diskPath), stdout)
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"update needs one BUNDLE file (or status)"}
	}
	if *pair {
		if *diskPath != "" || *reboot {
			return usageError{"update --pair: the running pair writes and reboots both boxes itself; --disk and --reboot do not apply"}
		}
		return rollPair(ctx, *data, fs.Arg(0), stdout)
	}
	pub, err := fwupdate.LoadPublicKey(*keyPath)
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	running := fwupdate.NoSlot
	if *diskPath == "" {
		running = runningSlot()
	} else if *reboot {
		return usageError{"update: --reboot is for the box's own disk, not --disk"}
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	res, err := fwupdate.Apply(diskFor(*diskPath), fs.Arg(0), pub, running, log)
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	fmt.Fprintf(stdout, "bundle %s written to slot %v: the next boot tries it once and keeps it only when the box comes up healthy\n", res.Version, res.Slot)
	if !*reboot {
		fmt.Fprintln(stdout, "reboot the box to try it (twinpbx update --reboot does that at once)")
		return nil
	}
	return rebootBox()
}

func diskFor(path string) fwupdate.Disk {
	if path != "" {
		return fwupdate.ImageDisk{Path: path}
	}
	return fwupdate.BoxDisk
}

func updateStatus(d fwupdate.Disk, w io.Writer) error {
	s, err := fwupdate.ReadBootState(d)
	if err != nil {
		return fmt.Errorf("update status: %w", err)
	}
	fmt.Fprintf(w, "active slot %v (%s)\n", s.Active, orNone(s.Version(s.Active)))
	fmt.Fprintf(w, "other slot  %v (%s)\n", s.Active.Other(), orNone(s.Version(s.Active.Other())))
	if s.Trial != fwupdate.NoSlot {
		fmt.Fprintf(w, "on trial    %v (%s), %d boot(s) left\n", s.Trial, s.Version(s.Trial), s.TriesLeft)
	}
	if s.Failed != "" {
		fmt.Fprintf(w, "last failed update %s\n", s.Failed)
	}
	if r := runningSlot(); r != fwupdate.NoSlot {
		fmt.Fprintf(w, "running from slot %v\n", r)
	}
	return nil
}

func orNone(v string) string {
	if v == "" {
		return "empty"
	}
	return v
}

// runningSlot is the slot the boot stage started this system from
// (twinpbx.slot on the kernel command line), or NoSlot.
func runningSlot() fwupdate.Slot { return fwupdate.RunningSlot() }

// rebootBox asks the box's init for a clean reboot.
func rebootBox() error {
	if err := fwupdate.RebootBox(); err != nil {
		return fmt.Errorf("update: --reboot: %w", err)
	}
	return nil
}
