package boot

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/twinpbx/twinpbx/hw/watchdog"
)

type fakeWatchdog struct {
	kicks atomic.Int32
	fail  bool
}

func (f *fakeWatchdog) Kick() error {
	f.kicks.Add(1)
	if f.fail {
		return errors.New("device gone")
	}
	return nil
}
func (f *fakeWatchdog) Timeout() time.Duration                   { return 10 * time.Second }
func (f *fakeWatchdog) BootStatus() (watchdog.BootStatus, error) { return watchdog.BootStatus{}, nil }
func (f *fakeWatchdog) Identity() string                         { return "fake" }
func (f *fakeWatchdog) Close() error                             { return nil }

func TestKeeperKick(t *testing.T) {
	tests := []struct {
		name  string
		ticks int
		fail  bool
		end   string // "hang" or "cancel"
	}{
		{name: "kicks on every tick until the hang", ticks: 3, end: "hang"},
		{name: "kicks until stopped", ticks: 2, end: "cancel"},
		{name: "a failing kick does not stop the keeper", ticks: 3, fail: true, end: "hang"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wd := &fakeWatchdog{fail: tt.fail}
			k := &keeper{log: slog.New(slog.DiscardHandler), wd: wd}
			tick, hang := make(chan time.Time), make(chan time.Time)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan struct{})
			go func() { k.kick(ctx, tick, hang); close(done) }()
			for range tt.ticks {
				tick <- time.Time{} // unbuffered: received by the keeper
			}
			if tt.end == "hang" {
				close(hang)
			} else {
				cancel()
			}
			<-done
			if got := int(wd.kicks.Load()); got != tt.ticks {
				t.Errorf("kicks = %d, want %d", got, tt.ticks)
			}
			select {
			case tick <- time.Time{}:
				t.Error("the keeper still takes ticks after it stopped")
			default:
			}
		})
	}
}

func TestRunChild(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	tests := []struct {
		name    string
		path    string
		args    []string
		wantErr string
	}{
		// The orphaned sleep is reaped along the way; the status is the shell's.
		{name: "exit status", path: "/bin/sh", args: []string{"-c", "sleep 0 & exit 3"}, wantErr: "exited with status 3"},
		{name: "signal", path: "/bin/sh", args: []string{"-c", "kill -KILL $$"}, wantErr: "ended by signal killed"},
		{name: "missing binary", path: "/nonexistent/twinpbx", wantErr: "starting /nonexistent/twinpbx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := runChild(log, tt.path, tt.args, nil, childOpts{})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("runChild = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestRunChildStop(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	tests := []struct {
		name    string
		script  string // obeys SIGTERM or ignores it
		timeout time.Duration
	}{
		{name: "obeys SIGTERM", script: "exec sleep 30", timeout: 20 * time.Second},
		{name: "ignores SIGTERM: killed", script: "trap '' TERM; while :; do sleep 0.05; done", timeout: 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stop := make(chan os.Signal, 1)
			stop <- unix.SIGTERM
			err := runChild(log, "/bin/sh", []string{"-c", tt.script}, nil, childOpts{stop: stop, stopTimeout: tt.timeout})
			if !errors.Is(err, ErrStopped) {
				t.Fatalf("runChild = %v, want ErrStopped", err)
			}
		})
	}
}
