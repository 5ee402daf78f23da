package vmtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/image/build"
)

// Console lines the tests wait for: printed by twinpbx when its SIP
// listener is up, and by init when the debug hang begins.
const (
	markerSIP  = "SIP listening on udp:"
	markerHang = "debug hang: no longer kicking the watchdog"
)

func TestArgs(t *testing.T) {
	args := Args(Config{Image: "/img", Accel: "tcg", MemoryMB: 512, SIPPort: 15060, WatchdogAction: "poweroff", Append: "twinpbx.debug.hang=5s"})
	joined := strings.Join(args, " ")
	for _, want := range []string{
		"-accel tcg", "-machine q35", "-m 512", "-device i6300esb", "-action watchdog=poweroff", "-no-reboot",
		"hostfwd=udp:127.0.0.1:15060-:5060", "-device virtio-net-pci,netdev=lan",
		"-kernel /img/vmlinux", "-initrd /img/initramfs.cpio.xz",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("QEMU args lack %q:\n%s", want, joined)
		}
	}
	i := slices.Index(args, "-append")
	if i < 0 || !strings.HasSuffix(args[i+1], " twinpbx.debug.hang=5s") || !strings.Contains(args[i+1], "twinpbx.ip=10.0.2.15/24") {
		t.Errorf("kernel command line %q", args[i+1])
	}
}

func TestAnswerServer(t *testing.T) {
	const id = "0123456789abcdef"
	answer := func(status, callID, extra string) []byte {
		return []byte("SIP/2.0 " + status + "\r\nVia: SIP/2.0/UDP 127.0.0.1:5;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\n" +
			"Call-ID: " + callID + "\r\nCSeq: 1 OPTIONS\r\n" + extra + "Content-Length: 0\r\n\r\n")
	}
	tests := []struct {
		name    string
		in      []byte
		want    string
		wantErr string
	}{
		{"ok", answer("200 OK", id, "Server: twinpbx/a\r\n"), "twinpbx/a", ""},
		{"error answers count", answer("404 Not Found", id, "Server: twinpbx/b\r\n"), "twinpbx/b", ""},
		{"no server", answer("200 OK", id, ""), "", "no Server header"},
		{"other call", answer("200 OK", "other", "Server: twinpbx/a\r\n"), "", "another request"},
		{"provisional", answer("100 Trying", id, "Server: twinpbx/a\r\n"), "", "provisional"},
		{"request", OptionsRequest("127.0.0.1:5", "127.0.0.1:6", id), "", "request"},
		{"garbage", []byte("\x00\x01 not sip"), "", "parsing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AnswerServer(tt.in, id)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("AnswerServer = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func FuzzAnswerServer(f *testing.F) {
	f.Add([]byte("SIP/2.0 200 OK\r\nCall-ID: x\r\nServer: twinpbx/a\r\nContent-Length: 0\r\n\r\n"))
	f.Add(OptionsRequest("127.0.0.1:5", "127.0.0.1:6", "0123456789abcdef"))
	f.Add([]byte("SIP/2.0 99999999999999999999 X\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = AnswerServer(data, "x") // must not panic
	})
}

// requireVM fails the test, naming what to install, when QEMU, xz or the
// pinned kernel is missing, and skips it (loudly) under -short.
func requireVM(t *testing.T) {
	t.Helper()
	if testing.Short() {
		fmt.Fprintln(os.Stderr, "vmtest: SKIPPING the VM boot tests under -short: the firmware image is not booted")
		t.Skip("VM boot tests skipped under -short")
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("the image is built for linux/amd64 hosts; this is %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	miss := build.MissingTools(build.Options{})
	if _, err := exec.LookPath(QEMU); err != nil {
		miss = append(miss, QEMU)
	}
	if len(miss) > 0 {
		t.Fatalf("missing %s: run scripts/install-deps.sh vm", strings.Join(miss, ", "))
	}
}

// image builds the firmware image for the tests in the user's cache
// folder, where an unchanged initramfs is kept from the last run, or
// takes the one in $TWINPBX_IMAGE (a folder made by make image).
func image(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv("TWINPBX_IMAGE"); dir != "" {
		t.Logf("using the image in %s (TWINPBX_IMAGE)", dir)
		return dir
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	// A build from scratch takes about a minute on a quiet machine, and
	// was seen past 4 minutes on this 2-core one while other builds ran.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	out := filepath.Join(cache, "twinpbx", "vmtest-image")
	res, err := build.Build(ctx, build.Options{Root: root, Out: out, Nice: true, UpdateKey: testUpdatePub(t)})
	if err != nil {
		t.Fatalf("building the image: %v", err)
	}
	for _, f := range res.Files {
		t.Logf("image: %-18s %5.1f MB", f.Name, float64(f.Size)/1e6)
	}
	t.Logf("image built in %v (initramfs kept from an earlier run: %v)", res.Duration.Round(100*time.Millisecond), res.Reused)
	return out
}

// freeUDPPort finds a UDP port on 127.0.0.1 that is free now.
func freeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func boot(t testing.TB, c Config) *Machine {
	t.Helper()
	c.Nice = true
	m, err := Start(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Kill()
		if t.Failed() {
			t.Logf("console:\n%s", m.Console())
		}
	})
	return m
}

// TestBoot boots the image: the box must answer SIP OPTIONS on its
// forwarded port, and, hung on purpose, be reset by its watchdog.
func TestBoot(t *testing.T) {
	requireVM(t)
	img := image(t)

	t.Run("SIP", func(t *testing.T) {
		// Booted as make qemu does: the uncompressed initramfs (the same
		// files; unpacking the xz costs about 4 s under TCG). The
		// watchdog boot below takes the xz one.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		initrd, err := Uncompressed(ctx, img)
		if err != nil {
			t.Fatal(err)
		}
		port := freeUDPPort(t)
		m := boot(t, Config{Image: img, Initrd: initrd, SIPPort: port, Append: bootAppend})
		doneAt, err := m.WaitConsole(ctx, MarkerBootDone)
		if err != nil {
			t.Fatal(err)
		}
		listening, err := m.WaitConsole(ctx, markerSIP)
		if err != nil {
			t.Fatal(err)
		}
		server, err := Options(ctx, fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		ready := time.Since(m.Started)
		if !strings.HasPrefix(server, "twinpbx/") {
			t.Fatalf("OPTIONS answered by %q, want twinpbx/…", server)
		}
		t.Logf("boot: console marker %q %v after QEMU start; SIP OPTIONS answered (Server: %s) %v after QEMU start",
			markerSIP, listening.Round(10*time.Millisecond), server, ready.Round(10*time.Millisecond))
		if up, ok := BootDoneUptime(m.Console()); ok {
			t.Logf("boot: guest uptime %v when init started twinpbx, about %v when OPTIONS was answered",
				up, (up + ready - doneAt).Round(10*time.Millisecond))
		}
	})

	t.Run("watchdog", func(t *testing.T) {
		const hang = 3 * time.Second
		m := boot(t, Config{Image: img, SIPPort: freeUDPPort(t), WatchdogAction: "poweroff", Append: "quiet twinpbx.debug.hang=" + hang.String()})
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		hungAt, err := m.WaitConsole(ctx, markerHang)
		if err != nil {
			t.Fatal(err)
		}
		// The qemu board's watchdog timeout is 10 s; TCG is slow and the
		// machine shared, so allow as much again.
		ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := m.Wait(ctx); err != nil {
			t.Fatalf("QEMU did not power off cleanly after the hang: %v", err)
		}
		out := m.Console()
		for _, bad := range []string{"rebooting", "Kernel panic"} {
			if strings.Contains(out, bad) {
				t.Fatalf("QEMU ended, but not by the watchdog: the console says %q", bad)
			}
		}
		t.Logf("watchdog: powered off %v after the hang began", time.Since(m.Started.Add(hungAt)).Round(10*time.Millisecond))
	})
}
