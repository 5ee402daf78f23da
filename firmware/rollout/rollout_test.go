package rollout

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/replication"
	"github.com/twinpbx/twinpbx/internal/waitfor"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeBox is a box's firmware: its version, what was applied, reboots.
type fakeBox struct {
	mu       sync.Mutex
	fw       string
	failed   string
	bundle   Bundle
	checkErr error
	applyErr error
	applied  []string // contents of the files applied
	reboots  int
}

func (b *fakeBox) Firmware() string   { b.mu.Lock(); defer b.mu.Unlock(); return b.fw }
func (b *fakeBox) LastFailed() string { b.mu.Lock(); defer b.mu.Unlock(); return b.failed }
func (b *fakeBox) Check(string) (Bundle, error) {
	return b.bundle, b.checkErr
}
func (b *fakeBox) Apply(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.applyErr != nil {
		return b.applyErr
	}
	b.applied = append(b.applied, string(data))
	return nil
}
func (b *fakeBox) Reboot() error { b.mu.Lock(); defer b.mu.Unlock(); b.reboots++; return nil }

func (b *fakeBox) counts() (int, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.applied), b.reboots
}

// fakePair is the pair seen from the active; the standby's behaviour
// when offered a bundle is the test's script.
type fakePair struct {
	mu          sync.Mutex
	local       Local
	twin        Twin
	offered     int
	offer       *replication.Offer
	fetched     replication.FetchStatus
	switchErr   error
	switchovers int
	next        []Twin // states of the twin to come, one per look
	// standby is run when an offer is made (not withdrawn), without the lock.
	standby func(p *fakePair, o replication.Offer)
}

func (p *fakePair) Local() Local { p.mu.Lock(); defer p.mu.Unlock(); return p.local }

// Twin is the twin now; queued states come first, one per look, the
// last one staying.
func (p *fakePair) Twin() Twin {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.next) > 0 {
		p.twin, p.next = p.next[0], p.next[1:]
	}
	return p.twin
}
func (p *fakePair) Offer(o *replication.Offer, _ func() (io.ReadCloser, error)) {
	p.mu.Lock()
	p.offer = o
	if o != nil {
		p.offered++
	}
	script := p.standby
	p.mu.Unlock()
	if o != nil && script != nil {
		script(p, *o)
	}
}
func (p *fakePair) Fetched() replication.FetchStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fetched
}
func (p *fakePair) Switchover(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.switchovers++
	if p.switchErr != nil {
		return p.switchErr
	}
	p.local = Local{Standby: true, InSync: true}
	p.twin.Active, p.twin.Standby = true, false
	return nil
}

// Scripts of the standby.
// takesAndComesBackOn: the standby takes the bundle, its link goes down
// while it reboots, and it comes back on version.
func takesAndComesBackOn(version string) func(*fakePair, replication.Offer) {
	return func(p *fakePair, o replication.Offer) {
		now := time.Now()
		p.mu.Lock()
		defer p.mu.Unlock()
		p.fetched = replication.FetchStatus{ID: o.ID, Done: true, At: now}
		p.next = []Twin{{}, {}, {Standby: true, InSync: true, Firmware: version, Since: now.Add(time.Millisecond)}}
	}
}

// relinksThenComesBack: the standby's link restarts on the old version
// before it reboots (that is not a failed trial), then it comes back on
// version.
func relinksThenComesBack(version string) func(*fakePair, replication.Offer) {
	return func(p *fakePair, o replication.Offer) {
		now := time.Now()
		p.mu.Lock()
		defer p.mu.Unlock()
		p.fetched = replication.FetchStatus{ID: o.ID, Done: true, At: now}
		old := p.twin
		old.Since = now.Add(time.Millisecond)
		p.next = []Twin{old, old, {}, {Standby: true, InSync: true, Firmware: version, Since: now.Add(2 * time.Millisecond)}}
	}
}

func refuses(why string) func(*fakePair, replication.Offer) {
	return func(p *fakePair, o replication.Offer) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.fetched = replication.FetchStatus{ID: o.ID, Done: true, Err: why, At: time.Now()}
	}
}

// handsOver: while the standby fetches, this box hands service over (a
// failed gateway probe).
func handsOver(p *fakePair, _ replication.Offer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.local = Local{Standby: true}
	p.twin = Twin{Active: true, Firmware: "1.0"}
}

func takesAndNeverComesBack(p *fakePair, o replication.Offer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fetched = replication.FetchStatus{ID: o.ID, Done: true, At: time.Now()}
	p.twin = Twin{}
}

func TestRollout(t *testing.T) {
	v2 := Bundle{Version: "2.0", Size: 5, SHA256: "x"}
	healthy := Twin{Standby: true, InSync: true, Firmware: "1.0", Since: time.Now().Add(-time.Hour)}
	tests := []struct {
		name       string
		fw         string // this box's version
		lastFailed string
		twin       Twin
		local      Local
		checkErr   error
		standby    func(*fakePair, replication.Offer)
		switchErr  error
		applyErr   error
		// timesOut: the standby's step runs into its deadline, kept short;
		// every other row gets a deadline it never nears.
		timesOut bool

		wantState   string
		wantStep    string
		wantErr     string
		wantOffers  int
		wantSwitch  int
		wantApplied int
		wantReboots int
		wantRetry   bool // the failure changed nothing: a stick tries again
		wantFirst   bool // the roll updated this box, the standby, first
	}{
		{name: "happy path", fw: "1.0", twin: healthy, local: Local{Active: true}, standby: takesAndComesBackOn("2.0"),
			wantState: Running, wantStep: StepReboot, wantOffers: 1, wantSwitch: 1, wantApplied: 1, wantReboots: 1},
		{name: "the standby's link restarts before its reboot", fw: "1.0", twin: healthy, local: Local{Active: true}, standby: relinksThenComesBack("2.0"),
			wantState: Running, wantStep: StepReboot, wantOffers: 1, wantSwitch: 1, wantApplied: 1, wantReboots: 1},
		{name: "standby trial fails", fw: "1.0", twin: healthy, local: Local{Active: true}, standby: takesAndComesBackOn("1.0"),
			wantState: Failed, wantErr: "fell back", wantOffers: 1},
		{name: "standby refuses the bundle", fw: "1.0", twin: healthy, local: Local{Active: true}, standby: refuses("bad signature"),
			wantState: Failed, wantErr: "bad signature", wantOffers: 1},
		{name: "standby never comes back", fw: "1.0", twin: healthy, local: Local{Active: true}, standby: takesAndNeverComesBack, timesOut: true,
			wantState: Failed, wantErr: "did not come back", wantOffers: 1},
		{name: "this box hands over while the standby updates", fw: "1.0", twin: healthy, local: Local{Active: true}, standby: handsOver,
			wantState: Failed, wantErr: "no longer the active", wantOffers: 1, wantRetry: true},
		{name: "standby never fetches", fw: "1.0", twin: healthy, local: Local{Active: true}, timesOut: true,
			wantState: Failed, wantErr: "did not take the bundle", wantOffers: 1},
		{name: "switchover refused", fw: "1.0", twin: healthy, local: Local{Active: true}, standby: takesAndComesBackOn("2.0"),
			switchErr: errors.New("the twin cannot take over"),
			wantState: Failed, wantErr: "switchover refused", wantOffers: 1, wantSwitch: 1},
		{name: "version skew: the standby already runs the new version", fw: "1.0", local: Local{Active: true},
			twin:      Twin{Standby: true, InSync: true, Firmware: "2.0"},
			wantState: Running, wantStep: StepReboot, wantSwitch: 1, wantApplied: 1, wantReboots: 1},
		{name: "both already on the version", fw: "2.0", local: Local{Active: true},
			twin:      Twin{Standby: true, InSync: true, Firmware: "2.0"},
			wantState: Done},
		{name: "this box already runs it (an earlier roll stopped after the switchover)", fw: "2.0", twin: healthy, local: Local{Active: true},
			standby: takesAndComesBackOn("2.0"), wantState: Done, wantOffers: 1, wantSwitch: 1},
		{name: "writing this box's slot fails", fw: "1.0", twin: healthy, local: Local{Active: true}, standby: takesAndComesBackOn("2.0"),
			applyErr: errors.New("disk gone"), wantState: Failed, wantErr: "disk gone", wantOffers: 1, wantSwitch: 1},
		{name: "started on the standby: it updates itself first", fw: "1.0", twin: Twin{Active: true, Firmware: "1.0"}, local: Local{Standby: true, InSync: true},
			wantState: Running, wantStep: StepReboot, wantFirst: true, wantApplied: 1, wantReboots: 1},
		{name: "started on the standby, the active already on the version", fw: "1.0", twin: Twin{Active: true, Firmware: "2.0"}, local: Local{Standby: true, InSync: true},
			wantState: Running, wantStep: StepReboot, wantFirst: true, wantApplied: 1, wantReboots: 1},
		{name: "started on a standby already on the version: waits for the active", fw: "2.0", twin: Twin{Active: true, Firmware: "1.0"}, local: Local{Standby: true, InSync: true},
			wantState: Waiting, wantErr: "finish the roll on the active"},
		{name: "started on a standby not in sync", fw: "1.0", twin: Twin{Active: true, Firmware: "1.0"}, local: Local{Standby: true},
			wantState: Failed, wantErr: "not in sync", wantRetry: true},
		{name: "started on a standby whose active is not heard", fw: "1.0", local: Local{Standby: true, InSync: true},
			wantState: Failed, wantErr: "not in sync with an active twin", wantRetry: true},
		{name: "started on the standby, the version failed its trial there", fw: "1.0", lastFailed: "2.0", twin: Twin{Active: true, Firmware: "1.0"}, local: Local{Standby: true, InSync: true},
			wantState: Failed, wantErr: "failed its trial boot on this box before"},
		{name: "started on the standby, writing its slot fails", fw: "1.0", twin: Twin{Active: true, Firmware: "1.0"}, local: Local{Standby: true, InSync: true},
			applyErr: errors.New("disk gone"), wantState: Failed, wantErr: "disk gone", wantFirst: true},
		{name: "started on a box neither active nor standby", fw: "1.0", twin: Twin{Active: true, Firmware: "1.0"},
			wantState: Failed, wantErr: "neither the active one nor a standby", wantRetry: true},
		{name: "twin not in sync", fw: "1.0", twin: Twin{Standby: true, Firmware: "1.0"}, local: Local{Active: true},
			wantState: Failed, wantErr: "not a healthy standby", wantRetry: true},
		{name: "no twin", fw: "1.0", local: Local{Active: true}, wantState: Failed, wantErr: "not a healthy standby", wantRetry: true},
		{name: "bad bundle", fw: "1.0", twin: healthy, local: Local{Active: true}, checkErr: errors.New("signature does not verify"),
			wantState: Failed, wantErr: "signature does not verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "new.bundle")
			if err := os.WriteFile(path, []byte("BUNDL"), 0o600); err != nil {
				t.Fatal(err)
			}
			box := &fakeBox{fw: tt.fw, failed: tt.lastFailed, bundle: v2, checkErr: tt.checkErr, applyErr: tt.applyErr}
			pair := &fakePair{local: tt.local, twin: tt.twin, standby: tt.standby, switchErr: tt.switchErr}
			standbyDeadline := 20 * time.Second
			if tt.timesOut {
				standbyDeadline = 300 * time.Millisecond
			}
			r := New(Config{Pair: pair, Box: box, DataDir: dir, Poll: time.Millisecond,
				StandbyDeadline: standbyDeadline, SettleDeadline: 20 * time.Second, Logger: quiet()})
			err := r.Run(context.Background(), path)
			st := r.Status()
			if st.State != tt.wantState {
				t.Errorf("state %q (%s), want %q", st.State, st.Error, tt.wantState)
			}
			if tt.wantStep != "" && st.Step != tt.wantStep {
				t.Errorf("step %q, want %q", st.Step, tt.wantStep)
			}
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || st.Error != err.Error()) {
				t.Errorf("Run: %v (status error %q), want an error naming %q", err, st.Error, tt.wantErr)
			}
			if (st.Alarm() != "") != (tt.wantErr != "") {
				t.Errorf("alarm %q with error %q", st.Alarm(), st.Error)
			}
			if st.StandbyFirst != tt.wantFirst {
				t.Errorf("standby first %v, want %v", st.StandbyFirst, tt.wantFirst)
			}
			if st.Retryable != tt.wantRetry {
				t.Errorf("retryable %v, want %v", st.Retryable, tt.wantRetry)
			}
			applied, reboots := box.counts()
			if pair.offered != tt.wantOffers || pair.switchovers != tt.wantSwitch || applied != tt.wantApplied || reboots != tt.wantReboots {
				t.Errorf("offers %d, switchovers %d, applied %d, reboots %d; want %d, %d, %d, %d",
					pair.offered, pair.switchovers, applied, reboots, tt.wantOffers, tt.wantSwitch, tt.wantApplied, tt.wantReboots)
			}
			if pair.offer != nil {
				t.Error("the offer was not withdrawn")
			}
			// The record on disk says the same.
			saved := New(Config{Box: &fakeBox{fw: tt.fw}, DataDir: dir, Logger: quiet()})
			saved.Resume()
			if got := saved.Status(); tt.wantState != Running && (got.State != st.State || got.Error != st.Error) {
				t.Errorf("saved record %+v, want state %q error %q", got, st.State, st.Error)
			}
		})
	}
}

// stepFirst stands for StepReboot of a roll the standby went first in.
const stepFirst = "standby first: " + StepReboot

// A roll that rebooted this box ends when the box comes back: done on
// the new version, failed when the trial fell back; a roll stopped by a
// restart at any other step is abandoned.
func TestResume(t *testing.T) {
	tests := []struct {
		name      string
		step      string
		fw        string
		wantState string
		wantErr   string
	}{
		{"rebooted into the new version", StepReboot, "2.0", Done, ""},
		{"trial fell back", StepReboot, "1.0", Failed, "did not commit"},
		{"restarted while updating the standby", StepStandby, "1.0", Abandoned, "abandoned"},
		{"restarted while switching over", StepSwitchover, "1.0", Abandoned, "abandoned"},
		{"the standby went first and came back on the version", stepFirst, "2.0", Abandoned, "finish the roll on the active"},
		{"the standby went first and its trial fell back", stepFirst, "1.0", Failed, "did not commit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			before := New(Config{Box: &fakeBox{fw: "1.0"}, DataDir: dir, Logger: quiet()})
			before.st = Status{ID: "r", State: Running, Target: "2.0", From: "1.0"}
			step := tt.step
			if step == stepFirst {
				before.st.StandbyFirst, step = true, StepReboot
			}
			before.step(step)
			r := New(Config{Box: &fakeBox{fw: tt.fw}, DataDir: dir, Logger: quiet()})
			r.Resume()
			st := r.Status()
			if st.State != tt.wantState || !strings.Contains(st.Error, tt.wantErr) {
				t.Errorf("after the restart: state %q error %q, want %q naming %q", st.State, st.Error, tt.wantState, tt.wantErr)
			}
			again := New(Config{Box: &fakeBox{fw: tt.fw}, DataDir: dir, Logger: quiet()})
			again.Resume()
			if got := again.Status(); got.State != tt.wantState {
				t.Errorf("a second restart reads state %q, want %q kept", got.State, tt.wantState)
			}
		})
	}
}

// After a restart mid-roll, ResumeIn carries the roll on from where the
// pair is once its roles settle, or abandons it with an alarm naming the
// versions; it never leaves it running unattended.
func TestResumeIn(t *testing.T) {
	v2 := Bundle{Version: "2.0", Size: 5, SHA256: "x"}
	active := Local{Active: true}
	standby := Local{Standby: true, InSync: true}
	twinStandby := func(fw string) Twin {
		return Twin{Standby: true, InSync: true, Firmware: fw, Since: time.Now().Add(-time.Hour)}
	}
	twinActive := func(fw string) Twin { return Twin{Active: true, Firmware: fw} }
	tests := []struct {
		name     string
		step     string
		first    bool // the record says the standby went first
		noBundle bool // the record names no bundle
		fw       string
		local    Local
		twin     Twin
		next     []Twin // the twin's states to come after the first look
		standby  func(*fakePair, replication.Offer)
		checkErr error
		bundle   Bundle

		wantState   string
		wantStep    string
		wantErr     string
		wantOffers  int
		wantSwitch  int
		wantApplied int
		wantReboots int
		wantFirst   bool
	}{
		{name: "restarted while checking, still active: the roll goes on", step: StepCheck, fw: "1.0", local: active, twin: twinStandby("1.0"),
			standby: takesAndComesBackOn("2.0"), wantState: Running, wantStep: StepReboot, wantOffers: 1, wantSwitch: 1, wantApplied: 1, wantReboots: 1},
		{name: "restarted while the standby updated, active again, the standby back on the version", step: StepStandby, fw: "1.0", local: active, twin: twinStandby("2.0"),
			wantState: Running, wantStep: StepReboot, wantSwitch: 1, wantApplied: 1, wantReboots: 1},
		{name: "restarted while the standby updated, the twin took over on the version", step: StepStandby, fw: "1.0", local: standby, twin: twinActive("2.0"),
			wantState: Running, wantStep: StepReboot, wantFirst: true, wantApplied: 1, wantReboots: 1},
		{name: "restarted while switching over: the new active runs the version", step: StepSwitchover, fw: "1.0", local: standby, twin: twinActive("2.0"),
			wantState: Running, wantStep: StepReboot, wantFirst: true, wantApplied: 1, wantReboots: 1},
		{name: "restarted while writing its own slot", step: StepSelf, fw: "1.0", local: standby, twin: twinActive("2.0"),
			wantState: Running, wantStep: StepReboot, wantFirst: true, wantApplied: 1, wantReboots: 1},
		{name: "restarted while the standby updated, the twin took over on the old version", step: StepStandby, fw: "1.0", local: standby, twin: twinActive("1.0"),
			wantState: Running, wantStep: StepReboot, wantFirst: true, wantApplied: 1, wantReboots: 1},
		{name: "roles settle late: the roll goes on", step: StepSwitchover, fw: "1.0", twin: Twin{}, next: []Twin{{}, {}, twinActive("2.0")},
			local: standby, wantState: Running, wantStep: StepReboot, wantFirst: true, wantApplied: 1, wantReboots: 1},
		{name: "the standby came back on the version, the active runs it", step: StepReboot, first: true, fw: "2.0", local: standby, twin: twinActive("2.0"),
			wantState: Done},
		{name: "the standby came back on the version, the active does not run it yet", step: StepReboot, first: true, fw: "2.0", local: standby, twin: twinActive("1.0"),
			wantState: Waiting, wantErr: "finish the roll on the active"},
		{name: "the standby's trial fell back", step: StepReboot, first: true, fw: "1.0", local: standby, twin: twinActive("1.0"),
			wantState: Failed, wantErr: "did not commit"},
		{name: "the active's own trial committed", step: StepReboot, fw: "2.0", local: standby, twin: twinActive("2.0"), wantState: Done},
		{name: "the pair's roles never settle", step: StepStandby, fw: "1.0", local: active,
			wantState: Abandoned, wantErr: "twin's version is not known"},
		{name: "the bundle is gone", step: StepStandby, fw: "1.0", local: standby, twin: twinActive("2.0"), checkErr: errors.New("no such device"),
			wantState: Abandoned, wantErr: "THE PAIR RUNS TWO VERSIONS: this box 1.0, the twin 2.0"},
		{name: "a record without the bundle's path (older firmware)", step: StepSwitchover, noBundle: true, fw: "1.0", local: standby, twin: twinActive("2.0"),
			wantState: Abandoned, wantErr: "does not name it"},
		{name: "the bundle now holds another version", step: StepStandby, fw: "1.0", local: active, twin: twinStandby("1.0"), bundle: Bundle{Version: "3.0"},
			wantState: Abandoned, wantErr: "now holds 3.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "new.bundle")
			if err := os.WriteFile(path, []byte("BUNDL"), 0o600); err != nil {
				t.Fatal(err)
			}
			before := New(Config{Box: &fakeBox{fw: "1.0"}, DataDir: dir, Logger: quiet()})
			before.st = Status{ID: "r", State: Running, Target: "2.0", From: "1.0", Bundle: path, StandbyFirst: tt.first}
			if tt.noBundle {
				before.st.Bundle = ""
			}
			before.step(tt.step)

			b := v2
			if tt.bundle.Version != "" {
				b = tt.bundle
			}
			box := &fakeBox{fw: tt.fw, bundle: b, checkErr: tt.checkErr}
			pair := &fakePair{local: tt.local, twin: tt.twin, next: tt.next, standby: tt.standby}
			r := New(Config{Pair: pair, Box: box, DataDir: dir, Poll: time.Millisecond, Logger: quiet(),
				ResumeDeadline: 300 * time.Millisecond, StandbyDeadline: 20 * time.Second, SettleDeadline: 20 * time.Second})
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			r.ResumeIn(ctx)
			waitfor.Cond(t, 20*time.Second, "the resumed roll to stop", func() bool { return !r.busy() })
			st := r.Status()
			if st.State != tt.wantState {
				t.Errorf("state %q (%s), want %q", st.State, st.Error, tt.wantState)
			}
			if tt.wantStep != "" && st.Step != tt.wantStep {
				t.Errorf("step %q, want %q", st.Step, tt.wantStep)
			}
			if !strings.Contains(st.Error, tt.wantErr) || (tt.wantErr == "") != (st.Error == "") {
				t.Errorf("error %q, want it to name %q", st.Error, tt.wantErr)
			}
			if st.State != Running && st.State != Done && st.Alarm() == "" {
				t.Errorf("state %q without an alarm", st.State)
			}
			applied, reboots := box.counts()
			if pair.offered != tt.wantOffers || pair.switchovers != tt.wantSwitch || applied != tt.wantApplied || reboots != tt.wantReboots {
				t.Errorf("offers %d, switchovers %d, applied %d, reboots %d; want %d, %d, %d, %d",
					pair.offered, pair.switchovers, applied, reboots, tt.wantOffers, tt.wantSwitch, tt.wantApplied, tt.wantReboots)
			}
			if tt.wantFirst && !st.StandbyFirst {
				t.Error("the roll does not say the standby went first")
			}
			if st.ID != "r" {
				t.Errorf("the resumed roll has ID %q, want the record's", st.ID)
			}
		})
	}
}

// A roll waiting for the active ends as done once both boxes run the
// version, also after a restart of the waiting box.
func TestWaitingEnds(t *testing.T) {
	dir := t.TempDir()
	box := &fakeBox{fw: "2.0", bundle: Bundle{Version: "2.0", Size: 5}}
	pair := &fakePair{local: Local{Standby: true, InSync: true}, twin: Twin{Active: true, Firmware: "1.0"}}
	r := New(Config{Pair: pair, Box: box, DataDir: dir, Poll: time.Millisecond, Logger: quiet()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := r.Run(ctx, "/stick"); err == nil || r.Status().State != Waiting {
		t.Fatalf("Run: %v, state %q; want waiting", err, r.Status().State)
	}
	// The box restarts while waiting: still waiting, the alarm stays.
	again := New(Config{Pair: pair, Box: box, DataDir: dir, Poll: time.Millisecond, Logger: quiet()})
	again.ResumeIn(ctx)
	if st := again.Status(); st.State != Waiting || st.Alarm() == "" {
		t.Fatalf("after a restart: state %q alarm %q", st.State, st.Alarm())
	}
	// The roll is finished on the active: the twin (now the standby
	// after the switchover) runs the version.
	pair.mu.Lock()
	pair.local, pair.twin = Local{Active: true}, Twin{Standby: true, InSync: true, Firmware: "2.0"}
	pair.mu.Unlock()
	for _, x := range []*Rollout{r, again} {
		waitfor.Cond(t, 20*time.Second, "the waiting roll to end", func() bool { return x.Status().State == Done })
		if st := x.Status(); st.Error != "" || st.Alarm() != "" {
			t.Errorf("done with error %q alarm %q", st.Error, st.Alarm())
		}
	}
}

func TestResumeNothingOrGarbage(t *testing.T) {
	dir := t.TempDir()
	r := New(Config{Box: &fakeBox{}, DataDir: dir, Logger: quiet()})
	r.Resume()
	if st := r.Status(); st.State != "" {
		t.Errorf("no record: state %q", st.State)
	}
	if err := os.WriteFile(filepath.Join(dir, StateFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.Resume()
	if st := r.Status(); st.State != "" {
		t.Errorf("a broken record: state %q, want it ignored", st.State)
	}
}

// One roll at a time.
func TestBusy(t *testing.T) {
	release := make(chan struct{})
	box := &fakeBox{fw: "1.0", bundle: Bundle{Version: "2.0", Size: 1}}
	pair := &fakePair{local: Local{Active: true}, twin: Twin{Standby: true, InSync: true, Firmware: "1.0"},
		standby: func(*fakePair, replication.Offer) { <-release }}
	r := New(Config{Pair: pair, Box: box, DataDir: t.TempDir(), Poll: time.Millisecond, StandbyDeadline: 50 * time.Millisecond, Logger: quiet()})
	if err := r.Start(context.Background(), "/nonexistent"); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background(), "/nonexistent"); !errors.Is(err, ErrBusy) {
		t.Errorf("second Start: %v, want ErrBusy", err)
	}
	close(release)
	waitfor.Cond(t, 20*time.Second, "the roll to end", func() bool { return !r.busy() })
	if err := r.Start(context.Background(), "/nonexistent"); err != nil {
		t.Errorf("Start after the roll ended: %v", err)
	}
	waitfor.Cond(t, 20*time.Second, "the second roll to end", func() bool { return !r.busy() })
}
