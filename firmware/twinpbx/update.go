package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"

	fwupdate "github.com/twinpbx/twinpbx/firmware/update"
)

// cmdUpdate is `twinpbx update [--disk IMAGE] [--key FILE] [--reboot]
// BUNDLE` and `twinpbx update status [--disk IMAGE]`: write a signed
// bundle into the inactive slot and put it on trial for the next boot
// (firmware/update), or show the boot state.
func cmdUpdate(args []string, stdout, stderr io.Writer) error {
	fs, _ := newFlags("update")
	diskPath := fs.String("disk", "", "a disk image file instead of the box's own disk")
	keyPath := fs.String("key", fwupdate.KeyPath, "public key bundles must be signed with")
	reboot := fs.Bool("reboot", false, "reboot into the new slot at once (on the box)")
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
func runningSlot() fwupdate.Slot {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fwupdate.NoSlot
	}
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "twinpbx.slot="); ok {
			if s, err := fwupdate.ParseSlot(v); err == nil {
				return s
			}
		}
	}
	return fwupdate.NoSlot
}

// rebootBox asks the box's init for a clean reboot (SIGTERM to PID 1, as
// the console does). It refuses where PID 1 is not the image's init.
func rebootBox() error {
	if exe, err := os.Readlink("/proc/1/exe"); err != nil || exe != "/init" {
		return errors.New("update: --reboot works only on the box (PID 1 is not its init): reboot by hand")
	}
	if err := syscall.Kill(1, syscall.SIGTERM); err != nil {
		return fmt.Errorf("update: asking init to reboot: %w", err)
	}
	return nil
}
