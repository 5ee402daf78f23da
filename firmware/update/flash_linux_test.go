package update

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// loopDevice attaches a file of size bytes as a loop device (with
// partition scanning) for the test's life. It skips the test unless it
// runs as root with losetup.
func loopDevice(t *testing.T, size int64, prepare func(file string)) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("no losetup")
	}
	file := filepath.Join(t.TempDir(), "backing")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(file, size); err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(file)
	}
	out, err := exec.Command("losetup", "-f", "--show", "-P", file).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// TestFlashDevice flashes onto real block devices (loop devices).
func TestFlashDevice(t *testing.T) {
	img := testImage(t)
	st, _ := os.Stat(img.Path)

	t.Run("larger disk", func(t *testing.T) {
		dev := loopDevice(t, st.Size()+16<<20, nil)
		res, err := Flash(img.Path, dev, quiet)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Device || res.Bytes != st.Size() {
			t.Fatalf("Flash = %+v", res)
		}
		out, err := exec.Command("sfdisk", "--verify", dev).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "No errors detected") {
			t.Fatalf("sfdisk --verify %s: %v\n%s", dev, err, out)
		}
		s, err := ReadBootState(ImageDisk{dev})
		if err != nil || s.Version(SlotA) != "v1" {
			t.Fatalf("boot state on the device: %+v, %v", s, err)
		}
		// Whether the kernel shows the partitions is not checked here:
		// the kernel of the CI machines makes no partitions on loop
		// devices. The VM tests see them on the box's disk.
	})

	t.Run("too small", func(t *testing.T) {
		dev := loopDevice(t, 1<<20, nil)
		if _, err := Flash(img.Path, dev, quiet); err == nil || !strings.Contains(err.Error(), "the image needs") {
			t.Fatalf("flashing a disk smaller than the image: %v", err)
		}
	})

	t.Run("mounted", func(t *testing.T) {
		dev := loopDevice(t, 16<<20, func(file string) {
			if out, err := exec.Command("mkfs.ext4", "-q", "-F", file).CombinedOutput(); err != nil {
				t.Fatalf("mkfs.ext4: %v\n%s", err, out)
			}
		})
		mnt := t.TempDir()
		if out, err := exec.Command("mount", dev, mnt).CombinedOutput(); err != nil {
			t.Skipf("cannot mount here: %v\n%s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })
		before, _ := os.ReadFile(dev)
		_, err := Flash(img.Path, dev, quiet)
		if err == nil || !strings.Contains(err.Error(), "mounted on "+mnt) {
			t.Fatalf("flashing a mounted device: %v", err)
		}
		if after, _ := os.ReadFile(dev); string(after[:4096]) != string(before[:4096]) {
			t.Fatal("a refused flash wrote to the device")
		}
	})
}

// TestApplyFromDevice reads a bundle written raw onto a block device
// (a USB stick), which is longer than the bundle.
func TestApplyFromDevice(t *testing.T) {
	_, pub := testKeys(t)
	d := testImage(t)
	raw, err := os.ReadFile(writeBundleFile(t, "v2", testParts))
	if err != nil {
		t.Fatal(err)
	}
	stick := loopDevice(t, 1<<20, func(file string) {
		f, err := os.OpenFile(file, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(raw, 0); err != nil {
			t.Fatal(err)
		}
	})
	res, err := Apply(d, stick, pub, SlotA, quiet)
	if err != nil || res.Version != "v2" || res.Slot != SlotB {
		t.Fatalf("Apply from %s: %+v, %v", stick, res, err)
	}
}
