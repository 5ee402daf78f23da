package rollout

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/internal/waitfor"
)

// countingBox counts the bundle checks.
type countingBox struct {
	fakeBox
	checks atomic.Int32
}

func (b *countingBox) Check(p string) (Bundle, error) { b.checks.Add(1); return b.fakeBox.Check(p) }

func TestWatchStick(t *testing.T) {
	v2 := Bundle{Version: "2.0", Size: 1}
	tests := []struct {
		name     string
		fw       string
		failed   string
		checkErr error
		active   bool
		wantRoll bool
	}{
		{name: "a new version in the active", fw: "1.0", active: true, wantRoll: true},
		{name: "the running version", fw: "2.0", active: true},
		{name: "a version that failed here", fw: "1.0", failed: "2.0", active: true},
		{name: "not a bundle for this box", fw: "1.0", checkErr: errors.New("signature"), active: true},
		{name: "in the standby", fw: "1.0", active: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			box := &countingBox{fakeBox: fakeBox{fw: tt.fw, failed: tt.failed, bundle: v2, checkErr: tt.checkErr}}
			// The pair refuses the roll at once (no healthy standby):
			// what counts here is whether one started.
			r := New(Config{Pair: &fakePair{local: Local{Active: true}}, Box: box, DataDir: t.TempDir(), Logger: quiet()})
			var mu sync.Mutex
			stick, ticks := "/dev/vdc", 0
			find := func() string {
				mu.Lock()
				defer mu.Unlock()
				ticks++
				return stick
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				WatchStick(ctx, StickConfig{Find: find, Active: func() bool { return tt.active }, Box: box, Roll: r, Every: time.Millisecond, Logger: quiet()})
			}()
			t.Cleanup(func() {
				cancel()
				<-done
			})
			waitfor.Cond(t, 20*time.Second, "a few looks for the stick", func() bool { mu.Lock(); defer mu.Unlock(); return ticks > 5 })
			if tt.wantRoll {
				waitfor.Cond(t, 20*time.Second, "the roll to end", func() bool { return r.Status().State != "" && !r.busy() })
			}
			mu.Lock()
			n := ticks
			mu.Unlock()
			waitfor.Cond(t, 20*time.Second, "more looks", func() bool { mu.Lock(); defer mu.Unlock(); return ticks > n+5 })
			st := r.Status()
			if got := st.State != ""; got != tt.wantRoll {
				t.Errorf("roll started: %v (%+v), want %v", got, st, tt.wantRoll)
			}
			if tt.wantRoll && st.Target != "2.0" {
				t.Errorf("roll to %q, want 2.0", st.Target)
			}
			// The stick stays in: it is checked once, and acted on once.
			if c := box.checks.Load(); tt.wantRoll && c != 2 || !tt.wantRoll && c != 1 {
				t.Errorf("%d checks of the stick", c)
			}
			// Unplugged and plugged again: looked at again.
			mu.Lock()
			stick, n = "", ticks
			mu.Unlock()
			waitfor.Cond(t, 20*time.Second, "a look without the stick", func() bool { mu.Lock(); defer mu.Unlock(); return ticks > n+2 })
			before := box.checks.Load()
			mu.Lock()
			stick = "/dev/vdc"
			mu.Unlock()
			waitfor.Cond(t, 20*time.Second, "the stick checked again", func() bool { return box.checks.Load() > before })
			cancel()
			<-done
			waitfor.Cond(t, 20*time.Second, "any roll it started to end", func() bool { return !r.busy() })
		})
	}
}

// A roll from a stick that could not start (the twin was not a standby
// in sync) is tried again while the stick stays in.
func TestWatchStickRetries(t *testing.T) {
	box := &countingBox{fakeBox: fakeBox{fw: "1.0", bundle: Bundle{Version: "2.0", Size: 1}}}
	pair := &fakePair{local: Local{Active: true}} // no standby yet
	dir := t.TempDir()
	stick := filepath.Join(dir, "stick")
	if err := os.WriteFile(stick, []byte("B"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := New(Config{Pair: pair, Box: box, DataDir: dir, Poll: time.Millisecond, Logger: quiet()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		WatchStick(ctx, StickConfig{Find: func() string { return stick }, Active: func() bool { return true },
			Box: box, Roll: r, Every: time.Millisecond, Retry: 10 * time.Millisecond, Logger: quiet()})
	}()
	t.Cleanup(func() { cancel(); <-done })
	waitfor.Cond(t, 20*time.Second, "a first roll refused", func() bool { return r.Status().State == Failed && !r.busy() })
	// The twin is back as a standby in sync, already on the version.
	pair.mu.Lock()
	pair.twin = Twin{Standby: true, InSync: true, Firmware: "2.0"}
	pair.mu.Unlock()
	waitfor.Cond(t, 20*time.Second, "the roll tried again, to this box's reboot", func() bool {
		st := r.Status()
		return st.State == Running && st.Step == StepReboot && !r.busy()
	})
	if _, reboots := box.counts(); reboots != 1 {
		t.Errorf("%d reboots, want 1", reboots)
	}
}
