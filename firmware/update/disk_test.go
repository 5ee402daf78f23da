package update

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testImage is a disk image with a bundle of version v1 in slot A.
func testImage(t *testing.T) ImageDisk {
	t.Helper()
	priv, pub := testKeys(t)
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := CreateImage(path, 0, 64<<10, 64<<10, "test"); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteBundle(&b, priv, "v1", testParts); err != nil {
		t.Fatal(err)
	}
	d := ImageDisk{path}
	if err := Install(d, SlotA, b.Bytes(), pub); err != nil {
		t.Fatal(err)
	}
	return d
}

func writeBundleFile(t *testing.T, version string, parts []Part) string {
	t.Helper()
	priv, _ := testKeys(t)
	var b bytes.Buffer
	if err := WriteBundle(&b, priv, version, parts); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), version+".bundle")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestApply(t *testing.T) {
	_, pub := testKeys(t)
	d := testImage(t)
	s, err := ReadBootState(d)
	if err != nil || s.Active != SlotA || s.Version(SlotA) != "v1" {
		t.Fatalf("fresh image: %+v, %v", s, err)
	}
	v2 := []Part{{PartKernel, []byte("kernel two")}, {PartInitramfs, []byte("initramfs two")}}
	res, err := Apply(d, writeBundleFile(t, "v2", v2), pub, SlotA, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if res.Slot != SlotB || res.Version != "v2" {
		t.Fatalf("Apply = %+v", res)
	}
	s, _ = ReadBootState(d)
	if s.Trial != SlotB || s.TriesLeft != TrialTries || s.Version(SlotB) != "v2" || s.Active != SlotA {
		t.Fatalf("after Apply: %+v", s)
	}
	b, r, err := OpenSlot(d, SlotB, pub)
	if err != nil {
		t.Fatal(err)
	}
	var k bytes.Buffer
	if err := b.Extract(PartKernel, &k); err != nil || k.String() != "kernel two" {
		t.Fatalf("slot B kernel %q, %v", k.String(), err)
	}
	r.Close()

	// A second update before the trial committed is refused.
	if _, err := Apply(d, writeBundleFile(t, "v3", v2), pub, SlotA, quiet); err == nil || !strings.Contains(err.Error(), "trial") {
		t.Fatalf("update during a trial: %v", err)
	}
}

func TestApplyRefuses(t *testing.T) {
	_, pub := testKeys(t)
	other, _ := LoadPublicKey("testdata/other.pub")
	good := writeBundleFile(t, "v2", testParts)
	raw, _ := os.ReadFile(good)
	write := func(b []byte) string {
		p := filepath.Join(t.TempDir(), "b")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	corrupt := append([]byte{}, raw...)
	corrupt[len(corrupt)-1] ^= 1
	big := writeBundleFile(t, "big", []Part{{PartKernel, make([]byte, 1100<<10)}, {PartInitramfs, nil}})
	tests := []struct {
		name    string
		file    string
		key     []byte
		running Slot
		want    string
	}{
		{"other key", good, other, SlotA, "signature"},
		{"corrupt part", write(corrupt), pub, SlotA, "does not match"},
		{"trailing bytes", write(append(append([]byte{}, raw...), 0)), pub, SlotA, "after its end"},
		{"running the inactive slot", good, pub, SlotB, "is running"},
		{"too big for the slot", big, pub, SlotA, "does not fit"},
		{"no file", filepath.Join(t.TempDir(), "none"), pub, SlotA, "opening the bundle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := testImage(t)
			before, _ := ReadBootState(d)
			_, err := Apply(d, tt.file, tt.key, tt.running, quiet)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Apply: %v, want %q", err, tt.want)
			}
			after, _ := ReadBootState(d)
			if after.Trial != NoSlot || after.Active != before.Active || after.Version(SlotA) != "v1" {
				t.Fatalf("a refused update changed the boot state: %+v → %+v", before, after)
			}
		})
	}
}

func TestDeviceDisk(t *testing.T) {
	sys := t.TempDir()
	for dev, uevent := range map[string]string{
		"vda":  "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n",
		"vda2": "MAJOR=254\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=twinpbx-a\n",
		"vda4": "MAJOR=254\nMINOR=4\nDEVNAME=vda4\nDEVTYPE=partition\nPARTN=4\nPARTNAME=twinpbx-data\n",
	} {
		if err := os.MkdirAll(filepath.Join(sys, dev), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sys, dev, "uevent"), []byte(uevent), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d := DeviceDisk{SysBlock: sys, Dev: "/dev"}
	if got, err := d.Device(PartData); err != nil || got != "/dev/vda4" {
		t.Errorf("Device(data) = %q, %v", got, err)
	}
	if _, err := d.Device(PartB); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Device(b) error %v, want not exist", err)
	}
}

func TestFlashFile(t *testing.T) {
	d := testImage(t)
	target := filepath.Join(t.TempDir(), "box.img")
	res, err := Flash(d.Path, target, quiet)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(d.Path)
	b, _ := os.ReadFile(target)
	if !bytes.Equal(a, b) || res.Bytes != int64(len(a)) || res.Device {
		t.Fatalf("flashed %d bytes (%+v), image %d", len(b), res, len(a))
	}
	s, err := ReadBootState(ImageDisk{target})
	if err != nil || s.Version(SlotA) != "v1" {
		t.Fatalf("flashed disk state %+v, %v", s, err)
	}
	// Not an image of ours.
	junk := filepath.Join(t.TempDir(), "junk")
	_ = os.WriteFile(junk, make([]byte, 1<<20), 0o644)
	if _, err := Flash(junk, filepath.Join(t.TempDir(), "x"), quiet); err == nil || !strings.Contains(err.Error(), "not a twinpbx disk image") {
		t.Fatalf("flashing junk: %v", err)
	}
	if _, err := Flash(d.Path, t.TempDir(), quiet); err == nil {
		t.Fatal("flashing onto a folder: no error")
	}
}

func TestMounted(t *testing.T) {
	mi, err := os.ReadFile("testdata/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		devs map[string]bool
		want string
	}{
		{map[string]bool{"8:0": true, "8:1": true, "8:2": true}, "/boot/efi"},
		{map[string]bool{"8:16": true}, ""},
		{map[string]bool{"254:1": true}, "/"},
	}
	for _, tt := range tests {
		if got := mountedIn(mi, tt.devs); got != tt.want {
			t.Errorf("mountedIn(%v) = %q, want %q", tt.devs, got, tt.want)
		}
	}
	// The partitions of a disk come from sysfs.
	sys := t.TempDir()
	for _, p := range []string{"sda1", "sda2"} {
		_ = os.MkdirAll(filepath.Join(sys, "8:0", p), 0o755)
		_ = os.WriteFile(filepath.Join(sys, "8:0", p, "partition"), []byte("1\n"), 0o644)
	}
	_ = os.WriteFile(filepath.Join(sys, "8:0", "sda1", "dev"), []byte("8:1\n"), 0o644)
	_ = os.WriteFile(filepath.Join(sys, "8:0", "sda2", "dev"), []byte("8:5\n"), 0o644)
	e := flashEnv{mountinfo: "testdata/mountinfo", sysDev: sys}
	if got, err := e.mountedOn("8:0"); err != nil || got != "/boot/efi" {
		t.Errorf("mountedOn(sda) = %q, %v", got, err)
	}
	if got, err := e.mountedOn("8:16"); err != nil || got != "" {
		t.Errorf("mountedOn(sdb) = %q, %v", got, err)
	}
}
