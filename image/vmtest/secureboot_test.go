package vmtest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/update"
	"github.com/twinpbx/twinpbx/image/build"
	"github.com/twinpbx/twinpbx/internal/waitfor"
)

// Debian's OVMF with Secure Boot: the firmware, a variable store with
// the "snakeoil" test key enrolled in PK, KEK and db (Secure Boot on), and
// that key (passphrase "snakeoil") with its certificate.
const (
	ovmfSecureCode   = "/usr/share/OVMF/OVMF_CODE_4M.snakeoil.fd"
	ovmfSnakeoilVars = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"
	snakeoilKey      = "/usr/share/ovmf/PkKek-1-snakeoil.key"
	snakeoilCert     = "/usr/share/ovmf/PkKek-1-snakeoil.pem"
)

// secureBootAppend is the stage's command line in the Secure Boot test:
// not quiet, so that the kernel's lines about Secure Boot and lockdown
// reach the console.
const secureBootAppend = "twinpbx.modules=virtio_blk,ext4 twinpbx.trial.deadline=90s"

// Console lines of a Secure Boot boot: the kernel's, Debian's lockdown
// patch's, the slot's init's, and OVMF's refusal of an image db does not
// vouch for.
const (
	markerSecureBoot = "Secure boot enabled"
	markerLockdown   = "Kernel is locked down from EFI Secure Boot"
	markerFromSlotA  = `msg="booted from a slot" component=init slot=A`
	markerRefused    = "Access Denied"
	// The kernel's line when kexec_file_load finds no trusted key for a
	// kernel's signature (ENOKEY).
	markerKexecRefused = "kexec_file: Enforced kernel signature verification failed (-126)"
)

// TestSecureBoot boots the image's disk on OVMF with Secure Boot
// enforcing (Debian's snakeoil keys enrolled), in parallel:
//
//   - signed: the stage signed with the snakeoil key (as make image
//     SB_KEY=... SB_CERT=... signs it) boots, its kernel says Secure Boot
//     is on and locks itself down; slot B, on trial, holds Debian's
//     kernel as shipped, whose signature the locked-down kexec_file_load
//     refuses (Debian's CA is not in the kernel's keyrings), so the stage
//     falls back and kexecs slot A's kernel, signed with the db key, and
//     the box answers SIP OPTIONS;
//   - refused: the signed stage with one character of its command line
//     changed (tampered), and the stage without its signature (as make
//     image makes it without a key), each on a disk of one machine, are
//     both refused by the firmware, and no kernel starts.
func TestSecureBoot(t *testing.T) {
	requireVM(t)
	for _, f := range []string{ovmfSecureCode, ovmfSnakeoilVars, snakeoilKey, snakeoilCert} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("no Secure Boot firmware or test key: %v (scripts/install-deps.sh vm installs ovmf)", err)
		}
	}
	for _, tool := range []string{"osslsigncode", "sbverify", "sbattach", "openssl", "mcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed: run scripts/install-deps.sh vm", tool)
		}
	}
	img := image(t)
	ctx := context.Background()
	dir := t.TempDir()

	// The test key's passphrase, which OpenSSL would ask for, removed.
	dbKey := filepath.Join(dir, "db.key")
	if out, err := exec.Command("openssl", "pkey", "-in", snakeoilKey, "-passin", "pass:snakeoil", "-out", dbKey).CombinedOutput(); err != nil {
		t.Fatalf("decrypting the snakeoil key: %v\n%s", err, out)
	}
	stageCmdline := KernelCmdline(secureBootAppend)
	res, err := build.BuildDisk(ctx, build.DiskOptions{Image: img, Out: dir, Version: "v1", Key: updateKey(t), DataSize: 32 << 20,
		StageCmdline: stageCmdline, SecureBoot: &build.SecureBoot{Key: dbKey, Cert: snakeoilCert}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.StageSigners) != 1 || !strings.Contains(res.StageSigners[0].Subject, "SnakeOil") {
		t.Fatalf("the stage's signers: %+v", res.StageSigners)
	}
	if len(res.KernelSigners) != 1 || !strings.Contains(res.KernelSigners[0].Subject, "SnakeOil") {
		t.Fatalf("the bundle's kernel's signers: %+v", res.KernelSigners)
	}
	// Signed at the kernel package's date (the date Build gives the
	// image's bzImage), inside the snakeoil certificate's validity
	// (2020-2120), where kexec takes a signature.
	if os.Getenv("TWINPBX_IMAGE") == "" && os.Getenv("SOURCE_DATE_EPOCH") == "" {
		st, err := os.Stat("/boot/vmlinuz-" + build.KernelRelease)
		if err != nil {
			t.Fatal(err)
		}
		if want := st.ModTime().UTC().Truncate(time.Second); !res.SigningTime.Equal(want) {
			t.Errorf("signed at %v, want the kernel package's date %v", res.SigningTime, want)
		}
	}
	t.Logf("signed for Secure Boot at %v", res.SigningTime)
	signedDisk := filepath.Join(dir, build.Disk)

	// Slot B on trial holds a bundle whose kernel is Debian's as
	// shipped (signed by Debian, not by a key in db), as a bundle built
	// without SB_KEY would: the locked-down stage's kexec must refuse it
	// and fall back to slot A.
	debianKernel, err := os.ReadFile(filepath.Join(img, build.BzImage))
	if err != nil {
		t.Fatal(err)
	}
	initramfs, err := os.ReadFile(filepath.Join(img, build.Initramfs))
	if err != nil {
		t.Fatal(err)
	}
	var v2 bytes.Buffer
	if err := update.WriteBundle(&v2, updateKey(t), "v2-debian-signed", []update.Part{{Name: update.PartKernel, Data: debianKernel}, {Name: update.PartInitramfs, Data: initramfs}}); err != nil {
		t.Fatal(err)
	}
	v2File := filepath.Join(dir, "v2.bundle")
	if err := os.WriteFile(v2File, v2.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	disk := update.ImageDisk{Path: signedDisk}
	if r, err := update.Apply(disk, v2File, updateKey(t).Public().(ed25519.PublicKey), update.NoSlot, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	} else if r.Slot != update.SlotB {
		t.Fatalf("v2 went to slot %v, want B", r.Slot)
	}
	signed, err := os.ReadFile(filepath.Join(dir, build.UKI))
	if err != nil {
		t.Fatal(err)
	}

	// The tampered stage: the signed one with the trial deadline changed.
	tampered := bytes.Replace(signed, []byte("twinpbx.trial.deadline=90s"), []byte("twinpbx.trial.deadline=99s"), 1)
	if bytes.Equal(tampered, signed) {
		t.Fatal("the stage's command line is not in the signed stage")
	}
	// The unsigned stage: the signed one with its signature removed.
	unsigned := filepath.Join(dir, "unsigned.efi")
	if err := os.WriteFile(unsigned, signed, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sbattach", "--remove", unsigned).CombinedOutput(); err != nil {
		t.Fatalf("removing the stage's signature: %v\n%s", err, out)
	}
	unsignedStage, err := os.ReadFile(unsigned)
	if err != nil {
		t.Fatal(err)
	}

	// Both refused stages are on disks of one machine: the firmware
	// tries each disk in turn, and must refuse both.
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		var drives []string
		for _, stage := range [][]byte{tampered, unsignedStage} {
			disk := filepath.Join(t.TempDir(), build.Disk)
			if out, err := exec.Command("cp", "--sparse=always", signedDisk, disk).CombinedOutput(); err != nil {
				t.Fatalf("copying the disk image: %v\n%s", err, out)
			}
			replaceStage(t, disk, stage)
			if err := build.VerifyStage(ctx, espStage(t, disk), snakeoilCert); err == nil {
				t.Fatal("a stage put on the disk verifies: the case tests nothing")
			}
			drives = append(drives, "-drive", "file="+disk+",if=virtio,format=raw")
		}
		// No NIC: after refusing the disks the firmware would try to
		// boot from the network.
		m := boot(t, Config{Image: img, NoUserNet: true, Firmware: ovmfSecureCode, FirmwareVars: ovmfVars(t), Extra: drives})
		ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		at, err := m.WaitConsole(ctx, markerRefused)
		if err != nil {
			t.Fatal(err)
		}
		waitfor.Cond(t, 5*time.Minute, "the firmware refusing the second disk's stage", func() bool {
			return strings.Count(m.Console(), markerRefused) >= 2
		})
		m.Kill()
		out := m.Console()
		if n := strings.Count(out, markerRefused); n != 2 {
			t.Fatalf("%q %d times on the console, want 2 (the tampered and the unsigned stage)", markerRefused, n)
		}
		for _, bad := range []string{"EFI stub", "Linux version", markerSecureBoot} {
			if strings.Contains(out, bad) {
				t.Fatalf("the firmware refused the stages, yet the console shows %q", bad)
			}
		}
		t.Logf("tampered and unsigned stages refused by the firmware %v after QEMU start: %s", at.Round(10*time.Millisecond), consoleLine(out, markerRefused))
	})

	t.Run("signed", func(t *testing.T) {
		t.Parallel()
		c := Config{Image: img, SIPPort: freeUDPPort(t), Firmware: ovmfSecureCode, FirmwareVars: ovmfVars(t),
			Extra: []string{"-drive", "file=" + signedDisk + ",if=virtio,format=raw"}}
		m := boot(t, c)
		// Under TCG with SMM the firmware alone took 45 s on this
		// 2-core machine at load 20, and the whole boot 3.6 min.
		ctx, cancel := context.WithTimeout(ctx, 8*time.Minute)
		defer cancel()
		var steps []string
		for _, marker := range []string{"BdsDxe: starting Boot", markerKexecRefused, markerFellBack, markerFromSlotA, markerSIP} {
			at, err := m.WaitConsole(ctx, marker)
			if err != nil {
				t.Fatal(err)
			}
			steps = append(steps, fmt.Sprintf("%s %v", marker, at.Round(100*time.Millisecond)))
		}
		server, err := Options(ctx, fmt.Sprintf("127.0.0.1:%d", c.SIPPort))
		if err != nil {
			t.Fatal(err)
		}
		m.Kill()
		out := m.Console()
		// Both kernels, the stage's and the slot's it kexecs, run with
		// Secure Boot on and locked down.
		if n := strings.Count(out, markerSecureBoot); n != 2 {
			t.Errorf("%q %d times on the console, want 2 (the stage's kernel and the slot's)", markerSecureBoot, n)
		}
		if n := strings.Count(out, markerLockdown); n != 2 {
			t.Errorf("%q %d times on the console, want 2", markerLockdown, n)
		}
		if strings.Index(out, markerSIP) < strings.Index(out, markerFromSlotA) {
			t.Fatal("SIP served before the slot booted")
		}
		if !strings.Contains(out, `msg="boot stage: the trial slot cannot be started" component=init slot=B err="boot stage: loading slot B's kernel (kexec_file_load): required key not available"`) {
			t.Error("the stage did not say why slot B's Debian-signed kernel was refused")
		}
		st, err := update.ReadBootState(disk)
		if err != nil {
			t.Fatal(err)
		}
		if st.Active != update.SlotA || st.Trial != update.NoSlot || st.Failed != "v2-debian-signed" {
			t.Errorf("boot state after the refused trial: %+v", st)
		}
		t.Logf("signed stage: %s; OPTIONS answered by %s; after QEMU start: %s", consoleLine(out, markerSecureBoot), server, strings.Join(steps, ", "))
	})
}

// ovmfVars is a writable copy of the Secure Boot firmware's variable
// store, for one machine.
func ovmfVars(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(ovmfSnakeoilVars)
	if err != nil {
		t.Fatal(err)
	}
	vars := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
	if err := os.WriteFile(vars, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return vars
}

// replaceStage writes stage as BOOTX64.EFI on the EFI system partition of
// the disk image at path (mtools on a copy of the partition, then only
// the blocks that changed are written back).
func replaceStage(t *testing.T, path string, stage []byte) {
	t.Helper()
	esp, err := update.ImageDisk{Path: path}.Open(update.PartESP)
	if err != nil {
		t.Fatal(err)
	}
	defer esp.Close()
	fat := make([]byte, esp.Size())
	if _, err := esp.ReadAt(fat, 0); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fatFile, stageFile := filepath.Join(dir, "esp"), filepath.Join(dir, build.UKI)
	if err := os.WriteFile(fatFile, fat, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stageFile, stage, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mcopy", "-o", "-i", fatFile, stageFile, "::/EFI/BOOT/"+build.UKI).CombinedOutput(); err != nil {
		t.Fatalf("putting the stage on the EFI system partition: %v\n%s", err, out)
	}
	changed, err := os.ReadFile(fatFile)
	if err != nil {
		t.Fatal(err)
	}
	const blk = 64 << 10
	for off := 0; off < len(changed); off += blk {
		end := min(off+blk, len(changed))
		if bytes.Equal(changed[off:end], fat[off:end]) {
			continue
		}
		if _, err := esp.WriteAt(changed[off:end], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if err := esp.Sync(); err != nil {
		t.Fatal(err)
	}
}

// espStage copies BOOTX64.EFI out of the EFI system partition of the
// disk image at path into a file of its own.
func espStage(t *testing.T, path string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), build.UKI)
	if err := build.ExtractStage(context.Background(), path, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// consoleLine is the first console line that holds s.
func consoleLine(out, s string) string {
	i := slices.IndexFunc(strings.Split(out, "\n"), func(l string) bool { return strings.Contains(l, s) })
	if i < 0 {
		return ""
	}
	return strings.TrimSpace(strings.Split(out, "\n")[i])
}

func TestArgsSecureBoot(t *testing.T) {
	args := strings.Join(Args(Config{Image: "/img", Accel: "tcg", MemoryMB: 512, Firmware: "/code.fd", FirmwareVars: "/vars.fd"}), " ")
	for _, want := range []string{
		"-machine q35,smm=on", "-global driver=cfi.pflash01,property=secure,value=on",
		"if=pflash,format=raw,unit=0,readonly=on,file=/code.fd", "if=pflash,format=raw,unit=1,file=/vars.fd",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("QEMU args lack %q:\n%s", want, args)
		}
	}
	for _, bad := range []string{"-bios", "-kernel", "-append"} {
		if strings.Contains(args, bad) {
			t.Errorf("QEMU args hold %q:\n%s", bad, args)
		}
	}
	if args := strings.Join(Args(Config{Image: "/img", Firmware: "/ovmf.fd"}), " "); !strings.Contains(args, "-bios /ovmf.fd") || strings.Contains(args, "smm=on") || strings.Contains(args, "pflash") {
		t.Errorf("without a variable store the firmware is not a -bios: %s", args)
	}
}
