package vmtest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/update"
	"github.com/twinpbx/twinpbx/image/build"
)

// testKeyFile signs the bundles of the VM tests; its public half is in
// the image the tests build. With TWINPBX_IMAGE, TWINPBX_UPDATE_KEY names
// the key that image was built with.
const testKeyFile = "../../firmware/update/testdata/test.key"

func updateKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	path := testKeyFile
	if os.Getenv("TWINPBX_IMAGE") != "" {
		path = os.Getenv("TWINPBX_UPDATE_KEY")
		if path == "" {
			t.Fatal("TWINPBX_IMAGE is set: TWINPBX_UPDATE_KEY must name the key the image was built with (make image: out/keys/update.key)")
		}
	}
	k, err := update.LoadPrivateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// OVMF is the UEFI firmware (Debian's ovmf) the good update boots with.
const OVMF = "/usr/share/ovmf/OVMF.fd"

// stageAppend is what the tests add to the kernel command line: the
// disk's modules, and a trial deadline TCG can meet.
const stageAppend = "quiet twinpbx.modules=virtio_blk,ext4 twinpbx.trial.deadline=90s"

// Console lines of the A/B boot (init's log).
const (
	markerCommitted = `msg="update committed: the trial slot is now the active slot"`
	markerFellBack  = `msg="UPDATE FAILED: the trial boot did not commit; falling back"`
)

// TestUpdate boots the disk image through the boot stage. A bundle put
// on trial boots once and commits when the box is healthy (booted as a
// board does: UEFI firmware, the stage from the EFI system partition,
// kexec into the slot; the bundle applied to the VM's disk by
// update.Apply, the code of `twinpbx update`, while the VM is off). A
// broken bundle (its kernel finds no initramfs and panics) on an update
// stick is applied by the box itself, tried once, and the box falls back
// to the slot it ran before and leaves the stick alone (the stage
// started with -kernel, which is quicker).
func TestUpdate(t *testing.T) {
	requireVM(t)
	img := image(t)
	if _, err := os.Stat(OVMF); err != nil {
		t.Fatalf("no UEFI firmware %s: run scripts/install-deps.sh vm", OVMF)
	}
	key := updateKey(t)
	pub := key.Public().(ed25519.PublicKey)
	dir := t.TempDir()
	res, err := build.BuildDisk(context.Background(), build.DiskOptions{Image: img, Out: dir, Version: "v1", Key: key, DataSize: 32 << 20,
		StageCmdline: KernelCmdline(stageAppend)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("disk image %.1f MB (%.1f MB allocated), bundle %.1f MB, made in %v",
		float64(res.Disk.Size)/1e6, float64(res.DiskAllocated)/1e6, float64(res.Bundle.Size)/1e6, res.Duration.Round(10*time.Millisecond))
	disk := update.ImageDisk{Path: filepath.Join(dir, build.Disk)}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	writeBundle := func(version string, parts []update.Part) string {
		var b bytes.Buffer
		if err := update.WriteBundle(&b, key, version, parts); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, version+".bundle")
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	kernel, err := os.ReadFile(filepath.Join(img, build.BzImage))
	if err != nil {
		t.Fatal(err)
	}
	initramfs, err := os.ReadFile(filepath.Join(img, build.Initramfs))
	if err != nil {
		t.Fatal(err)
	}
	state := func() update.State {
		t.Helper()
		s, err := update.ReadBootState(disk)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	bootDisk := func(t *testing.T, firmware string, extra ...string) *Machine {
		return boot(t, Config{
			Image: img, SIPPort: freeUDPPort(t), Firmware: firmware,
			Append: stageAppend,
			// A reboot (a panic, a failed trial) restarts the machine
			// into the boot stage, as on a box.
			Extra: append([]string{"-drive", "file=" + disk.Path + ",if=virtio,format=raw", "-action", "reboot=reset"}, extra...),
		})
	}

	t.Run("good", func(t *testing.T) {
		v2 := writeBundle("v2", []update.Part{{Name: update.PartKernel, Data: kernel}, {Name: update.PartInitramfs, Data: initramfs}})
		r, err := update.Apply(disk, v2, pub, update.NoSlot, log)
		if err != nil {
			t.Fatal(err)
		}
		if r.Slot != update.SlotB {
			t.Fatalf("v2 went to slot %v, want B", r.Slot)
		}
		m := bootDisk(t, OVMF)
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
		defer cancel()
		at, err := m.WaitConsole(ctx, markerCommitted)
		if err != nil {
			t.Fatal(err)
		}
		m.Kill()
		out := m.Console()
		if !strings.Contains(out, "BdsDxe: starting Boot") || strings.Contains(out[:strings.Index(out, "BdsDxe: starting Boot")], "Linux version") {
			t.Fatal("the stage was not started by the UEFI firmware from the EFI system partition")
		}
		if !strings.Contains(out, "twinpbx.slot=B twinpbx.trial=1") {
			t.Fatalf("the trial boot's command line does not name slot B on trial")
		}
		s := state()
		if s.Active != update.SlotB || s.Trial != update.NoSlot || s.Version(update.SlotB) != "v2" {
			t.Fatalf("boot state after the commit: %+v", s)
		}
		t.Logf("good update: committed %v after QEMU start", at.Round(10*time.Millisecond))
	})
	if t.Failed() {
		return
	}

	// The broken bundle comes on an update stick (a second disk with the
	// bundle written raw), which the box applies itself.
	t.Run("broken", func(t *testing.T) {
		v3 := writeBundle("v3-broken", []update.Part{{Name: update.PartKernel, Data: kernel}, {Name: update.PartInitramfs, Data: []byte("not an initramfs")}})
		raw, err := os.ReadFile(v3)
		if err != nil {
			t.Fatal(err)
		}
		stick := filepath.Join(dir, "stick.img")
		if err := os.WriteFile(stick, append(raw, make([]byte, 4096-len(raw)%4096)...), 0o644); err != nil {
			t.Fatal(err)
		}
		m := bootDisk(t, "", "-drive", "file="+stick+",if=virtio,format=raw,readonly=on")
		ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
		defer cancel()
		fellBack, err := m.WaitConsole(ctx, markerFellBack)
		if err != nil {
			t.Fatal(err)
		}
		out := m.Console()
		if !strings.Contains(out, `msg="update stick: bundle written; rebooting to try it" component=init slot=A version=v3-broken`) {
			t.Fatal("the box did not apply the update stick into slot A")
		}
		if !strings.Contains(out, "Kernel panic") {
			t.Fatal("fell back without the broken kernel's panic on the console")
		}
		// After the fallback slot B (v2) boots and serves: the stage and
		// the broken kernel run no twinpbx, so the first SIP listener on
		// the console is slot B's.
		serving, err := m.WaitConsole(ctx, markerSIP)
		if err != nil {
			t.Fatal(err)
		}
		out = m.Console()
		if strings.LastIndex(out, markerSIP) < strings.Index(out, markerFellBack) {
			t.Fatal("SIP not served after the fallback")
		}
		if !strings.Contains(out[strings.Index(out, markerFellBack):], "update stick: its version failed its trial before") {
			t.Fatal("after the fallback the box did not leave the stick's failed version alone")
		}
		m.Kill()
		s := state()
		if s.Active != update.SlotB || s.Trial != update.NoSlot || s.Failed != "v3-broken" {
			t.Fatalf("boot state after the fallback: %+v", s)
		}
		t.Logf("broken update: fell back %v after QEMU start, slot B serving again %v after QEMU start",
			fellBack.Round(10*time.Millisecond), serving.Round(10*time.Millisecond))
	})
}

// testUpdatePub is the public key the test image carries.
func testUpdatePub(t testing.TB) ed25519.PublicKey {
	t.Helper()
	k, err := update.LoadPrivateKey(testKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return k.Public().(ed25519.PublicKey)
}
