package boot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeData is a data partition for useData: what it holds and what
// fails, with the operations done on it recorded.
type fakeData struct {
	missing      bool
	size         int64
	sizeErr      error
	fs           bool // holds a file system that mounts
	sig          string
	probeErr     error
	mkfsErr      error
	mountErr2    error // the mount after mkfs fails
	fsckCode     int   // e2fsck's exit code
	fsckErr      error // e2fsck did not run to an exit code
	mark         bool  // RebootMark is in the file system
	markErr      error
	umountErr    error
	persistFails bool
	growTo       int64 // growPart grows the partition to this size
	growErr      error
	fsBlocks     int64 // the file system's 4 KiB blocks; 0: it fills the partition
	superErr     error
	resizeErr    error
	resizedTo    int64

	calls     []string
	alarm     string
	persisted string
}

func (f *fakeData) ops() dataOps {
	return dataOps{
		appeared: func(string) bool { f.calls = append(f.calls, "wait"); return !f.missing },
		size:     func(string) (int64, error) { f.calls = append(f.calls, "size"); return f.size, f.sizeErr },
		mount: func(string) error {
			f.calls = append(f.calls, "mount")
			if !f.fs {
				return errors.New("invalid argument")
			}
			return f.mountErr2
		},
		unmount: func() error { f.calls = append(f.calls, "umount"); return f.umountErr },
		probe:   func(string) (string, error) { f.calls = append(f.calls, "probe"); return f.sig, f.probeErr },
		mkfs: func(context.Context, string) error {
			f.calls = append(f.calls, "mkfs")
			if f.mkfsErr == nil {
				f.fs = true
			}
			return f.mkfsErr
		},
		fsck: func(context.Context, string) (int, string, error) {
			f.calls = append(f.calls, "fsck")
			return f.fsckCode, "twinpbx-data: 11/16384 files", f.fsckErr
		},
		tmpfs: func() error { f.calls = append(f.calls, "tmpfs"); return nil },
		takeMark: func() bool {
			f.calls = append(f.calls, "take")
			was := f.mark
			f.mark = false
			return was
		},
		setMark: func(string) error {
			f.calls = append(f.calls, "mark")
			if f.markErr == nil {
				f.mark = true
			}
			return f.markErr
		},
		alarm: func(text string) error { f.alarm = text; return nil },
		growPart: func(string) (int64, int64, error) {
			f.calls = append(f.calls, "grow")
			before := f.size
			if f.growErr != nil {
				return before, before, f.growErr
			}
			if f.growTo > f.size {
				f.size = f.growTo
			}
			return before, f.size, nil
		},
		super: func(string) (extSuper, error) {
			f.calls = append(f.calls, "super")
			if f.fsBlocks == 0 {
				return extSuper{BlockSize: 4096, Blocks: f.size / 4096}, f.superErr
			}
			return extSuper{BlockSize: 4096, Blocks: f.fsBlocks}, f.superErr
		},
		resize: func(_ context.Context, blocks int64) error {
			f.calls = append(f.calls, "resize")
			if f.resizeErr == nil {
				f.resizedTo = blocks
			}
			return f.resizeErr
		},
		persist: func(b []byte) error {
			f.calls = append(f.calls, "persist")
			if f.persistFails {
				return errors.New("read-only file system")
			}
			f.persisted += string(b)
			return nil
		},
	}
}

func TestMountData(t *testing.T) {
	const big = 128 << 20
	ext := func(code int) fakeData { return fakeData{size: big, fs: true, sig: "ext2/3/4", fsckCode: code} }
	checked := []string{"wait", "size", "probe", "fsck", "grow", "super", "mount", "size", "take", "persist"}
	tests := []struct {
		name    string
		dev     string
		ab      bool
		disk    fakeData
		want    dataOutcome
		calls   []string
		logPart string
		alarm   string // a part of the alarm; "" for none
	}{
		{"ext4 clean", "/dev/vda", false, ext(0), dataMounted, checked, "found the data partition clean", ""},
		{"ext4 repaired", "/dev/vda", false, ext(fsckCorrected), dataMounted, checked, "e2fsck repaired the data partition", ""},
		{"ext4 repaired, reboot asked: reboots once", "/dev/vda", false, ext(fsckRebootAsked | fsckCorrected), dataReboot,
			[]string{"wait", "size", "probe", "fsck", "mount", "take", "mark", "persist", "umount"}, "rebooting once", ""},
		{"back after that reboot, clean", "/dev/vda", false, func() fakeData { d := ext(0); d.mark = true; return d }(), dataMounted,
			checked, "back after the reboot", ""},
		{"reboot asked again after the reboot: not twice", "/dev/vda", false, func() fakeData { d := ext(fsckRebootAsked); d.mark = true; return d }(), dataMounted,
			[]string{"wait", "size", "probe", "fsck", "mount", "take", "persist"}, "not rebooting twice", "two boots in a row"},
		{"reboot asked, mark not written: no reboot loop", "/dev/vda", false, func() fakeData { d := ext(fsckRebootAsked); d.markErr = errDisk; return d }(), dataMounted,
			[]string{"wait", "size", "probe", "fsck", "mount", "take", "mark", "persist"}, "not rebooting", "could not note"},
		{"reboot asked, unmount fails: used as it is", "/dev/vda", false, func() fakeData { d := ext(fsckRebootAsked); d.umountErr = errDisk; return d }(), dataMounted,
			[]string{"wait", "size", "probe", "fsck", "mount", "take", "mark", "persist", "umount", "persist"}, "cannot unmount", "could not unmount"},
		{"errors left: untouched", "/dev/vda", false, ext(fsckUncorrected | fsckCorrected), dataTmpfs,
			[]string{"wait", "size", "probe", "fsck", "tmpfs"}, "DATA PARTITION DAMAGED", "errors left uncorrected"},
		{"operational error: untouched", "/dev/vda", false, ext(fsckOperational), dataTmpfs,
			[]string{"wait", "size", "probe", "fsck", "tmpfs"}, "NOT mounting it", "operational error"},
		{"e2fsck killed: untouched", "/dev/vda", false, func() fakeData { d := ext(-1); d.fsckErr = errors.New("signal: killed"); return d }(), dataTmpfs,
			[]string{"wait", "size", "probe", "fsck", "tmpfs"}, "did not finish", "half repaired"},
		{"no e2fsck in the image: mounted unchecked", "/dev/vda", false, func() fakeData { d := ext(-1); d.fsckErr = fs.ErrNotExist; return d }(), dataMounted,
			checked, "NOT CHECKED", "NOT CHECKED"},
		{"backup superblock only: e2fsck decides", "/dev/vda", false, fakeData{size: big, sig: "ext2/3/4 (backup superblock at byte 134217728)", fsckCode: fsckUncorrected}, dataTmpfs,
			[]string{"wait", "size", "probe", "fsck", "tmpfs"}, "DATA PARTITION DAMAGED", "DAMAGED"},
		{"clean but does not mount", "/dev/vda", false, fakeData{size: big, sig: "ext2/3/4"}, dataTmpfs,
			[]string{"wait", "size", "probe", "fsck", "grow", "super", "mount", "tmpfs"}, "NOT MOUNTED", "NOT MOUNTED"},
		{"larger disk: partition and file system grown", "/dev/vda5", false, func() fakeData { d := ext(0); d.growTo = 4 * big; d.fsBlocks = big / 4096; return d }(), dataMounted,
			[]string{"wait", "size", "probe", "fsck", "grow", "super", "mount", "size", "resize", "take", "persist"}, "data file system grown to fill its partition", ""},
		{"partition grown before, file system not yet: file system grown", "/dev/vda5", false, func() fakeData { d := ext(0); d.fsBlocks = big / 8192; return d }(), dataMounted,
			[]string{"wait", "size", "probe", "fsck", "grow", "super", "mount", "size", "resize", "take", "persist"}, "from_mib=64 to_mib=128", ""},
		{"not our disk: nothing grown, mounted", "/dev/vda", false, func() fakeData { d := ext(0); d.growErr = fmt.Errorf("%w: whole disk", ErrNotOurs); return d }(), dataMounted,
			checked, "not a partition of a box's disk", ""},
		{"growing fails: mounted as it is", "/dev/vda5", false, func() fakeData { d := ext(0); d.growErr = errDisk; return d }(), dataMounted,
			checked, "data partition not grown", ""},
		{"file system resize fails: mounted as it is", "/dev/vda5", false, func() fakeData {
			d := ext(0)
			d.growTo = 2 * big
			d.fsBlocks = big / 4096
			d.resizeErr = errDisk
			return d
		}(), dataMounted,
			[]string{"wait", "size", "probe", "fsck", "grow", "super", "mount", "size", "resize", "take", "persist"}, "keeps its size", ""},
		{"superblock unreadable: not grown, mounted", "/dev/vda5", false, func() fakeData { d := ext(0); d.superErr = errDisk; return d }(), dataMounted,
			[]string{"wait", "size", "probe", "fsck", "grow", "super", "mount", "take", "persist"}, "data file system not grown", ""},
		{"damaged: nothing grown", "/dev/vda5", false, func() fakeData { d := ext(fsckUncorrected); d.growTo = 4 * big; return d }(), dataTmpfs,
			[]string{"wait", "size", "probe", "fsck", "tmpfs"}, "DAMAGED", "DAMAGED"},
		{"blank on a larger disk: grown, then formatted", "/dev/vda5", false, fakeData{size: big, growTo: 4 * big}, dataFormatted,
			[]string{"wait", "size", "probe", "grow", "mkfs", "mount", "persist"}, "to_mib=512", ""},
		{"persistent log fails: still mounted", "/dev/vda", false, func() fakeData { d := ext(0); d.persistFails = true; return d }(), dataMounted,
			checked, "persistent log", ""},
		{"blank: formatted", "/dev/vda", false, fakeData{size: big}, dataFormatted,
			[]string{"wait", "size", "probe", "grow", "mkfs", "mount", "persist"}, "formatted and mounted", ""},
		{"foreign file system: never formatted", "/dev/vda", false, fakeData{size: big, sig: "xfs"}, dataTmpfs,
			[]string{"wait", "size", "probe", "tmpfs"}, "NOT formatting it", "holds xfs"},
		{"unreadable: never formatted", "/dev/vda", false, fakeData{size: big, probeErr: errDisk}, dataTmpfs,
			[]string{"wait", "size", "probe", "tmpfs"}, "UNREADABLE", "UNREADABLE"},
		{"size unreadable", "/dev/vda", false, fakeData{sizeErr: errDisk}, dataTmpfs,
			[]string{"wait", "size", "tmpfs"}, "UNREADABLE", "UNREADABLE"},
		{"too small", "/dev/vda", false, fakeData{size: MinDataSize - 512, fs: true, sig: "ext2/3/4"}, dataTmpfs,
			[]string{"wait", "size", "tmpfs"}, "TOO SMALL", "TOO SMALL"},
		{"just big enough", "/dev/vda", false, fakeData{size: MinDataSize, fs: true, sig: "ext2/3/4"}, dataMounted,
			checked, "data partition mounted", ""},
		{"mkfs fails", "/dev/vda", false, fakeData{size: big, mkfsErr: errors.New("exit status 1")}, dataTmpfs,
			[]string{"wait", "size", "probe", "grow", "mkfs", "tmpfs"}, "NOT FORMATTED", "NOT FORMATTED"},
		{"made but does not mount", "/dev/vda", false, fakeData{size: big, mountErr2: errors.New("no ext4 module")}, dataTmpfs,
			[]string{"wait", "size", "probe", "grow", "mkfs", "mount", "tmpfs"}, "after making its file system", "after making"},
		{"device never appears", "/dev/vda", false, fakeData{missing: true}, dataTmpfs,
			[]string{"wait", "tmpfs"}, "MISSING", "MISSING"},
		{"no device", "", false, fakeData{}, dataTmpfs,
			[]string{"tmpfs"}, KeyData + "=/dev/", ""},
		{"A/B disk without a data partition", "", true, fakeData{}, dataTmpfs,
			[]string{"tmpfs"}, "GPT has no partition named twinpbx-data", "NO DATA PARTITION"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			d := tt.disk
			got := mountData(context.Background(), log, d.ops(), tt.dev, tt.ab)
			if got != tt.want {
				t.Errorf("outcome %d, want %d", got, tt.want)
			}
			if !slices.Equal(d.calls, tt.calls) {
				t.Errorf("calls %v, want %v", d.calls, tt.calls)
			}
			if !strings.Contains(logs.String(), tt.logPart) {
				t.Errorf("log lacks %q:\n%s", tt.logPart, logs.String())
			}
			if tt.want == dataTmpfs && !strings.Contains(logs.String(), "level=ERROR") && !strings.Contains(logs.String(), "level=WARN") {
				t.Errorf("fell back to a tmpfs without a warning:\n%s", logs.String())
			}
			switch {
			case tt.alarm == "" && d.alarm != "":
				t.Errorf("alarm %q, want none", d.alarm)
			case !strings.Contains(d.alarm, tt.alarm):
				t.Errorf("alarm %q, want it to say %q", d.alarm, tt.alarm)
			}
			if tt.want == dataTmpfs && tt.dev != "" && !strings.Contains(d.alarm, "tmpfs") {
				t.Errorf("alarm %q does not say the data is on a tmpfs", d.alarm)
			}
			if slices.Contains(d.calls, "persist") && !d.persistFails && !strings.Contains(d.persisted, tt.logPart) {
				t.Errorf("persistent log lacks %q:\n%s", tt.logPart, d.persisted)
			}
			if slices.Contains(d.calls, "mkfs") && slices.Contains(d.calls, "fsck") {
				t.Error("formatted and checked the same partition")
			}
			if d.resizedTo != 0 && d.resizedTo != d.size/4096 {
				t.Errorf("file system resized to %d blocks, want %d (the partition)", d.resizedTo, d.size/4096)
			}
			if tt.want == dataReboot && !d.mark {
				t.Error("rebooting without the mark that stops a second reboot")
			}
		})
	}
}

// TestMkfsProbe runs the image's mke2fs step on a file: blank before,
// ext4 after, and still not blank once its first superblock is wiped.
func TestMkfsProbe(t *testing.T) {
	if _, err := os.Stat(Mke2fs); err != nil {
		t.Skipf("no %s here (scripts/install-deps.sh vm installs e2fsprogs): %v", Mke2fs, err)
	}
	dev := filepath.Join(t.TempDir(), "data.img")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(dev, 64<<20); err != nil {
		t.Fatal(err)
	}
	probe := func() string {
		t.Helper()
		sig, err := sysDataOps.probe(dev)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	if sig := probe(); sig != "" {
		t.Fatalf("a new sparse file probes as %q, want blank", sig)
	}
	if err := sysDataOps.mkfs(context.Background(), dev); err != nil {
		t.Fatal(err)
	}
	if sig := probe(); sig != "ext2/3/4" {
		t.Fatalf("after mke2fs: %q, want ext2/3/4", sig)
	}
	if out, err := exec.Command("/sbin/dumpe2fs", "-h", dev).CombinedOutput(); err == nil {
		for _, want := range []string{"volume name:   twinpbx-data", "extent"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("dumpe2fs lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(string(out), "metadata_csum") {
			t.Errorf("metadata_csum is on (the image cannot load crc32c on demand):\n%s", out)
		}
	}
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 1<<20), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if sig := probe(); !strings.Contains(sig, "backup superblock") {
		t.Fatalf("first MiB wiped: %q, want the backup superblock found", sig)
	}
}
