package watchdog

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"golang.org/x/sys/unix"

	"github.com/twinpbx/twinpbx/internal/waitfor"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitfor.Cond(t, 10*time.Second, what, cond)
}

func newFakeSim(t *testing.T, dir string) (*Sim, *clockwork.FakeClock, chan struct{}) {
	t.Helper()
	clock := clockwork.NewFakeClock()
	reset := make(chan struct{}, 1)
	s, err := NewSim(SimConfig{Timeout: 3 * time.Second, Dir: dir, Clock: clock, Logger: quiet,
		OnReset: func() { reset <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, clock, reset
}

func TestSimKickedNeverResets(t *testing.T) {
	s, clock, reset := newFakeSim(t, "")
	for range 20 {
		clock.Advance(2 * time.Second)
		if err := s.Kick(); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-reset:
		t.Fatal("reset although kicked every 2s with a 3s timeout")
	default:
	}
	if s.Fired() {
		t.Fatal("Fired() although kicked")
	}
}

func TestSimResetsAndRecords(t *testing.T) {
	dir := t.TempDir()
	s, clock, reset := newFakeSim(t, dir)
	if bs, _ := s.BootStatus(); bs.WatchdogReset {
		t.Fatal("first boot reported as watchdog reset")
	}
	clock.Advance(time.Second)
	if err := s.Kick(); err != nil {
		t.Fatal(err)
	}
	if want := clock.Now().Add(3 * time.Second); !s.Deadline().Equal(want) {
		t.Errorf("Deadline() = %v, want %v", s.Deadline(), want)
	}
	clock.Advance(3 * time.Second)
	<-reset
	if err := s.Kick(); !errors.Is(err, ErrReset) {
		t.Errorf("Kick after reset = %v, want ErrReset", err)
	}
	// The "node" is gone; its lock with it. The next start sees the record.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	next, _, _ := newFakeSim(t, dir)
	if bs, _ := next.BootStatus(); !bs.WatchdogReset {
		t.Error("next start did not report the watchdog reset")
	}
	_ = next.Close()
	third, _, _ := newFakeSim(t, dir)
	if bs, _ := third.BootStatus(); bs.WatchdogReset {
		t.Error("the reset record outlived the boot after the reset")
	}
}

func TestSimCloseDisarms(t *testing.T) {
	s, clock, reset := newFakeSim(t, "")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	if err := s.Kick(); !errors.Is(err, ErrClosed) {
		t.Errorf("Kick after Close = %v", err)
	}
	select {
	case <-reset:
		t.Fatal("reset after Close")
	default:
	}
}

func TestSimOneHolder(t *testing.T) {
	dir := t.TempDir()
	newFakeSim(t, dir)
	_, err := NewSim(SimConfig{Timeout: time.Second, Dir: dir, Logger: quiet, OnReset: func() {}})
	if !errors.Is(err, unix.EBUSY) {
		t.Fatalf("second holder: err %v, want EBUSY", err)
	}
}

func TestSimBadConfig(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		if _, err := NewSim(SimConfig{Timeout: d}); err == nil {
			t.Errorf("NewSim with timeout %v succeeded", d)
		}
	}
	if _, err := NewSim(SimConfig{Timeout: time.Second, Dir: "/nonexistent/dir"}); err == nil {
		t.Error("NewSim in a missing folder succeeded")
	}
}

// TestSimExitsProcess runs the default reset action in a child process: it
// must exit with ExitCodeReset and leave a record for the next start.
func TestSimExitsProcess(t *testing.T) {
	if dir := os.Getenv("TWINPBX_WATCHDOG_CHILD"); dir != "" {
		if _, err := NewSim(SimConfig{Timeout: 20 * time.Millisecond, Dir: dir}); err != nil {
			os.Exit(2)
		}
		select {}
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestSimExitsProcess$")
	cmd.Env = append(os.Environ(), "TWINPBX_WATCHDOG_CHILD="+dir)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != ExitCodeReset {
		t.Fatalf("child ended with %v, want exit code %d; output:\n%s", err, ExitCodeReset, out)
	}
	s, err := NewSim(SimConfig{Timeout: time.Hour, Dir: dir, OnReset: func() {}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if bs, _ := s.BootStatus(); !bs.WatchdogReset {
		t.Error("restart after the child's reset does not report it")
	}
}
