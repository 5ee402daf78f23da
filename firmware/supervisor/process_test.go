package supervisor

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

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
