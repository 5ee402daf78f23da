// Package rollout updates both boxes of a twin pair one after the other,
// so phones see no outage but a switchover's. A roll brings both boxes to
// the version of one signed bundle; whichever box it is started on, and
// whenever it is picked up again, it looks at the pair and does the next
// step from where the pair is (plan):
//
//   - on the active (Rollout): it offers the bundle to its standby over
//     the pair's replication link; the standby (Follower) fetches it,
//     writes its inactive slot and reboots into a trial boot; once the
//     standby is back, on the new version and in sync, the active
//     switches over to it, waits until it follows the new active in sync,
//     then updates itself the same way and reboots;
//   - on the standby: it updates itself first (its own half: write its
//     inactive slot, reboot into the trial) while the active serves. When
//     it is back on the new version and the active runs it too, the roll
//     is done; otherwise it waits, with an alarm, for the roll to be
//     finished on the active (which skips a standby already on the
//     version): a standby cannot make the active switch over.
//
// Every step has a deadline; a failure stops the roll with the pair
// serving and the reason in the status (docs/IMAGE.md, "Rolling update of
// a twin pair"). The roll's record (StateFile in the data folder) says
// where it is; after a restart of the box mid-roll, ResumeIn waits for
// the pair's roles to settle and carries the roll on from where the pair
// is, or abandons it with an alarm that says which versions the boxes
// run. The pair is never left on two versions without an alarm.
package rollout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/twinpbx/twinpbx/firmware/replication"
)

// States of a roll.
const (
	Running   = "running"
	Done      = "done"
	Failed    = "failed"
	Abandoned = "abandoned"
	// Waiting: this box (the standby) runs the new version, the active
	// not yet; the roll must be finished on the active.
	Waiting = "waiting"
)

// Steps of a roll, in order.
const (
	StepCheck      = "checking the bundle"
	StepStandby    = "updating the standby"
	StepSwitchover = "switching over to the standby"
	StepSettle     = "waiting to follow the new active in sync"
	StepSelf       = "updating this box"
	StepReboot     = "rebooting this box into the new version"
	// StepFirst is the first step of a roll on the standby: its own half
	// (StepReboot follows, with Status.StandbyFirst).
	StepFirst = "updating this box first (the standby)"
)

// StateFile is the roll's record in the data folder.
const StateFile = "rollout.json"

// Status is a roll as `twinpbx status` shows it.
type Status struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Step   string `json:"step,omitempty"`
	Target string `json:"target"`
	// From is this box's version when the roll started.
	From string `json:"from,omitempty"`
	// StandbyFirst: the roll updated this box as the standby, first
	// (a roll started on the standby, or carried on there after a
	// restart); its StepReboot is not the roll's last step.
	StandbyFirst bool `json:"standby_first,omitempty"`
	// Bundle is the bundle file the roll was started with (a file or an
	// update stick's device), read again to resume the roll.
	Bundle  string    `json:"bundle,omitempty"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	Error   string    `json:"error,omitempty"`
	// Retryable: the roll stopped on the pair's roles (no standby in
	// sync, this box no longer active) with nothing written on this box;
	// starting it again later is safe.
	Retryable bool `json:"retryable,omitempty"`
	// Log is what happened, oldest first.
	Log []Entry `json:"log,omitempty"`
}

// Alarm is the alarm a roll in this state raises, "" for none: one that
// failed, was abandoned, or waits for the active (the pair then runs two
// versions).
func (s Status) Alarm() string {
	switch s.State {
	case Failed, Abandoned, Waiting:
		return "rolling update stopped: " + s.Error
	}
	return ""
}

// Entry is one line of a roll's log.
type Entry struct {
	At   time.Time `json:"at"`
	Text string    `json:"text"`
}

// Bundle is what Box.Check found in a bundle file.
type Bundle struct {
	Version string
	Size    int64
	SHA256  string
}

// Box is this box's firmware: the running version, its boot slots and
// its reboot. SlotBox is the real one.
type Box interface {
	// Firmware is the running version ("" unknown: not booted from a slot).
	Firmware() string
	// LastFailed is the version whose trial boot last failed here.
	LastFailed() string
	// Check verifies the bundle file (signature with this box's key).
	Check(path string) (Bundle, error)
	// Apply writes the bundle into the inactive slot and puts it on trial.
	Apply(path string) error
	// Reboot restarts the box (into the trial).
	Reboot() error
}

// Local is this box in the pair.
type Local struct {
	Active, Standby bool
	// InSync: as standby, this box holds everything the active committed.
	InSync bool
}

// Twin is the other box as this one sees it.
type Twin struct {
	// Standby: heard, in the standby role and healthy; Active: heard and active.
	Standby, Active bool
	// InSync: as active, the twin acknowledges every write.
	InSync bool
	// Firmware is the version the twin named when its replication link
	// started at Since.
	Firmware string
	Since    time.Time
}

// Pair is what the roll needs of the running pair (firmware/twin).
type Pair interface {
	Local() Local
	Twin() Twin
	// Offer offers the standby a bundle (nil: withdraw).
	Offer(o *replication.Offer, open func() (io.ReadCloser, error))
	// Fetched is the standby's verdict on the offer.
	Fetched() replication.FetchStatus
	Switchover(ctx context.Context) error
}

// Config configures a Rollout.
type Config struct {
	Pair    Pair
	Box     Box
	DataDir string
	// StandbyDeadline bounds the standby's update: fetch, write, reboot,
	// trial and catch-up (0: 10 min; a trial alone may take 5).
	StandbyDeadline time.Duration
	// SwitchoverDeadline bounds the switchover (0: 1 min).
	SwitchoverDeadline time.Duration
	// SettleDeadline bounds the wait, after the switchover, until this
	// box follows the new active in sync (0: 2 min).
	SettleDeadline time.Duration
	// ResumeDeadline bounds the wait, after a restart mid-roll, until the
	// pair's roles settle (this box active with a standby in sync, or a
	// standby in sync with an active twin) so that the roll can go on
	// (0: 10 min, as the standby's update: the twin may be in the
	// middle of its trial boot).
	ResumeDeadline time.Duration
	// Poll is how often the pair is looked at (0: 200 ms).
	Poll   time.Duration
	Logger *slog.Logger
}

// Rollout runs one roll at a time on the active box.
type Rollout struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	st      Status
	running bool
}

// New returns a Rollout; Resume reads the record of an earlier one.
func New(c Config) *Rollout {
	if c.StandbyDeadline <= 0 {
		c.StandbyDeadline = 10 * time.Minute
	}
	if c.SwitchoverDeadline <= 0 {
		c.SwitchoverDeadline = time.Minute
	}
	if c.SettleDeadline <= 0 {
		c.SettleDeadline = 2 * time.Minute
	}
	if c.ResumeDeadline <= 0 {
		c.ResumeDeadline = 10 * time.Minute
	}
	if c.Poll <= 0 {
		c.Poll = 200 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return &Rollout{cfg: c, log: c.Logger.With("part", "rollout")}
}

// Status is the current or last roll; State is "" when there was none.
func (r *Rollout) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.st
	s.Log = append([]Entry(nil), s.Log...)
	return s
}

func (r *Rollout) busy() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running
}

// ErrBusy means a roll is under way.
var ErrBusy = errors.New("a rolling update is already under way")

// Resume reads the record of a roll this box ran before it restarted,
// without carrying it on: a roll that rebooted this box into the new
// version ends (see ResumeIn); one stopped at any other step is
// abandoned, with an alarm. ResumeIn carries such a roll on.
func (r *Rollout) Resume() { r.resume(context.Background(), false) }

// ResumeIn reads the record of a roll this box ran before it restarted
// and ends or carries it on in the background, in ctx:
//
//   - this box rebooted into the new version as the roll's last step (it
//     was the active): done when it runs that version, failed when its
//     trial fell back;
//   - this box, the standby, rebooted into the new version first: failed
//     when its trial fell back (both boxes still run the old version);
//     otherwise, once the pair's roles settle, done when the active runs
//     the version too, else waiting for the roll to be finished on the
//     active;
//   - any other step: once the pair's roles settle (Config.ResumeDeadline)
//     and the bundle still reads as the roll's version, the roll goes on
//     from where the pair is, as a roll started now would; otherwise it
//     is abandoned, with an alarm naming the versions both boxes run.
func (r *Rollout) ResumeIn(ctx context.Context) { r.resume(ctx, true) }

// resume reads the record; carry says whether the roll may be carried
// on (in ctx).
func (r *Rollout) resume(ctx context.Context, carry bool) {
	b, err := os.ReadFile(filepath.Join(r.cfg.DataDir, StateFile))
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var s Status
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	if err != nil {
		r.log.Warn("ignoring the record of an earlier rolling update", "err", err)
		return
	}
	r.mu.Lock()
	r.st = s
	r.mu.Unlock()
	if s.State == Waiting && carry {
		go r.watchWaiting(ctx, s.ID, s.Target)
	}
	if s.State != Running {
		return
	}
	fw := r.cfg.Box.Firmware()
	switch {
	case s.Step == StepReboot && s.StandbyFirst && fw != s.Target:
		r.finish(Failed, "", fmt.Errorf("this box's trial of %s did not commit; it fell back to %s; the active was not touched by the roll", s.Target, orUnknown(fw)))
		return
	case s.Step == StepReboot && s.StandbyFirst && !carry:
		// Whether the active runs the version is not known yet: say
		// what is left, as an alarm, rather than nothing.
		r.finish(Abandoned, "", fmt.Errorf("this box (the standby) came back on %s; unless the active runs it too, finish the roll on the active box (plug the update stick into it, or run twinpbx update --pair there)", fw))
		return
	case s.Step == StepReboot && s.StandbyFirst:
		// Carried on below, once the twin is known.
	case s.Step == StepReboot && fw == s.Target:
		r.finish(Done, fmt.Sprintf("this box came back on %s: both boxes run it", fw), nil)
		return
	case s.Step == StepReboot:
		r.finish(Failed, "", fmt.Errorf("this box's trial of %s did not commit; it fell back to %s while the twin runs %s (run the update again, or update this box by hand)", s.Target, orUnknown(fw), s.Target))
		return
	case !carry:
		r.finish(Abandoned, "", fmt.Errorf("this box restarted while %s; the roll was abandoned: this box runs %s, the twin may run %s already: run the update again (a box already on %s is skipped)", s.Step, orUnknown(fw), s.Target, s.Target))
		return
	}
	r.mu.Lock()
	if r.running {
		r.mu.Unlock()
		return
	}
	r.running = true
	r.mu.Unlock()
	go func() {
		defer r.idle()
		_ = r.carryOn(ctx, s)
	}()
}

// carryOn goes on with the roll s after a restart of this box, once the
// pair's roles have settled.
func (r *Rollout) carryOn(ctx context.Context, s Status) error {
	r.note(fmt.Sprintf("this box restarted while %s: carrying the roll on once the pair's roles settle", s.Step))
	err := r.waitFor(ctx, r.cfg.ResumeDeadline, func() (bool, error) {
		l, t := r.cfg.Pair.Local(), r.cfg.Pair.Twin()
		return l.Active && t.Standby && t.InSync || l.Standby && l.InSync && t.Active, nil
	})
	if err != nil {
		return r.finish(Abandoned, "", fmt.Errorf("this box restarted while %s, and the pair's roles did not settle (%v) to carry the roll on: %s; run the update again", s.Step, err, r.versions(s.Target)))
	}
	if s.Step == StepReboot {
		// This box, the standby, came back on the version.
		return r.standbyBack(ctx, s.Target)
	}
	var b Bundle
	err = errors.New("the roll's record does not name it (written by an older firmware)")
	if s.Bundle != "" {
		b, err = r.cfg.Box.Check(s.Bundle)
	}
	if err == nil && b.Version != s.Target {
		err = fmt.Errorf("it now holds %s", b.Version)
	}
	if err != nil {
		return r.finish(Abandoned, "", fmt.Errorf("this box restarted while %s, and the bundle %q no longer reads as %s (%v): %s; run the update again", s.Step, s.Bundle, s.Target, err, r.versions(s.Target)))
	}
	return r.plan(ctx, s.Bundle, b)
}

// versions says which version each box runs, for a roll to target.
func (r *Rollout) versions(target string) string {
	fw, tw := r.cfg.Box.Firmware(), r.cfg.Pair.Twin().Firmware
	switch {
	case fw == target && tw == target:
		return "both boxes run " + target
	case tw == "":
		return fmt.Sprintf("this box runs %s, the twin's version is not known (its link is down)", orUnknown(fw))
	case fw == tw:
		return "both boxes run " + fw
	}
	return fmt.Sprintf("THE PAIR RUNS TWO VERSIONS: this box %s, the twin %s", orUnknown(fw), tw)
}

func (r *Rollout) idle() {
	r.mu.Lock()
	r.running = false
	r.mu.Unlock()
}

// Start begins a roll to the bundle at path in the background; Status
// follows it. It refuses while one runs.
func (r *Rollout) Start(ctx context.Context, path string) error {
	if err := r.begin(); err != nil {
		return err
	}
	go func() { _ = r.run(ctx, path) }()
	return nil
}

// Run rolls the pair to the bundle at path and returns when the roll
// ended (or this box is about to reboot into the new version).
func (r *Rollout) Run(ctx context.Context, path string) error {
	if err := r.begin(); err != nil {
		return err
	}
	return r.run(ctx, path)
}

func (r *Rollout) begin() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running {
		return ErrBusy
	}
	r.running = true
	now := time.Now()
	var id [6]byte
	_, _ = rand.Read(id[:])
	r.st = Status{ID: hex.EncodeToString(id[:]), State: Running, Step: StepCheck, Started: now, Updated: now, From: r.cfg.Box.Firmware()}
	return nil
}

func (r *Rollout) run(ctx context.Context, path string) (err error) {
	defer r.idle()
	b, err := r.cfg.Box.Check(path)
	if err != nil {
		return r.finish(Failed, "", fmt.Errorf("checking the bundle: %w", err))
	}
	r.mu.Lock()
	r.st.Target, r.st.Bundle = b.Version, path
	r.mu.Unlock()
	r.note(fmt.Sprintf("bundle %s checked (%d bytes)", b.Version, b.Size))
	return r.plan(ctx, path, b)
}

// plan does the roll's next steps from where the pair is: as the active
// (asActive) or as the standby (asStandby).
func (r *Rollout) plan(ctx context.Context, path string, b Bundle) error {
	local, tw := r.cfg.Pair.Local(), r.cfg.Pair.Twin()
	switch {
	case r.cfg.Box.Firmware() == b.Version && tw.Firmware == b.Version:
		return r.finish(Done, fmt.Sprintf("both boxes already run %s", b.Version), nil)
	case local.Active:
		return r.asActive(ctx, path, b, tw)
	case local.Standby:
		return r.asStandby(ctx, path, b, local, tw)
	}
	return r.finish(Failed, "", retryable(errors.New("this box is neither the active one nor a standby (it is starting, fenced or in maintenance): try again once the pair is settled")))
}

// asStandby updates this box, the standby, first: its own half of the
// roll, while the active serves.
func (r *Rollout) asStandby(ctx context.Context, path string, b Bundle, local Local, tw Twin) error {
	fw := r.cfg.Box.Firmware()
	switch {
	case !local.InSync || !tw.Active:
		return r.finish(Failed, "", retryable(errors.New("this box is a standby not in sync with an active twin: updating it now could leave the phones without a box; try again once it is in sync")))
	case fw == b.Version:
		return r.standbyBack(ctx, b.Version)
	case r.cfg.Box.LastFailed() == b.Version:
		return r.finish(Failed, "", fmt.Errorf("%s failed its trial boot on this box before; not trying it again", b.Version))
	}
	r.mu.Lock()
	r.st.StandbyFirst = true
	r.mu.Unlock()
	r.step(StepFirst)
	if err := r.cfg.Box.Apply(path); err != nil {
		return r.finish(Failed, "", fmt.Errorf("writing the bundle on this box: %w; nothing changed, the active serves on %s", err, orUnknown(tw.Firmware)))
	}
	r.step(StepReboot)
	if err := r.cfg.Box.Reboot(); err != nil {
		return r.finish(Failed, "", fmt.Errorf("rebooting this box: %w; its next boot tries %s", err, b.Version))
	}
	return nil
}

// standbyBack ends the standby's half: done when the active runs the
// version too, else waiting (with an alarm) for the roll to be finished
// on the active, watched in ctx until it is.
func (r *Rollout) standbyBack(ctx context.Context, version string) error {
	if tw := r.cfg.Pair.Twin(); tw.Firmware == version {
		return r.finish(Done, "this box runs "+version+" and so does the active: both boxes run it", nil)
	}
	err := r.finish(Waiting, "", fmt.Errorf("this box (the standby) runs %s, the active %s: finish the roll on the active box (plug the update stick into it, or run twinpbx update --pair there): it switches over to this box and updates itself", version, orUnknown(r.cfg.Pair.Twin().Firmware)))
	go r.watchWaiting(ctx, r.Status().ID, version)
	return err
}

// watchWaiting ends a waiting roll as done once both boxes run version,
// unless another roll took its place; it returns when ctx ends.
func (r *Rollout) watchWaiting(ctx context.Context, id, version string) {
	t := time.NewTicker(max(r.cfg.Poll, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if st := r.Status(); st.ID != id || st.State != Waiting {
			return
		}
		if r.cfg.Box.Firmware() != version || r.cfg.Pair.Twin().Firmware != version {
			continue
		}
		r.mu.Lock()
		same := r.st.ID == id && r.st.State == Waiting
		if same {
			r.st.State, r.st.Error, r.st.Retryable = Done, "", false
		}
		r.mu.Unlock()
		if same {
			r.note("the active was updated too: both boxes run " + version)
		}
		return
	}
}

// asActive rolls the pair from the active: the standby first, a
// switchover, then this box.
func (r *Rollout) asActive(ctx context.Context, path string, b Bundle, tw Twin) (err error) {
	if !tw.Standby || !tw.InSync {
		return r.finish(Failed, "", retryable(errors.New("the twin is not a healthy standby in sync: updating now would leave the phones without a box; try again once it is")))
	}

	if tw.Firmware != b.Version {
		if err := r.updateStandby(ctx, path, b); err != nil {
			return r.finish(Failed, "", err)
		}
	} else {
		r.note(fmt.Sprintf("the standby already runs %s", b.Version))
	}

	r.step(StepSwitchover)
	sctx, cancel := context.WithTimeout(ctx, r.cfg.SwitchoverDeadline)
	err = r.cfg.Pair.Switchover(sctx)
	cancel()
	if err != nil {
		return r.finish(Failed, "", fmt.Errorf("switchover refused: %w; the pair serves on as it was: this box active on %s, the standby on %s", err, orUnknown(r.cfg.Box.Firmware()), b.Version))
	}
	r.note("switched over: the twin, on " + b.Version + ", is active")

	r.step(StepSettle)
	err = r.waitFor(ctx, r.cfg.SettleDeadline, func() (bool, error) {
		l, t := r.cfg.Pair.Local(), r.cfg.Pair.Twin()
		return l.Standby && l.InSync && t.Active, nil
	})
	if err != nil {
		return r.finish(Failed, "", fmt.Errorf("after the switchover this box did not follow the new active in sync within %v: %w; the twin serves on %s, this box still runs %s", r.cfg.SettleDeadline, err, b.Version, orUnknown(r.cfg.Box.Firmware())))
	}
	if r.cfg.Box.Firmware() == b.Version {
		return r.finish(Done, "this box already runs "+b.Version+": both boxes run it", nil)
	}
	r.step(StepSelf)
	if err := r.cfg.Box.Apply(path); err != nil {
		return r.finish(Failed, "", fmt.Errorf("writing the bundle on this box: %w; the twin serves on %s, this box stays on %s", err, b.Version, orUnknown(r.cfg.Box.Firmware())))
	}
	r.step(StepReboot)
	if err := r.cfg.Box.Reboot(); err != nil {
		return r.finish(Failed, "", fmt.Errorf("rebooting this box: %w; its next boot tries %s", err, b.Version))
	}
	return nil
}

// updateStandby offers the bundle to the standby and waits until it is
// back, in sync, on the new version.
func (r *Rollout) updateStandby(ctx context.Context, path string, b Bundle) error {
	r.step(StepStandby)
	offer := &replication.Offer{ID: r.Status().ID, Version: b.Version, Size: b.Size, SHA256: b.SHA256}
	r.cfg.Pair.Offer(offer, func() (io.ReadCloser, error) { return os.Open(path) })
	defer r.cfg.Pair.Offer(nil, nil)
	deadline := time.Now().Add(r.cfg.StandbyDeadline)
	var took time.Time
	err := r.waitFor(ctx, time.Until(deadline), func() (bool, error) {
		if err := r.stillActive(); err != nil {
			return false, err
		}
		f := r.cfg.Pair.Fetched()
		if !f.Done || f.ID != offer.ID {
			return false, nil
		}
		if f.Err != "" {
			return false, fmt.Errorf("the standby refused the bundle: %s; the pair serves on, unchanged", f.Err)
		}
		took = f.At
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("the standby did not take the bundle: %w", err)
	}
	r.note("the standby wrote " + b.Version + " into its inactive slot and reboots into its trial")
	// Back: a replication link started after the standby took the
	// bundle, in sync. On the old version only counts once the standby
	// was seen gone (rebooting), not a link that merely restarted.
	var back Twin
	gone := false
	err = r.waitFor(ctx, time.Until(deadline), func() (bool, error) {
		if err := r.stillActive(); err != nil {
			return false, err
		}
		t := r.cfg.Pair.Twin()
		if !t.Standby || !t.InSync || !t.Since.After(took) {
			gone = gone || !t.Standby || t.Since.IsZero()
			return false, nil
		}
		if t.Firmware != b.Version && !gone {
			return false, nil
		}
		back = t
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("the standby did not come back in sync within %v of the roll's start: %w; this box serves on, on %s", r.cfg.StandbyDeadline, err, orUnknown(r.cfg.Box.Firmware()))
	}
	if back.Firmware != b.Version {
		return fmt.Errorf("the standby came back on %s, not %s: its trial boot did not commit and it fell back; the pair serves on the old version", orUnknown(back.Firmware), b.Version)
	}
	r.note("the standby is back on " + b.Version + ", in sync")
	return nil
}

// stillActive fails the standby's step when this box is no longer the
// active one (it handed over or was fenced): the roll cannot go on from
// here.
func (r *Rollout) stillActive() error {
	if !r.cfg.Pair.Local().Active {
		return retryable(errors.New("this box is no longer the active one (it handed over or lost its lease); the roll stops with the pair serving"))
	}
	return nil
}

// waitFor polls cond until it holds, fails, or d or ctx runs out.
func (r *Rollout) waitFor(ctx context.Context, d time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	t := time.NewTicker(r.cfg.Poll)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("timed out after %v", d.Round(time.Second))
			}
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (r *Rollout) step(s string) {
	r.mu.Lock()
	r.st.Step = s
	r.mu.Unlock()
	r.note(s)
}

// note logs text in the roll's log and saves the record.
func (r *Rollout) note(text string) {
	r.mu.Lock()
	now := time.Now()
	r.st.Updated = now
	r.st.Log = append(r.st.Log, Entry{At: now, Text: text})
	if len(r.st.Log) > 50 {
		r.st.Log = r.st.Log[len(r.st.Log)-50:]
	}
	s := r.st
	r.mu.Unlock()
	r.log.Info("rolling update: "+text, "target", s.Target, "step", s.Step)
	if err := r.save(s); err != nil {
		r.log.Warn("saving the rolling update's record", "err", err)
	}
}

// finish ends the roll in state with a note or an error, and returns err.
func (r *Rollout) finish(state, text string, err error) error {
	r.mu.Lock()
	r.st.State = state
	var re retryErr
	r.st.Retryable = errors.As(err, &re)
	if err != nil {
		r.st.Error = err.Error()
		text = state + ": " + err.Error()
	}
	r.mu.Unlock()
	if err != nil {
		r.log.Error("rolling update stopped", "state", state, "err", err)
	}
	r.note(text)
	return err
}

func (r *Rollout) save(s Status) error {
	if r.cfg.DataDir == "" {
		return nil
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(r.cfg.DataDir, StateFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// retryErr marks a failure on the pair's roles that changed nothing.
type retryErr struct{ error }

func (e retryErr) Unwrap() error { return e.error }

func retryable(err error) error { return retryErr{err} }

func orUnknown(v string) string {
	if v == "" {
		return "an unknown version"
	}
	return v
}
