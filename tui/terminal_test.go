package tui

import (
	"bytes"
	"context"
	"encoding/csv"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
)

var updateScreens = flag.Bool("update", false, "rewrite testdata/screens from the terminal test")

// tmux drives one program in a detached tmux session of 80×24 on a
// server of its own, so the test neither sees nor disturbs other sessions.
type tmux struct {
	t      *testing.T
	socket string
}

func newTmux(t *testing.T, env []string, command ...string) *tmux {
	t.Helper()
	tm := &tmux{t: t, socket: fmt.Sprintf("twinpbx-tui-%d-%d", os.Getpid(), rand.IntN(1<<30))}
	args := []string{"-L", tm.socket, "-f", "/dev/null", "new-session", "-d", "-x", "80", "-y", "24", "-s", "t"}
	// The pane stays after the program exits so its last words can be
	// read. env sets TERM after tmux has set its own.
	args = append(args, "env "+strings.Join(env, " ")+" "+strings.Join(command, " ")+"; echo EXITED $?; sleep 600")
	if out, err := exec.Command("tmux", args...).CombinedOutput(); err != nil {
		t.Fatalf("starting tmux: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", tm.socket, "kill-server").Run() })
	return tm
}

func (tm *tmux) screen() string {
	out, err := exec.Command("tmux", "-L", tm.socket, "capture-pane", "-p", "-t", "t").Output()
	if err != nil {
		tm.t.Fatalf("capture-pane: %v", err)
	}
	return strings.TrimRight(string(out), "\n") + "\n"
}

// waitFor polls the screen until it shows want.
func (tm *tmux) waitFor(want string) string {
	tm.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := tm.screen()
		if strings.Contains(s, want) {
			return s
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("the screen never showed %q; it shows:\n%s", want, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (tm *tmux) keys(keys ...string) {
	tm.t.Helper()
	if out, err := exec.Command("tmux", append([]string{"-L", tm.socket, "send-keys", "-t", "t"}, keys...)...).CombinedOutput(); err != nil {
		tm.t.Fatalf("send-keys %q: %v\n%s", keys, err, out)
	}
}

// typeLine types text literally and presses Enter.
func (tm *tmux) typeLine(text string) {
	tm.t.Helper()
	if text != "" {
		tm.keys("-l", text)
	}
	tm.keys("Enter")
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "twinpbx")
	out, err := exec.Command("go", "build", "-o", bin, "../firmware/twinpbx").CombinedOutput()
	if err != nil {
		t.Fatalf("building twinpbx: %v\n%s", err, out)
	}
	return bin
}

// TestTerminal types through the whole wizard in a real terminal (tmux),
// checks the stored config holds what was typed, runs the box and
// registers one of the extensions the wizard made with sipp, then unlocks
// the dashboard and sees the phone. With -update it writes each page to
// testdata/screens for docs/CONSOLE.md.
func TestTerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs tmux and sipp")
	}
	for _, tool := range []string{"tmux", "sipp"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (scripts/install-deps.sh test)", tool)
		}
	}
	bin := buildBinary(t)
	data := filepath.Join(t.TempDir(), "data")
	// A loopback address of its own, so port 5060 is free on it.
	addr := fmt.Sprintf("127.%d.%d.%d", 64+rand.IntN(128), rand.IntN(256), 2+rand.IntN(250))

	tm := newTmux(t, []string{"TERM=xterm", "NO_COLOR=1"}, bin, "setup", "--data", data)
	screens := map[string]string{}
	page := func(name, want string) {
		t.Helper()
		screens[name] = tm.waitFor(want)
	}
	page("01-language", "Console language:")
	tm.typeLine("")
	page("02-role", "Which box is this?")
	tm.typeLine("")
	page("03-hostname", "Host name of this box:")
	tm.typeLine("office")
	page("04-lan-mode", "How does this box get its LAN address?")
	tm.typeLine("")
	page("05-lan-address", "LAN address of this box with prefix:")
	tm.typeLine(addr + "/8")
	page("06-gateway", "Gateway (the office router):")
	tm.typeLine("10.1.1.1")
	page("06-gateway-error", "is not in this box's subnet")
	tm.keys("C-u")
	tm.typeLine("127.0.0.1")
	page("07-dns", "DNS servers")
	tm.typeLine("")
	page("08-pin", "Admin PIN for this console:")
	tm.typeLine("123456")
	page("08-pin-weak", "too easy to guess")
	tm.typeLine("480613")
	page("09-pin-again", "The same PIN again:")
	tm.typeLine("480613")
	page("10-time-zone", "Time zone:")
	tm.typeLine("Europe/Berlin")
	page("11-ntp", "Time servers")
	tm.typeLine("")
	page("12-extensions", "Extension numbers:")
	tm.typeLine("200-203, 200")
	page("12-extensions-duplicate", "Extension 200 is listed twice.")
	tm.keys("C-u")
	tm.typeLine("200-211")
	page("13-secrets", "Save them as extensions.csv")
	tm.typeLine("")
	page("14-trunk", "Line to the telephone network:")
	tm.keys("Down", "Down")
	tm.typeLine("")
	page("15-msns", "MSNs of the line")
	tm.typeLine("4930111, 4930112")
	page("16-emergency", "Emergency numbers")
	tm.typeLine("")
	page("17-review", "Please check before applying:")
	tm.typeLine("")
	page("18-done", "Enter: quit")
	tm.typeLine("")
	tm.waitFor("EXITED 0")

	if *updateScreens {
		dir := filepath.Join("testdata", "screens")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, s := range screens {
			if err := os.WriteFile(filepath.Join(dir, name+".txt"), []byte(s), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The stored config holds what was typed.
	out, err := exec.Command(bin, "config", "export", "--data", data).CombinedOutput()
	if err != nil {
		t.Fatalf("config export: %v\n%s", err, out)
	}
	cfg, err := config.Parse("exported", out)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Node.Name != "office" || cfg.Node.Network.Address != addr+"/8" || cfg.Node.Network.Gateway != "127.0.0.1" ||
		len(cfg.Extensions) != 12 || cfg.Console.TimeZone != "Europe/Berlin" ||
		cfg.Console.Trunk == nil || strings.Join(cfg.Console.Trunk.MSNs, ",") != "4930111,4930112" ||
		strings.Join(cfg.Console.Emergency, ",") != "110,112" || !config.CheckPIN(cfg.Console.AdminPIN, "480613") {
		t.Fatalf("the stored config differs from what was typed:\n%s", out)
	}
	if bytes.Contains(out, []byte("480613")) {
		t.Fatal("the PIN is stored in plain")
	}
	// The CSV holds the same secrets.
	f, err := os.Open(filepath.Join(data, ExtensionsCSV))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) != 13 || rows[1][0] != "200" || rows[1][2] != cfg.Extensions[0].Secret {
		t.Fatalf("extensions.csv: %v %q", err, rows)
	}

	// Run the box and register extension 101 with the wizard's secret.
	ctx, cancel := context.WithCancel(context.Background())
	run := exec.CommandContext(ctx, bin, "run", "--data", data)
	var runOut bytes.Buffer
	run.Stdout, run.Stderr = &runOut, &runOut
	run.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	run.Cancel = func() error { return run.Process.Signal(syscall.SIGTERM) }
	run.WaitDelay = 5 * time.Second
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = run.Wait()
		if t.Failed() {
			t.Logf("twinpbx run:\n%s", runOut.String())
		}
	})
	waitSocket(t, filepath.Join(data, "twinpbx.sock"))
	ext := cfg.Extensions[1]
	sippPort := 30000 + rand.IntN(2000)*2
	sipp := exec.Command("sipp", "-sf", "../e2e/testdata/sipp/register.xml",
		"-i", "127.0.0.1", "-p", strconv.Itoa(sippPort), "-mp", strconv.Itoa(sippPort+2),
		"-m", "1", "-nostdin", "-timeout", "20", "-timeout_error",
		"-s", ext.Number, "-au", ext.Number, "-ap", ext.Secret, "-key", "expires", "300",
		net.JoinHostPort(addr, "5060"))
	sipp.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if out, err := sipp.CombinedOutput(); err != nil {
		t.Fatalf("sipp could not register %s with the wizard's secret: %v\n%s", ext.Number, err, out)
	}

	// The dashboard is locked by the PIN and shows the phone.
	dash := newTmux(t, []string{"TERM=xterm", "NO_COLOR=1"}, bin, "console", "--data", data)
	dash.waitFor("Locked. Admin PIN:")
	dash.typeLine("480613")
	s := dash.waitFor("Registered phones: 1  201")
	if *updateScreens {
		if err := os.WriteFile(filepath.Join("testdata", "screens", "20-console.txt"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The DNS records come from `twinpbx dns-records` itself.
	dash.keys("d")
	dash.waitFor("Domain of the site")
	dash.typeLine("branch.example.com")
	dash.waitFor("_sip._udp.branch.example.com.")
	dash.keys("x")
	// Outside the box's own console nothing reboots the machine.
	dash.keys("b")
	dash.waitFor("Reboot? Press y to confirm")
	dash.keys("y")
	dash.waitFor("Reboot failed: only the box's own console can reboot it")
	dash.keys("f")
	dash.waitFor("Admin PIN: _")
	dash.typeLine("480613")
	dash.waitFor("Type RESET to wipe this box: _")
	dash.typeLine("RESET")
	dash.waitFor("Factory reset failed: only the box's own console can reboot it")
	dash.keys("q")
	dash.waitFor("EXITED 0")
}

func waitSocket(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered", path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTerminalTwinPages walks box A's and box B's pages up to the pairing
// code in a real terminal, in German for box B, and checks that TERM=dumb
// gets the line-by-line mode.
func TestTerminalTwinPages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs tmux")
	}
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed (scripts/install-deps.sh test)")
	}
	bin := buildBinary(t)
	screens := map[string]string{}
	a := newTmux(t, []string{"TERM=xterm", "NO_COLOR=1"}, bin, "setup", "--data", filepath.Join(t.TempDir(), "a"))
	steps := []struct{ name, want, answer string }{
		{"", "Console language:", ""},
		{"a-02-role", "Which box is this?", "2"},
		{"", "Host name of this box:", ""},
		{"a-04-interface", "Network interface of the office LAN:", ""},
		{"", "LAN address of this box", "192.168.1.21/24"},
		{"", "Gateway", ""},
		{"", "DNS servers", ""},
		{"a-08-twin-name", "Host name of the twin:", ""},
		{"a-09-twin-address", "LAN address of the twin:", "192.168.1.22"},
		{"a-10-vip", "Virtual address the phones use:", "192.168.1.21"},
		{"a-10-vip-error", "the virtual address must be a third", "\x15192.168.1.10"},
		{"a-11-crossover", "Crossover address of this box:", ""},
		{"a-12-crossover-twin", "Crossover address of the twin:", ""},
		{"a-13-pairing-code", "Pairing code of this pair:", ""},
	}
	for _, s := range steps {
		got := a.waitFor(s.want)
		if s.name != "" {
			screens[s.name] = got
		}
		if strings.HasPrefix(s.answer, "\x15") {
			a.keys("C-u")
			s.answer = s.answer[1:]
		}
		switch s.answer {
		case "2":
			a.keys("Down")
			a.typeLine("")
		default:
			a.typeLine(s.answer)
		}
	}
	a.waitFor("Admin PIN for this console:")
	b := newTmux(t, []string{"TERM=xterm", "NO_COLOR=1"}, bin, "setup", "--lang", "de", "--data", filepath.Join(t.TempDir(), "b"))
	for _, s := range []struct{ name, want, answer string }{
		{"b-01-sprache", "Sprache der Konsole:", ""},
		{"", "Welche Box ist das?", "3"},
		{"", "Hostname dieser Box:", ""},
		{"", "Netzwerkschnittstelle", ""},
		{"", "LAN-Adresse dieser Box", "192.168.1.22/24"},
		{"", "Gateway", ""},
		{"", "DNS-Server", ""},
		{"", "Hostname des Zwillings:", ""},
		{"", "LAN-Adresse des Zwillings:", "192.168.1.21"},
		{"", "Virtuelle Adresse für die Telefone:", "192.168.1.10"},
		{"", "Crossover-Adresse dieser Box:", ""},
		{"", "Crossover-Adresse des Zwillings:", ""},
		{"b-13-kopplungscode", "Kopplungscode von Box A:", "ABCDE-FGHJK-MNPQR-STVWX-YZ012"},
		{"b-13-kopplungscode-fehler", "Kopplungscode: ", ""},
	} {
		got := b.waitFor(s.want)
		if s.name != "" {
			screens[s.name] = got
		}
		switch s.answer {
		case "3":
			b.keys("Down", "Down")
			b.typeLine("")
		case "":
			if s.name != "b-13-kopplungscode-fehler" {
				b.typeLine("")
			}
		default:
			b.typeLine(s.answer)
		}
	}
	dumb := newTmux(t, []string{"TERM=dumb"}, bin, "setup", "--data", filepath.Join(t.TempDir(), "d"))
	screens["dumb-01"] = dumb.waitFor("== Language (Step 1 of 16) ==")
	dumb.typeLine("")
	dumb.waitFor("Number of your choice [1]:")
	if *updateScreens {
		for name, s := range screens {
			if err := os.WriteFile(filepath.Join("testdata", "screens", name+".txt"), []byte(s), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
