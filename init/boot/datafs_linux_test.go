package boot

import (
	"bytes"
	"context"
	"errors"
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
	missing   bool
	size      int64
	sizeErr   error
	fs        bool // holds a file system that mounts
	sig       string
	probeErr  error
	mkfsErr   error
	mountErr2 error // the mount after mkfs fails
	calls     []string
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
		probe: func(string) (string, error) { f.calls = append(f.calls, "probe"); return f.sig, f.probeErr },
		mkfs: func(context.Context, string) error {
			f.calls = append(f.calls, "mkfs")
			if f.mkfsErr == nil {
				f.fs = true
			}
			return f.mkfsErr
		},
		tmpfs: func() error { f.calls = append(f.calls, "tmpfs"); return nil },
	}
}

func TestMountData(t *testing.T) {
	const big = 128 << 20
	tests := []struct {
		name    string
		dev     string
		ab      bool
		disk    fakeData
		want    dataOutcome
		calls   []string
		logPart string
	}{
		{"ext4 mounts", "/dev/vda", false, fakeData{size: big, fs: true}, dataMounted,
			[]string{"wait", "size", "mount"}, "data partition mounted"},
		{"blank: formatted", "/dev/vda", false, fakeData{size: big}, dataFormatted,
			[]string{"wait", "size", "mount", "probe", "mkfs", "mount"}, "formatted and mounted"},
		{"damaged ext4: never formatted", "/dev/vda", false, fakeData{size: big, sig: "ext2/3/4"}, dataTmpfs,
			[]string{"wait", "size", "mount", "probe", "tmpfs"}, "NOT formatting it"},
		{"unreadable: never formatted", "/dev/vda", false, fakeData{size: big, probeErr: errDisk}, dataTmpfs,
			[]string{"wait", "size", "mount", "probe", "tmpfs"}, "UNREADABLE"},
		{"size unreadable", "/dev/vda", false, fakeData{sizeErr: errDisk}, dataTmpfs,
			[]string{"wait", "size", "tmpfs"}, "UNREADABLE"},
		{"too small", "/dev/vda", false, fakeData{size: MinDataSize - 512, fs: true}, dataTmpfs,
			[]string{"wait", "size", "tmpfs"}, "TOO SMALL"},
		{"just big enough", "/dev/vda", false, fakeData{size: MinDataSize, fs: true}, dataMounted,
			[]string{"wait", "size", "mount"}, "data partition mounted"},
		{"mkfs fails", "/dev/vda", false, fakeData{size: big, mkfsErr: errors.New("exit status 1")}, dataTmpfs,
			[]string{"wait", "size", "mount", "probe", "mkfs", "tmpfs"}, "NOT FORMATTED"},
		{"made but does not mount", "/dev/vda", false, fakeData{size: big, mountErr2: errors.New("no ext4 module")}, dataTmpfs,
			[]string{"wait", "size", "mount", "probe", "mkfs", "mount", "tmpfs"}, "after making its file system"},
		{"device never appears", "/dev/vda", false, fakeData{missing: true}, dataTmpfs,
			[]string{"wait", "tmpfs"}, "MISSING"},
		{"no device", "", false, fakeData{}, dataTmpfs,
			[]string{"tmpfs"}, KeyData + "=/dev/"},
		{"A/B disk without a data partition", "", true, fakeData{}, dataTmpfs,
			[]string{"tmpfs"}, "GPT has no partition named twinpbx-data"},
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
