package boot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// TestConsolesReaped checks that the console program's exit, reaped by
// init's reaper (here: the test, standing in for runChild), reaches the
// console loop, and that other processes' exits are ignored.
func TestConsolesReaped(t *testing.T) {
	c := newConsoles(slog.New(slog.DiscardHandler), "/bin/true", t.TempDir(), nil, func() []string { return nil })
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// spawn needs a terminal (Setctty): register a plain process in the
	// same table instead.
	p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{Files: []*os.File{f, f, f}})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan unix.WaitStatus, 1)
	c.mu.Lock()
	c.procs[p.Pid] = ch
	c.setups[p.Pid] = true
	c.mu.Unlock()
	c.exited(p.Pid+100000, 0) // someone else's orphan: ignored
	var ws unix.WaitStatus
	deadline := time.Now().Add(10 * time.Second)
	for {
		pid, err := unix.Wait4(p.Pid, &ws, unix.WNOHANG, nil)
		if err != nil {
			t.Fatal(err)
		}
		if pid == p.Pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("true did not end")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.exited(p.Pid, ws)
	select {
	case got := <-ch:
		if !got.Exited() || got.ExitStatus() != 0 {
			t.Errorf("status %v", got)
		}
	default:
		t.Fatal("the console loop did not hear of its program's end")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.procs) != 0 || len(c.setups) != 0 {
		t.Errorf("left in the table: %v %v", c.procs, c.setups)
	}
}

// TestConsolesLoop runs init's console loop on a pseudo-terminal, with
// runChild as the reaper: while the setup is pending the wizard runs;
// once it ends with status 0 the marker is gone, afterSetup has run, and
// the dashboard runs in its place on the terminal.
func TestConsolesLoop(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("SKIPPING: no pseudo-terminals here: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	go func() { _, _ = io.Copy(io.Discard, ptmx) }() // keep the terminal's output flowing

	dir := t.TempDir()
	if err := MarkSetupPending(dir); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "runs")
	prog := filepath.Join(dir, "twinpbx")
	// The wizard ends at once with status 0; the dashboard stays until
	// it is killed. Each run notes its command and whether the terminal
	// is its controlling terminal.
	script := "#!/bin/sh\n" +
		"if [ -t 0 ] && (: </dev/tty) 2>/dev/null; then ctty=ctty; else ctty=none; fi\n" +
		"echo \"$1 $TERM $ctty\" >> " + log + "\n" +
		"[ \"$1\" = setup ] && exit 0\n" +
		"exec sleep 60\n"
	if err := os.WriteFile(prog, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}

	after := make(chan struct{}, 4)
	c := newConsoles(slog.New(slog.DiscardHandler), prog, dir, func() { after <- struct{}{} }, func() []string { return []string{"TZ=Europe/Berlin"} })
	c.dev = "/dev/"
	name := strings.TrimPrefix(tty.Name(), "/dev/")

	ctx, cancel := context.WithCancel(context.Background())
	stop := make(chan os.Signal, 1)
	reaped := make(chan error, 1)
	go func() {
		reaped <- runChild(slog.New(slog.DiscardHandler), "/bin/sleep", []string{"60"}, nil, childOpts{others: c.exited, stop: stop})
	}()
	t.Cleanup(func() {
		cancel()
		stop <- unix.SIGTERM
		if err := <-reaped; !errors.Is(err, ErrStopped) {
			t.Errorf("runChild = %v", err)
		}
	})
	c.start(ctx, []string{name, "ttyS99"}) // ttyS99: no such port, its loop ends

	var runs []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(log)
		runs = strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(runs) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("runs so far: %q", runs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if want := []string{"setup linux ctty", "console linux ctty"}; !slices.Equal(runs[:2], want) {
		t.Errorf("runs %q, want %q", runs, want)
	}
	if SetupPending(dir) {
		t.Error("the setup marker stays after the wizard completed")
	}
	select {
	case <-after:
	default:
		t.Error("afterSetup did not run")
	}
	if len(after) != 0 {
		t.Error("afterSetup ran more than once")
	}
	// The dashboard runs at the consoles' nice value, and so would every
	// thread it starts; init's own threads keep theirs.
	c.mu.Lock()
	pids := slices.Collect(maps.Keys(c.procs))
	c.mu.Unlock()
	if len(pids) != 1 {
		t.Fatalf("console processes %v, want the dashboard alone", pids)
	}
	if n, err := niceOf(pids[0]); err != nil || n != ConsoleNice {
		t.Errorf("the dashboard's nice value %d (%v), want %d", n, err, ConsoleNice)
	}
	if n, err := niceOf(os.Getpid()); err != nil || n != 0 {
		t.Errorf("the test's own nice value %d (%v), want 0 still", n, err)
	}
}

// TestStartNiced: the started process has the nice value from its first
// instruction (it reports it itself), and once startNiced has returned
// the threads of this process are as they were (checked at once, not
// waited for: a thread still niced then could run other goroutines).
func TestStartNiced(t *testing.T) {
	out := filepath.Join(t.TempDir(), "nice")
	for range 20 {
		p, err := startNiced(ConsoleNice, func() (*os.Process, error) {
			f, err := os.Create(out)
			if err != nil {
				return nil, err
			}
			defer f.Close()
			return os.StartProcess("/usr/bin/nice", []string{"nice"}, &os.ProcAttr{Files: []*os.File{nil, f, f}})
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Wait(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(b)); got != strconv.Itoa(ConsoleNice) {
			t.Fatalf("the started process ran at nice %q, want %d", got, ConsoleNice)
		}
	}
	// Every thread of this process is back at (or never left) 0.
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		if n, err := niceOf(tid); err == nil && n != 0 {
			t.Errorf("thread %d left at nice %d", tid, n)
		}
	}
}

// niceOf is the nice value of the task pid (/proc/PID/stat, field 19).
func niceOf(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 17 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	return strconv.Atoi(f[16])
}
