package rollout

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/twinpbx/twinpbx/firmware/update"
)

// A SlotBox on a disk image: slot A holds 1.0 and runs; a bundle 2.0
// signed with the box's key is checked and goes on trial in slot B.
func TestSlotBox(t *testing.T) {
	dir := t.TempDir()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "update.pub")
	if err := os.WriteFile(keyPath, update.MarshalPublicKey(pub), 0o600); err != nil {
		t.Fatal(err)
	}
	bundle := func(version string, key ed25519.PrivateKey) []byte {
		var b bytes.Buffer
		parts := []update.Part{{Name: update.PartKernel, Data: []byte("kernel " + version)}, {Name: update.PartInitramfs, Data: []byte("initramfs " + version)}}
		if err := update.WriteBundle(&b, key, version, parts); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	img := filepath.Join(dir, "disk.img")
	if err := update.CreateImage(img, 0, 64<<10, 64<<10, "rollout"); err != nil {
		t.Fatal(err)
	}
	disk := update.ImageDisk{Path: img}
	if err := update.Install(disk, update.SlotA, bundle("1.0", priv), pub); err != nil {
		t.Fatal(err)
	}
	rebooted := 0
	box := &SlotBox{Disk: disk, KeyPath: keyPath, Logger: quiet(), Running: update.SlotA, RebootFunc: func() error { rebooted++; return nil }}
	if got := box.Firmware(); got != "1.0" {
		t.Errorf("Firmware %q, want 1.0", got)
	}

	v2 := filepath.Join(dir, "v2.bundle")
	if err := os.WriteFile(v2, bundle("2.0", priv), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := box.Check(v2)
	if err != nil {
		t.Fatal(err)
	}
	if b.Version != "2.0" || b.Size <= 0 || len(b.SHA256) != 64 {
		t.Errorf("Check: %+v", b)
	}

	_, other, _ := ed25519.GenerateKey(rand.Reader)
	forged := filepath.Join(dir, "forged.bundle")
	if err := os.WriteFile(forged, bundle("2.0", other), 0o600); err != nil {
		t.Fatal(err)
	}
	long := filepath.Join(dir, "long.bundle")
	if err := os.WriteFile(long, append(bundle("2.0", priv), "tail"...), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{forged, long, filepath.Join(dir, "missing"), dir} {
		if _, err := box.Check(bad); err == nil {
			t.Errorf("Check(%s) accepted", filepath.Base(bad))
		}
		if bad != dir {
			if err := box.Apply(bad); err == nil {
				t.Errorf("Apply(%s) accepted", filepath.Base(bad))
			}
		}
	}

	if err := box.Apply(v2); err != nil {
		t.Fatal(err)
	}
	st, err := update.ReadBootState(disk)
	if err != nil {
		t.Fatal(err)
	}
	if st.Trial != update.SlotB || st.Version(update.SlotB) != "2.0" || st.Active != update.SlotA {
		t.Errorf("boot state %+v, want 2.0 on trial in B, A active", st)
	}
	if err := box.Reboot(); err != nil || rebooted != 1 {
		t.Errorf("Reboot: %v, %d calls", err, rebooted)
	}
	// Booted into B, the trial fell back: the failure shows.
	if _, err := update.ChangeBootState(disk, func(s update.State) (update.State, error) {
		_, s = update.Choose(s)
		_, s = update.Choose(s)
		return s, nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := box.LastFailed(); got != "2.0" {
		t.Errorf("LastFailed %q, want 2.0", got)
	}
	nobox := &SlotBox{Disk: disk, KeyPath: keyPath, Running: update.NoSlot}
	if got := nobox.Firmware(); got != "" {
		t.Errorf("not booted from a slot: Firmware %q, want empty", got)
	}
}
