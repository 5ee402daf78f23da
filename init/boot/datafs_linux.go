package boot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/twinpbx/twinpbx/init/boot/request"
)

// dataOps are what mountData does to the system, replaced in tests.
type dataOps struct {
	// appeared waits a moment for the device file and reports whether
	// it is there.
	appeared func(dev string) bool
	size     func(dev string) (int64, error)
	mount    func(dev string) error
	unmount  func() error
	probe    func(dev string) (string, error)
	mkfs     func(ctx context.Context, dev string) error
	// fsck runs e2fsck; code is its exit code when err is nil, and out
	// what it printed.
	fsck  func(ctx context.Context, dev string) (code int, out string, err error)
	tmpfs func() error
	// takeMark removes RebootMark from the mounted data folder and
	// reports whether it was there; setMark writes it.
	takeMark func() bool
	setMark  func(why string) error
	// alarm tells the firmware and the console why the data folder is
	// not what it should be; "" clears it.
	alarm func(text string) error
	// persist appends init's log lines to the mounted data folder's log.
	persist func(lines []byte) error
	// growPart grows the data partition to the end of its disk
	// (growPart in grow_linux.go); super reads its ext4 superblock;
	// resize grows the mounted file system to a block count.
	growPart func(dev string) (before, after int64, err error)
	super    func(dev string) (extSuper, error)
	resize   func(ctx context.Context, blocks int64) error
}

// Where the data folder ended up.
type dataOutcome int

const (
	dataTmpfs     dataOutcome = iota // a tmpfs: nothing survives a reboot
	dataMounted                      // the data partition, as it was
	dataFormatted                    // the data partition, blank until init made its file system
	dataReboot                       // e2fsck repaired the data partition and asks for a reboot first
)

var sysDataOps = dataOps{
	appeared: func(dev string) bool {
		return waitFor(5*time.Second, func() bool { _, err := os.Stat(dev); return err == nil }) == nil
	},
	size: func(dev string) (int64, error) {
		f, err := os.Open(dev)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		return f.Seek(0, io.SeekEnd)
	},
	mount: func(dev string) error { return mountAll(sysMounter{}, []Mount{DataMount(dev)}) },
	probe: func(dev string) (string, error) {
		f, err := os.Open(dev)
		if err != nil {
			return "", err
		}
		defer f.Close()
		size, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			return "", fmt.Errorf("probing the data partition: %w", err)
		}
		return Probe(f, size)
	},
	mkfs: func(ctx context.Context, dev string) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		args := append(append([]string{"-q"}, DataFSOptions...), dev)
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, Mke2fs, args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("making the data file system (%s %s): %w: %s", Mke2fs, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
		}
		return nil
	},
	fsck: func(ctx context.Context, dev string) (int, string, error) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
		defer cancel()
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, E2fsck, append(append([]string{}, FsckArgs...), dev)...)
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var exit *exec.ExitError
		switch {
		case err == nil:
			return 0, out.String(), nil
		case errors.As(err, &exit) && exit.Exited():
			return exit.ExitCode(), out.String(), nil
		}
		return -1, out.String(), fmt.Errorf("running %s: %w", E2fsck, err)
	},
	tmpfs:   func() error { return mountAll(sysMounter{}, []Mount{DataMount("")}) },
	unmount: func() error { return unix.Unmount(DataDir, 0) },
	takeMark: func() bool {
		return os.Remove(filepath.Join(DataDir, RebootMark)) == nil
	},
	setMark: func(why string) error {
		return writeSynced(filepath.Join(DataDir, RebootMark), []byte(why+"\n"), false)
	},
	alarm: func(text string) error {
		if text == "" {
			err := os.Remove(request.DataAlarmFile)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := os.MkdirAll(filepath.Dir(request.DataAlarmFile), 0o755); err != nil {
			return err
		}
		return os.WriteFile(request.DataAlarmFile, []byte(text+"\n"), 0o644)
	},
	persist: func(lines []byte) error {
		return writeSynced(filepath.Join(DataDir, PersistentLog), lines, true)
	},
	growPart: func(dev string) (int64, int64, error) { return growPart("/sys/class/block", dev) },
	super:    superOf,
	resize:   func(ctx context.Context, blocks int64) error { return resizeFS(ctx, DataDir, blocks) },
}

// PersistentLog is the log file in the data folder that init appends its
// data partition lines to, the one twinpbx's supervisor writes (and
// rotates) once it runs.
const PersistentLog = "twinpbx.log"

// writeSynced writes (or appends) b to the file name and syncs it.
func writeSynced(name string, b []byte, appendTo bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if appendTo {
		flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
	}
	f, err := os.OpenFile(name, flags, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// mountData mounts the data partition dev on DataDir. It looks first at
// what the partition holds (Probe): a blank one gets its file system;
// an ext4 is checked with e2fsck -p and mounted when e2fsck found it
// clean or repaired it, rebooted once when e2fsck asks for it, and left
// untouched when e2fsck could not repair it; anything else is left
// alone for rescue. Whenever the partition cannot be used (none,
// missing, too small, foreign, damaged, or making its file system
// failed) DataDir is a tmpfs, the console says so loudly and the data
// alarm (request.DataAlarmFile) says why. noDataOnAB tells that dev is
// empty although the box's disk is an A/B disk: its GPT has no data
// partition. Once the partition is mounted, init's lines about it are
// appended to the persistent log too. dataReboot asks the caller to
// reboot; the partition is then unmounted (when it cannot be, it is
// used: dataMounted).
func mountData(ctx context.Context, log *slog.Logger, ops dataOps, dev string, noDataOnAB bool) dataOutcome {
	var rec bytes.Buffer
	tee := slog.New(slog.NewMultiHandler(log.Handler(), slog.NewTextHandler(&rec, nil)))
	out, alarm := useData(ctx, tee, ops, dev, noDataOnAB)
	if err := ops.alarm(alarm); err != nil {
		log.Error("writing the data alarm for the status", "err", err)
	}
	switch out {
	case dataMounted, dataFormatted:
		if err := ops.persist(rec.Bytes()); err != nil {
			log.Warn("writing init's data partition lines to the persistent log", "err", err)
		}
		return out
	case dataReboot:
		// Said in the persistent log too before the partition goes.
		if err := ops.persist(rec.Bytes()); err != nil {
			log.Warn("writing init's data partition lines to the persistent log", "err", err)
		}
		said := rec.Len()
		if err := ops.unmount(); err != nil {
			// Rebooting with it mounted is what the reboot is to
			// avoid; use it instead.
			tee.Error("cannot unmount the data partition for the reboot e2fsck asks for: not rebooting, using it", "device", dev, "err", err)
			if err := ops.alarm("DATA PARTITION: e2fsck asked for a reboot, init could not unmount it (" + err.Error() + ")"); err != nil {
				log.Error("writing the data alarm for the status", "err", err)
			}
			if err := ops.persist(rec.Bytes()[said:]); err != nil {
				log.Warn("writing init's data partition lines to the persistent log", "err", err)
			}
			return dataMounted
		}
		return out
	}
	if err := ops.tmpfs(); err != nil {
		log.Error("mounting a tmpfs data folder failed; using the initramfs", "err", err)
		_ = os.MkdirAll(DataDir, 0o700)
	}
	return dataTmpfs
}

const lost = "using a tmpfs, nothing will survive a reboot"

// useData decides and does what mountData says, and returns the outcome
// with the alarm to raise ("" for none).
func useData(ctx context.Context, log *slog.Logger, ops dataOps, dev string, noDataOnAB bool) (dataOutcome, string) {
	fail := func(alarm, msg string, args ...any) (dataOutcome, string) {
		log.Error(msg, args...)
		return dataTmpfs, alarm + "; " + lost
	}
	switch {
	case dev == "" && noDataOnAB:
		return fail("NO DATA PARTITION: the disk's GPT has no partition named twinpbx-data",
			"NO DATA PARTITION: the disk's GPT has no partition named twinpbx-data (flash the whole image); "+lost)
	case dev == "":
		// A developer's VM without a disk: said, but no alarm.
		log.Warn("NO DATA PARTITION: data lives in a tmpfs, config and CDRs are lost at reboot (kernel command line " + KeyData + "=/dev/...)")
		return dataTmpfs, ""
	case !ops.appeared(dev):
		return fail("DATA PARTITION MISSING: "+dev, "DATA PARTITION MISSING: "+lost, "device", dev)
	}
	size, err := ops.size(dev)
	if err != nil {
		return fail("DATA PARTITION UNREADABLE: "+err.Error(), "DATA PARTITION UNREADABLE: "+lost, "device", dev, "err", err)
	}
	if size < MinDataSize {
		msg := fmt.Sprintf("DATA PARTITION TOO SMALL: %d MiB, at least %d MiB needed", size>>20, MinDataSize>>20)
		return fail(msg, msg+"; "+lost, "device", dev)
	}
	sig, err := ops.probe(dev)
	if err != nil {
		return fail("DATA PARTITION UNREADABLE: "+err.Error(), "DATA PARTITION UNREADABLE: "+lost, "device", dev, "err", err)
	}
	switch {
	case sig == "":
		return formatData(ctx, log, ops, dev, size)
	case strings.HasPrefix(sig, "ext2/3/4"):
		return checkData(ctx, log, ops, dev)
	}
	return fail("DATA PARTITION NOT MOUNTED: it holds "+sig,
		"DATA PARTITION NOT MOUNTED: it holds "+sig+", not ext4; NOT formatting it, its data may be rescued on another machine; "+lost,
		"device", dev)
}

// formatData makes the file system of a blank data partition and mounts
// it.
func formatData(ctx context.Context, log *slog.Logger, ops dataOps, dev string, size int64) (dataOutcome, string) {
	log.Warn("blank data partition: making its ext4 file system (first boot on this disk)", "device", dev, "size_mib", size>>20)
	growData(log, ops, dev)
	start := time.Now()
	if err := ops.mkfs(ctx, dev); err != nil {
		log.Error("DATA PARTITION NOT FORMATTED: "+lost, "device", dev, "err", err)
		return dataTmpfs, "DATA PARTITION NOT FORMATTED: " + err.Error() + "; " + lost
	}
	if err := ops.mount(dev); err != nil {
		log.Error("DATA PARTITION NOT MOUNTED after making its file system: "+lost, "device", dev, "err", err)
		return dataTmpfs, "DATA PARTITION NOT MOUNTED after making its file system: " + err.Error() + "; " + lost
	}
	log.Info("data partition formatted and mounted", "device", dev, "on", DataDir, "took", time.Since(start).Round(time.Millisecond))
	return dataFormatted, ""
}

// checkData runs e2fsck -p on an ext2/3/4 data partition and acts on its
// verdict (judgeFsck).
func checkData(ctx context.Context, log *slog.Logger, ops dataOps, dev string) (dataOutcome, string) {
	start := time.Now()
	code, out, runErr := ops.fsck(ctx, dev)
	verdict, why := judgeFsck(code, runErr)
	took := time.Since(start).Round(time.Millisecond)
	attrs := []any{"device", dev, "code", code, "took", took}
	if out = strings.TrimSpace(out); out != "" {
		attrs = append(attrs, "e2fsck", out)
	}
	var alarm string
	switch verdict {
	case fsckKeep:
		log.Error("DATA PARTITION DAMAGED: "+why+"; NOT mounting it, NOT formatting it: run e2fsck on it from another machine; "+lost, attrs...)
		return dataTmpfs, "DATA PARTITION DAMAGED, left untouched: " + why + "; " + lost
	case fsckUnchecked:
		log.Warn("DATA PARTITION NOT CHECKED: "+why, attrs...)
		alarm = "DATA PARTITION NOT CHECKED: " + why
	case fsckReboot:
		log.Warn(why, attrs...)
	case fsckMount:
		if code != 0 {
			log.Warn(why, attrs...)
		} else {
			log.Info(why, attrs...)
		}
	}
	var sb extSuper
	if verdict != fsckReboot {
		growData(log, ops, dev)
		var err error
		if sb, err = ops.super(dev); err != nil {
			sb = extSuper{}
			log.Warn("data file system not grown", "device", dev, "err", err)
		}
	}
	if err := ops.mount(dev); err != nil {
		log.Error("DATA PARTITION NOT MOUNTED: "+lost, "device", dev, "err", err)
		return dataTmpfs, "DATA PARTITION NOT MOUNTED: " + err.Error() + "; " + lost
	}
	if sb.Blocks > 0 {
		if size, err := ops.size(dev); err != nil {
			log.Warn("data file system not grown", "device", dev, "err", err)
		} else {
			growFS(ctx, log, ops, dev, sb, size)
		}
	}
	rebooted := ops.takeMark()
	if rebooted {
		log.Info("back after the reboot e2fsck asked for", "device", dev)
	}
	if verdict == fsckReboot {
		if rebooted {
			log.Error("e2fsck asks for a reboot again after the one init made: not rebooting twice, using the partition", "device", dev)
			alarm = "DATA PARTITION: e2fsck asked for a reboot on two boots in a row; check the disk"
		} else if err := ops.setMark(why); err != nil {
			log.Error("cannot note the reboot e2fsck asks for: not rebooting, using the partition", "device", dev, "err", err)
			alarm = "DATA PARTITION: e2fsck asked for a reboot that init could not note (" + err.Error() + ")"
		} else {
			log.Warn("rebooting once, as e2fsck asks", "device", dev)
			return dataReboot, ""
		}
	}
	log.Info("data partition mounted", "device", dev, "on", DataDir)
	return dataMounted, alarm
}
