package vmtest

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestWizard boots the image on a blank data disk, as a new box: init
// must make its file system, store the first-boot config and run the
// setup wizard on the serial console (line by line, as ttyS0 may be a
// dumb terminal). The test types through it, and then the box must run
// the wizard's config: a REGISTER of the new extension with the password
// the wizard showed gets 200, and the console comes back as the
// dashboard, locked by the new PIN, showing the phone. The dashboard
// then reboots the machine (the same QEMU, reset): e2fsck -p must find
// the data partition clean, and the box must mount it without
// formatting it again and run the wizard's config (the same REGISTER
// gets 200). Last, a factory reset from the dashboard
// wipes the data and reboots into the wizard.
func TestWizard(t *testing.T) {
	requireVM(t)
	img := image(t)

	// An *os.File, so QEMU reads it directly: exec's copier goroutine for
	// another reader would keep Wait from returning after QEMU ended.
	in, typing, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	port := freeUDPPort(t)
	// A blank data disk, as on a new box; a reboot resets the machine
	// (the same QEMU) instead of ending it.
	disk := filepath.Join(t.TempDir(), "data.img")
	if err := os.WriteFile(disk, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 64<<20); err != nil {
		t.Fatal(err)
	}
	raw, err := Uncompressed(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	m := boot(t, Config{Image: img, SIPPort: port, Input: in, Initrd: raw,
		Append: "quiet twinpbx.data=/dev/vda twinpbx.modules=virtio_blk,crc32c_generic,ext4",
		Extra:  []string{"-drive", "file=" + disk + ",if=virtio,format=raw", "-action", "reboot=reset"}})
	t.Cleanup(func() { typing.Close(); in.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()

	off := 0
	expect := func(s string) {
		t.Helper()
		var err error
		if off, err = m.WaitConsoleFrom(ctx, off, s); err != nil {
			t.Fatal(err)
		}
	}
	typeLine := func(s string) {
		t.Helper()
		if _, err := io.WriteString(typing, s+"\n"); err != nil {
			t.Fatalf("typing %q: %v", s, err)
		}
	}
	answer := func(prompt, s string) {
		t.Helper()
		expect(prompt)
		typeLine(s)
	}

	expect("data partition formatted and mounted")
	formatted := time.Since(m.Started)
	answer("Console language:", "")
	// The PBX answers on the first-boot config while the wizard asks.
	if _, err := Options(ctx, fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
		t.Fatalf("the first-boot config does not answer: %v", err)
	}
	expect("Which box is this?")
	answer("Number of your choice [1]:", "")
	answer("Host name of this box: [pbx]", "office")
	expect("How does this box get its LAN address?")
	answer("Number of your choice [1]:", "")
	answer("LAN address of this box with prefix:", GuestIP+"/24")
	answer("Gateway (the office router):", "10.0.2.2")
	answer("DNS servers (separated by commas):", "10.0.2.3")
	answer("Admin PIN for this console:", "271828")
	answer("The same PIN again:", "271828")
	answer("Time zone:", "Europe/Berlin")
	answer("Time servers", "")
	answer("Extension numbers:", "200-201")
	start := off
	expect("Save them as extensions.csv")
	secrets := m.Console()[start:off]
	answer("Number of your choice [1]:", "")
	expect("Line to the telephone network:")
	answer("Number of your choice [1]:", "")
	answer("Emergency numbers", "")
	expect("Extensions:       2 (200-201)")
	answer("Type yes to apply", "yes")
	expect("The configuration is stored.")
	applied := time.Since(m.Started)

	sm := regexp.MustCompile(`200\s+([A-Za-z0-9]{16})`).FindStringSubmatch(secrets)
	if sm == nil {
		t.Fatalf("the wizard showed no password for 200:\n%s", secrets)
	}

	// Init applies the settings, restarts the PBX on the new config and
	// starts the dashboard on the console, in either order.
	stored := off
	for _, s := range []string{"SIP listening on udp:" + GuestIP + ":5060", "Locked. Admin PIN:"} {
		end, err := m.WaitConsoleFrom(ctx, stored, s)
		if err != nil {
			t.Fatal(err)
		}
		off = max(off, end)
	}
	code, err := Register(ctx, fmt.Sprintf("127.0.0.1:%d", port), GuestIP, "200", sm[1])
	if err != nil {
		t.Fatal(err)
	}
	if code != 200 {
		t.Fatalf("REGISTER 200 with the wizard's password: %d, want 200", code)
	}
	registered := time.Since(m.Started)
	if code, err := Register(ctx, fmt.Sprintf("127.0.0.1:%d", port), GuestIP, "201", "wrong-password"); err != nil || code == 200 {
		t.Fatalf("REGISTER 201 with a wrong password: %d, %v; want a refusal", code, err)
	}

	// The console is now the dashboard, locked by the wizard's PIN.
	typeLine("271828")
	expect("Registered phones: 1  200")

	// A reboot from the dashboard: the machine resets, and the box comes
	// back on its data partition, as it was, with the wizard's config.
	answer("> ", "b")
	answer("Press y to confirm", "y")
	expect("rebooting as asked")
	rebooted := off
	// init unmounted it before the reboot: e2fsck finds it clean.
	expect(`msg="e2fsck found the data partition clean"`)
	expect("data partition mounted")
	rebootStart := time.Now()
	for _, s := range []string{"SIP listening on udp:" + GuestIP + ":5060", "Locked. Admin PIN:"} {
		end, err := m.WaitConsoleFrom(ctx, rebooted, s)
		if err != nil {
			t.Fatal(err)
		}
		off = max(off, end)
	}
	if code, err := Register(ctx, fmt.Sprintf("127.0.0.1:%d", port), GuestIP, "200", sm[1]); err != nil || code != 200 {
		t.Fatalf("after the reboot, REGISTER 200 with the wizard's password: %d, %v; want 200", code, err)
	}
	back := time.Since(rebootStart)
	if strings.Contains(m.Console()[rebooted:], "formatted") || strings.Contains(m.Console()[rebooted:], "Console language:") {
		t.Fatal("after the reboot the data partition was formatted again or the wizard ran again")
	}

	// A factory reset from the dashboard: PIN, RESET, then init wipes the
	// data folder and reboots into the wizard, on the same file system.
	typeLine("271828")
	answer("> ", "f")
	answer("Admin PIN:", "271828")
	answer("Type RESET to wipe this box:", "RESET")
	expect("factory reset: data folder wiped")
	expect("rebooting as asked")
	reset := off
	expect("data partition mounted")
	expect("Console language:")
	out := m.Console()
	for _, bad := range []string{"Kernel panic", "rebooting in 5 s", "FACTORY RESET INCOMPLETE", "using a tmpfs"} {
		if strings.Contains(out, bad) {
			t.Fatalf("the console says %q", bad)
		}
	}
	if strings.Contains(out[reset:], "formatted") {
		t.Fatal("the factory reset's reboot formatted the data partition again")
	}
	mkfs, fsck := "?", "?"
	if sm := regexp.MustCompile(`formatted and mounted.* took=(\S+)`).FindStringSubmatch(out); sm != nil {
		mkfs = sm[1]
	}
	if sm := regexp.MustCompile(`e2fsck found the data partition clean.* took=(\S+)`).FindStringSubmatch(out[rebooted:]); sm != nil {
		fsck = sm[1]
	}
	t.Logf("wizard: data partition formatted (in %s) %v after QEMU start; config stored %v; REGISTER with its password answered 200 %v after QEMU start; after the reboot e2fsck -p took %s, REGISTER answered again %v after the data mount",
		mkfs, formatted.Round(10*time.Millisecond), applied.Round(10*time.Millisecond), registered.Round(10*time.Millisecond), fsck, back.Round(10*time.Millisecond))
}
