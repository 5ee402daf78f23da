package update

import (
	"os"
	"path/filepath"
	"testing"
)

func TestStick(t *testing.T) {
	sys, dev := t.TempDir(), t.TempDir()
	bundle := []byte("TWPBXUB1 and the rest")
	for _, d := range []struct {
		name, uevent string
		content      []byte
	}{
		{"vda", "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n", []byte("protective MBR")},
		{"vda2", "MAJOR=254\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nPARTNAME=twinpbx-a\n", bundle},
		{"vda3", "MAJOR=254\nMINOR=3\nDEVNAME=vda3\nDEVTYPE=partition\nPARTNAME=twinpbx-b\n", bundle},
		{"vdb", "MAJOR=254\nMINOR=16\nDEVNAME=vdb\nDEVTYPE=disk\n", bundle},
		{"zram0", "MAJOR=252\nMINOR=0\nDEVNAME=zram0\nDEVTYPE=disk\n", nil},
	} {
		if err := os.MkdirAll(filepath.Join(sys, d.name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sys, d.name, "uevent"), []byte(d.uevent), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dev, d.name), d.content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	disk := DeviceDisk{SysBlock: sys, Dev: dev}
	if got := disk.Stick(); got != filepath.Join(dev, "vdb") {
		t.Fatalf("Stick = %q, want the second disk, not a slot", got)
	}
	if err := os.Remove(filepath.Join(dev, "vdb")); err != nil {
		t.Fatal(err)
	}
	if got := disk.Stick(); got != "" {
		t.Fatalf("Stick without a stick = %q", got)
	}
}
