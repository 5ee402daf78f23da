package vmtest

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestWizard boots the image with an empty data folder: init stores the
// first-boot config and runs the setup wizard on the serial console (line
// by line, as ttyS0 may be a dumb terminal). The test types through it,
// and then the box must run the wizard's config: a REGISTER of the new
// extension with the password the wizard showed gets 200, and the console
// comes back as the dashboard, locked by the new PIN, showing the phone.
// Last, a factory reset from the dashboard wipes the data and reboots.
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
	// The data folder is a tmpfs: the image's ext4 lacks its crc32c
	// module, so a data disk is not mounted yet.
	m := boot(t, Config{Image: img, SIPPort: port, Input: in, Append: "quiet"})
	t.Cleanup(func() { typing.Close(); in.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
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

	// A factory reset from the dashboard: PIN, RESET, then init wipes the
	// data folder and reboots, which ends QEMU (-no-reboot).
	answer("> ", "f")
	answer("Admin PIN:", "271828")
	answer("Type RESET to wipe this box:", "RESET")
	expect("factory reset: data folder wiped")
	if err := m.Wait(ctx); err != nil {
		t.Fatalf("QEMU did not end cleanly at the reboot: %v", err)
	}
	out := m.Console()
	for _, bad := range []string{"Kernel panic", "rebooting in 5 s", "FACTORY RESET INCOMPLETE"} {
		if strings.Contains(out, bad) {
			t.Fatalf("the console says %q", bad)
		}
	}
	if !strings.Contains(out, "rebooting as asked") {
		t.Fatal("init did not reboot as asked")
	}
	t.Logf("wizard: config stored %v after QEMU start; REGISTER with its password answered 200 %v after QEMU start",
		applied.Round(10*time.Millisecond), registered.Round(10*time.Millisecond))
}
