package vmtest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"io"
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

// TestUpdate boots the disk image through the boot stage, each case on
// its own disk (slot A v1 active), the two in parallel:
//
//   - good: bundle v2 is applied to the VM's disk by update.Apply (the
//     code of `twinpbx update`) while the VM is off; the box boots as a
//     board does (UEFI firmware, the stage from the EFI system partition,
//     kexec into the slot), tries slot B once and commits it when healthy;
//   - broken: bundle v3 (a real kernel with an initramfs that is not one:
//     it panics) is on an update stick, which slot A applies itself into
//     slot B; the trial panics, the box falls back to slot A by itself
//     and leaves the stick alone (the stage started with -kernel, which
//     is quicker).
func TestUpdate(t *testing.T) {
	requireVM(t)
	img := image(t)
	if _, err := os.Stat(OVMF); err != nil {
		t.Fatalf("no UEFI firmware %s: run scripts/install-deps.sh vm", OVMF)
	}
	key := updateKey(t)
	pub := key.Public().(ed25519.PublicKey)
	kernel, err := os.ReadFile(filepath.Join(img, build.BzImage))
	if err != nil {
		t.Fatal(err)
	}
	initramfs, err := os.ReadFile(filepath.Join(img, build.Initramfs))
	if err != nil {
		t.Fatal(err)
	}

	// newDisk makes a disk image with v1 in slot A, in its own folder.
	newDisk := func(t *testing.T) (update.ImageDisk, string) {
		dir := t.TempDir()
		res, err := build.BuildDisk(context.Background(), build.DiskOptions{Image: img, Out: dir, Version: "v1", Key: key, DataSize: 32 << 20,
			StageCmdline: KernelCmdline(stageAppend)})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("disk image %.1f MB (%.1f MB allocated), bundle %.1f MB, made in %v",
			float64(res.Disk.Size)/1e6, float64(res.DiskAllocated)/1e6, float64(res.Bundle.Size)/1e6, res.Duration.Round(10*time.Millisecond))
		return update.ImageDisk{Path: filepath.Join(dir, build.Disk)}, dir
	}
	writeBundle := func(t *testing.T, dir, version string, parts []update.Part, pad int) string {
		var b bytes.Buffer
		if err := update.WriteBundle(&b, key, version, parts); err != nil {
			t.Fatal(err)
		}
		if pad > 0 {
			b.Write(make([]byte, pad-b.Len()%pad))
		}
		path := filepath.Join(dir, version+".bundle")
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	state := func(t *testing.T, d update.Disk) update.State {
		t.Helper()
		s, err := update.ReadBootState(d)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	bootDisk := func(t *testing.T, disk update.ImageDisk, firmware string, extra ...string) *Machine {
		return boot(t, Config{
			Image: img, SIPPort: freeUDPPort(t), Firmware: firmware,
			Append: stageAppend,
			// A reboot (a panic, a failed trial) restarts the machine
			// into the boot stage, as on a box.
			Extra: append([]string{"-drive", "file=" + disk.Path + ",if=virtio,format=raw", "-action", "reboot=reset"}, extra...),
		})
	}

	t.Run("good", func(t *testing.T) {
		t.Parallel()
		disk, dir := newDisk(t)
		v2 := writeBundle(t, dir, "v2", []update.Part{{Name: update.PartKernel, Data: kernel}, {Name: update.PartInitramfs, Data: initramfs}}, 0)
		r, err := update.Apply(disk, v2, pub, update.NoSlot, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if r.Slot != update.SlotB {
			t.Fatalf("v2 went to slot %v, want B", r.Slot)
		}
		m := bootDisk(t, disk, OVMF)
		ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
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
		s := state(t, disk)
		if s.Active != update.SlotB || s.Trial != update.NoSlot || s.Version(update.SlotB) != "v2" {
			t.Fatalf("boot state after the commit: %+v", s)
		}
		t.Logf("good update: committed %v after QEMU start", at.Round(10*time.Millisecond))
	})

	t.Run("broken", func(t *testing.T) {
		t.Parallel()
		disk, dir := newDisk(t)
		// Padded as on a stick: a disk is whole sectors.
		stick := writeBundle(t, dir, "v3-broken", []update.Part{{Name: update.PartKernel, Data: kernel}, {Name: update.PartInitramfs, Data: []byte("not an initramfs")}}, 4096)
		m := bootDisk(t, disk, "", "-drive", "file="+stick+",if=virtio,format=raw,readonly=on")
		ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
		defer cancel()
		applied, err := m.WaitConsole(ctx, `msg="update stick: bundle written; rebooting to try it" component=init slot=B version=v3-broken`)
		if err != nil {
			t.Fatal(err)
		}
		fellBack, err := m.WaitConsole(ctx, markerFellBack)
		if err != nil {
			t.Fatal(err)
		}
		out := m.Console()
		if !strings.Contains(out, "Kernel panic") {
			t.Fatal("fell back without the broken kernel's panic on the console")
		}
		// After the fallback slot A (v1) boots and serves: neither the
		// stage, nor slot A applying the stick, nor the broken kernel
		// run twinpbx, so the first SIP listener on the console is
		// slot A's after the fallback.
		serving, err := m.WaitConsole(ctx, markerSIP)
		if err != nil {
			t.Fatal(err)
		}
		m.Kill()
		out = m.Console()
		if strings.Index(out, markerSIP) < strings.Index(out, markerFellBack) {
			t.Fatal("SIP served before the fallback")
		}
		if !strings.Contains(out[strings.Index(out, markerFellBack):], "update stick: its version failed its trial before") {
			t.Fatal("after the fallback the box did not leave the stick's failed version alone")
		}
		s := state(t, disk)
		if s.Active != update.SlotA || s.Trial != update.NoSlot || s.Failed != "v3-broken" {
			t.Fatalf("boot state after the fallback: %+v", s)
		}
		t.Logf("broken update: stick applied %v, fell back %v, slot A serving again %v after QEMU start",
			applied.Round(10*time.Millisecond), fellBack.Round(10*time.Millisecond), serving.Round(10*time.Millisecond))
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
