package boot

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"
)

// dataOps are what mountData does to the system, replaced in tests.
type dataOps struct {
	// appeared waits a moment for the device file and reports whether
	// it is there.
	appeared func(dev string) bool
	size     func(dev string) (int64, error)
	mount    func(dev string) error
	probe    func(dev string) (string, error)
	mkfs     func(ctx context.Context, dev string) error
	tmpfs    func() error
}

// Where the data folder ended up.
type dataOutcome int

const (
	dataTmpfs     dataOutcome = iota // a tmpfs: nothing survives a reboot
	dataMounted                      // the data partition, as it was
	dataFormatted                    // the data partition, blank until init made its file system
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
	tmpfs: func() error { return mountAll(sysMounter{}, []Mount{DataMount("")}) },
}

// mountData mounts the data partition dev on DataDir. A partition that
// does not mount is formatted only when Probe finds it blank (a new
// disk, or one flashed with the boot parts only); one that holds
// anything, a damaged ext4 above all, is left alone for rescue. Whenever
// the partition cannot be used (none, missing, too small, foreign,
// damaged, or making its file system failed) DataDir is a tmpfs and the
// console says so loudly. noDataOnAB tells that dev is empty although
// the box's disk is an A/B disk: its GPT has no data partition.
func mountData(ctx context.Context, log *slog.Logger, ops dataOps, dev string, noDataOnAB bool) dataOutcome {
	out := useData(ctx, log, ops, dev, noDataOnAB)
	if out != dataTmpfs {
		return out
	}
	if err := ops.tmpfs(); err != nil {
		log.Error("mounting a tmpfs data folder failed; using the initramfs", "err", err)
		_ = os.MkdirAll(DataDir, 0o700)
	}
	return dataTmpfs
}

const lost = "using a tmpfs, nothing will survive a reboot"

func useData(ctx context.Context, log *slog.Logger, ops dataOps, dev string, noDataOnAB bool) dataOutcome {
	switch {
	case dev == "" && noDataOnAB:
		log.Error("NO DATA PARTITION: the disk's GPT has no partition named twinpbx-data (flash the whole image); " + lost)
		return dataTmpfs
	case dev == "":
		log.Warn("NO DATA PARTITION: data lives in a tmpfs, config and CDRs are lost at reboot (kernel command line " + KeyData + "=/dev/...)")
		return dataTmpfs
	case !ops.appeared(dev):
		log.Error("DATA PARTITION MISSING: "+lost, "device", dev)
		return dataTmpfs
	}
	size, err := ops.size(dev)
	if err != nil {
		log.Error("DATA PARTITION UNREADABLE: "+lost, "device", dev, "err", err)
		return dataTmpfs
	}
	if size < MinDataSize {
		log.Error(fmt.Sprintf("DATA PARTITION TOO SMALL: %d MiB, at least %d MiB needed; %s", size>>20, MinDataSize>>20, lost), "device", dev)
		return dataTmpfs
	}
	merr := ops.mount(dev)
	if merr == nil {
		log.Info("data partition mounted", "device", dev, "on", DataDir)
		return dataMounted
	}
	sig, err := ops.probe(dev)
	if err != nil {
		log.Error("DATA PARTITION NOT MOUNTED and UNREADABLE: "+lost, "device", dev, "mount_err", merr, "err", err)
		return dataTmpfs
	}
	if sig != "" {
		log.Error("DATA PARTITION NOT MOUNTED: it holds "+sig+" but does not mount as ext4; NOT formatting it, its data may be rescued (e2fsck on another machine); "+lost,
			"device", dev, "err", merr)
		return dataTmpfs
	}
	log.Warn("blank data partition: making its ext4 file system (first boot on this disk)", "device", dev, "size_mib", size>>20)
	start := time.Now()
	if err := ops.mkfs(ctx, dev); err != nil {
		log.Error("DATA PARTITION NOT FORMATTED: "+lost, "device", dev, "err", err)
		return dataTmpfs
	}
	if err := ops.mount(dev); err != nil {
		log.Error("DATA PARTITION NOT MOUNTED after making its file system: "+lost, "device", dev, "err", err)
		return dataTmpfs
	}
	log.Info("data partition formatted and mounted", "device", dev, "on", DataDir, "took", time.Since(start).Round(time.Millisecond))
	return dataFormatted
}
