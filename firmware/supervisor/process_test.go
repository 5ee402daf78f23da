package supervisor

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// parentProc is a supervisor running in its own process (the test binary
// in parent mode).
type parentProc struct {
	cmd      *exec.Cmd
	childPID int
	lines    chan string
}

// startParent starts a supervisor process over children playing modes and
// waits until its first child is ready. Both are killed at cleanup.
func startParent(t *testing.T, modes ...string) *parentProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &parentProc{cmd: exec.Command(exe), lines: make(chan string, 256)}
	p.cmd.Env = append(os.Environ(), envTestParent+"="+t.TempDir(), envTestModes+"="+strings.Join(modes, ","))
	// Its own group, so the test can signal it alone.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		if p.childPID != 0 {
			_ = unix.Kill(-p.childPID, syscall.SIGKILL)
		}
		_ = p.cmd.Wait()
	})
	for _, l := range p.expect(t, "ready") {
		if _, err := fmt.Sscanf(l, "child %d start", &p.childPID); err == nil {
			break
		}
	}
	if p.childPID == 0 {
		t.Fatal("no child pid in the supervisor's output")
	}
	return p
}

// expect returns the lines the supervisor printed up to the first one
// containing sub.
func (p *parentProc) expect(t *testing.T, sub string) []string {
	t.Helper()
	var seen []string
	deadline := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("supervisor output ended before %q: %q", sub, seen)
			}
			seen = append(seen, l)
			if strings.Contains(l, sub) {
				return seen
			}
		case <-deadline:
			t.Fatalf("no %q from the supervisor: %q", sub, seen)
		}
	}
}

func TestSupervisorProcessPassesOnSignalAndStatus(t *testing.T) {
	tests := []struct {
		sig      syscall.Signal
		mode     string
		wantCode int
	}{
		{syscall.SIGTERM, "healthy:4", 4},
		{syscall.SIGINT, "healthy:0", 0},
	}
	for _, tt := range tests {
		t.Run(unix.SignalName(tt.sig), func(t *testing.T) {
			p := startParent(t, tt.mode)
			if err := p.cmd.Process.Signal(tt.sig); err != nil {
				t.Fatal(err)
			}
			p.expect(t, "got "+tt.sig.String())
			for range p.lines { // drain to EOF before Wait
			}
			err := p.cmd.Wait()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode {
				t.Errorf("supervisor exited with %d, want the child's %d", code, tt.wantCode)
			}
		})
	}
}

func TestChildDiesWithSupervisor(t *testing.T) {
	// A quiet child: one that wrote or kicked would die of the broken
	// pipe or socket anyway, which is not what this test is about.
	p := startParent(t, "quiet")
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the orphaned child to die", func() bool {
		return !alive(p.childPID)
	})
}

// alive reports whether pid runs (a zombie waiting for its reaper does
// not count).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// TestForegroundChildOwnsTerminal runs a supervisor on a pseudo-terminal
// as its controlling terminal, like `twinpbx run` in a shell: the child
// can read the terminal, and the operator's Ctrl-C reaches the child,
// whose clean exit stops the supervisor.
func TestForegroundChildOwnsTerminal(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { _ = ptmx.Close(); _ = tty.Close() })
	// Drain the echo so the terminal never blocks.
	go func() { _, _ = io.Copy(io.Discard, ptmx) }()

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &parentProc{cmd: exec.Command(exe), lines: make(chan string, 256)}
	p.cmd.Env = append(os.Environ(), envTestParent+"="+t.TempDir(), envTestModes+"=readtty", envTestFG+"=1")
	p.cmd.Stdin = tty
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		if p.childPID != 0 {
			_ = unix.Kill(-p.childPID, syscall.SIGKILL)
		}
		_ = p.cmd.Wait()
	})
	for _, l := range p.expect(t, "mode readtty") {
		_, _ = fmt.Sscanf(l, "child %d start", &p.childPID)
	}
	if _, err := io.WriteString(ptmx, "hello\n"); err != nil {
		t.Fatal(err)
	}
	p.expect(t, "read hello")
	p.expect(t, "ready")
	if _, err := ptmx.Write([]byte{0x03}); err != nil { // Ctrl-C
		t.Fatal(err)
	}
	p.expect(t, "got interrupt")
	p.expect(t, "child on the terminal stopped")
	for range p.lines {
	}
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("supervisor ended with %v, want status 0", err)
	}
}
