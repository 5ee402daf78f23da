package boot

import (
	"log/slog"
	"os"
	"testing"
	"time"

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
