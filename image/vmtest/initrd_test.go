package vmtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/image/build"
)

func TestBootDoneUptime(t *testing.T) {
	const done = `time=2026-11-24T21:27:19.001Z level=INFO msg="boot done: starting twinpbx" component=init after=300ms`
	tests := []struct {
		name    string
		console string
		want    time.Duration
		ok      bool
	}{
		{"stamped", "kernel\n" + done + " uptime=2.161s\nSIP listening on udp:[::]:5060\n", 2161 * time.Millisecond, true},
		{"last on the console", done + " uptime=950ms", 950 * time.Millisecond, true},
		{"no uptime (older init)", done + "\n", 0, false},
		{"uptime on a later line only", done + "\nuptime=3s\n", 0, false},
		{"garbage uptime", done + " uptime=soon\n", 0, false},
		{"negative", done + " uptime=-1s\n", 0, false},
		{"not booted yet", "booting uptime=1s\n", 0, false},
		{"empty", "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := BootDoneUptime(tt.console)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("BootDoneUptime = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func FuzzBootDoneUptime(f *testing.F) {
	f.Add(MarkerBootDone + " uptime=2.1s\n")
	f.Add(MarkerBootDone + " uptime=\n")
	f.Add("uptime=1s " + MarkerBootDone)
	f.Fuzz(func(t *testing.T, console string) {
		if d, ok := BootDoneUptime(console); ok && d < 0 {
			t.Fatalf("negative uptime %v accepted", d)
		}
	})
}

func TestUncompressed(t *testing.T) {
	if _, err := exec.LookPath("xz"); err != nil {
		t.Skip("no xz: run scripts/install-deps.sh vm")
	}
	img := t.TempDir()
	want := bytes.Repeat([]byte("070701 a cpio of sorts\n"), 1000)
	raw := filepath.Join(t.TempDir(), "raw")
	if err := os.WriteFile(raw, want, 0o644); err != nil {
		t.Fatal(err)
	}
	xz, err := exec.Command("xz", "-c", "--check=crc32", raw).Output()
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(img, build.Initramfs)
	if err := os.WriteFile(src, xz, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	got, err := Uncompressed(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(got); !bytes.Equal(b, want) {
		t.Fatalf("%s holds %d bytes, want the %d uncompressed ones", got, len(b), len(want))
	}

	// Kept while the xz file is not newer; made again once it is.
	if err := os.WriteFile(got, []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Uncompressed(ctx, img); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(got); string(b) != "kept" {
		t.Fatal("an up-to-date copy was made again")
	}
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(src, later, later); err != nil {
		t.Fatal(err)
	}
	if _, err := Uncompressed(ctx, img); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(got); !bytes.Equal(b, want) {
		t.Fatal("a copy older than the xz file was kept")
	}

	// A broken xz file is an error, and leaves no copy behind.
	if err := os.WriteFile(src, []byte("not xz"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(src, later.Add(time.Hour), later.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := Uncompressed(ctx, img); err == nil {
		t.Fatal("a broken xz file was uncompressed")
	}
	if left, _ := filepath.Glob(filepath.Join(img, "*.tmp")); len(left) > 0 {
		t.Fatalf("partial copies left behind: %v", left)
	}
}
