package build

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twinpbx/twinpbx/firmware/update"
)

func TestBuildDisk(t *testing.T) {
	priv, err := update.LoadPrivateKey("../../firmware/update/testdata/test.key")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := update.LoadPublicKey("../../firmware/update/testdata/test.pub")
	if err != nil {
		t.Fatal(err)
	}
	build := func() (string, DiskResult) {
		dir := t.TempDir()
		for name, body := range map[string]string{BzImage: "a kernel", Initramfs: "an initramfs"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		res, err := BuildDisk(context.Background(), DiskOptions{Image: dir, Version: "v1", Key: priv, SlotSize: 1 << 20, DataSize: 8 << 20,
			StageCmdline: "console=ttyS0 twinpbx.modules=virtio_blk,ext4"})
		if err != nil {
			t.Fatal(err)
		}
		return dir, res
	}
	dir, res := build()
	_, res2 := build()
	if res.Disk.SHA256 != res2.Disk.SHA256 || res.Bundle.SHA256 != res2.Bundle.SHA256 {
		t.Errorf("two builds differ: %+v / %+v", res, res2)
	}
	if res.DiskAllocated >= res.Disk.Size {
		t.Errorf("disk image not sparse: %d of %d bytes allocated", res.DiskAllocated, res.Disk.Size)
	}

	d := update.ImageDisk{Path: filepath.Join(dir, Disk)}
	s, err := update.ReadBootState(d)
	if err != nil || s.Active != update.SlotA || s.Version(update.SlotA) != "v1" || s.Trial != update.NoSlot {
		t.Fatalf("boot state %+v, %v", s, err)
	}
	b, r, err := update.OpenSlot(d, update.SlotA, pub)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := b.Verify(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := update.OpenSlot(d, update.SlotB, pub); err == nil {
		t.Error("slot B holds a bundle in a new image")
	}
	data, err := d.Open(update.PartData)
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	sb := make([]byte, 1024)
	if _, err := data.ReadAt(sb, 1024); err != nil {
		t.Fatal(err)
	}
	if magic := binary.LittleEndian.Uint16(sb[56:]); magic != 0xEF53 {
		t.Errorf("data partition: ext superblock magic %#x", magic)
	}
	if label := string(sb[120:132]); label != update.PartData {
		t.Errorf("data partition label %q", label)
	}

	// The EFI system partition holds the unified kernel image, which
	// holds the kernel, the initramfs and the stage's command line.
	esp, err := d.Open(update.PartESP)
	if err != nil {
		t.Fatal(err)
	}
	fat := make([]byte, esp.Size())
	if _, err := esp.ReadAt(fat, 0); err != nil {
		t.Fatal(err)
	}
	esp.Close()
	fatFile := filepath.Join(t.TempDir(), "esp")
	if err := os.WriteFile(fatFile, fat, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := exec.Command("mcopy", "-n", "-i", fatFile, "::/EFI/BOOT/BOOTX64.EFI", "-").Output()
	if err != nil {
		t.Fatalf("reading BOOTX64.EFI from the EFI system partition: %v", err)
	}
	uki, _ := os.ReadFile(filepath.Join(dir, UKI))
	if !bytes.Equal(got, uki) || len(uki) == 0 {
		t.Fatalf("BOOTX64.EFI on the ESP (%d bytes) is not the unified kernel image (%d bytes)", len(got), len(uki))
	}
	sections, err := exec.Command("objdump", "-h", filepath.Join(dir, UKI)).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".linux", ".initrd", ".cmdline"} {
		if !strings.Contains(string(sections), want) {
			t.Errorf("unified kernel image has no %s section", want)
		}
	}
	if !bytes.Contains(uki, []byte("console=ttyS0 twinpbx.modules=virtio_blk,ext4\x00")) {
		t.Error("unified kernel image lacks the stage's command line")
	}

	bundle, _ := os.ReadFile(filepath.Join(dir, Bundle))
	if _, err := update.OpenVerified(bytesAt(bundle), int64(len(bundle)), pub); err != nil {
		t.Errorf("bundle file: %v", err)
	}
	if _, err := BuildDisk(context.Background(), DiskOptions{Image: dir, Version: "v2", Key: priv, SlotSize: 16, DataSize: 1 << 20}); err == nil {
		t.Error("a bundle larger than the slot: no error")
	}
}

type bytesAt []byte

func (b bytesAt) ReadAt(p []byte, off int64) (int, error) { return copy(p, b[off:]), nil }

// TestPEChecksum: our PE checksum agrees with the one in Debian's EFI
// stub, and two UKIs that differ only in objcopy's timestamp (and so in
// its checksum) come out the same.
func TestPEChecksum(t *testing.T) {
	stub, err := os.ReadFile(EFIStub)
	if err != nil {
		t.Skipf("no EFI stub to compare with (scripts/install-deps.sh vm): %v", err)
	}
	pe := int(binary.LittleEndian.Uint32(stub[0x3c:]))
	at := pe + 4 + 20 + 64
	if got, want := peChecksum(stub, at), binary.LittleEndian.Uint32(stub[at:]); got != want {
		t.Fatalf("checksum of %s: %#x, the file says %#x", EFIStub, got, want)
	}
	a, b := bytes.Clone(stub), bytes.Clone(stub)
	binary.LittleEndian.PutUint32(a[pe+8:], 1111)
	binary.LittleEndian.PutUint32(b[pe+8:], 2222)
	binary.LittleEndian.PutUint32(b[at:], 12345)
	for _, x := range [][]byte{a, b} {
		if err := zeroPETimestamp(x); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(a, b) {
		t.Error("two builds that differ in their timestamp differ after zeroPETimestamp")
	}
}
