package boot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/twinpbx/twinpbx/firmware/update"
)

// Kernel command line keys of the A/B boot. The boot stage (the kernel
// and initramfs the board's firmware starts) finds none of them: it
// chooses a slot and starts that slot's kernel with KeySlot (and
// KeyTrial on a trial boot) added to its own command line.
const (
	KeySlot          = "twinpbx.slot"           // A or B: this system was booted from that slot
	KeyTrial         = "twinpbx.trial"          // 1: a trial boot, which must commit
	KeyTrialDeadline = "twinpbx.trial.deadline" // how long a trial boot has to become healthy
	KeyStage         = "twinpbx.stage"          // off: boot this kernel, do not look for slots
)

// DefaultTrialDeadline is how long a trial boot has to become healthy
// before init gives up on it and reboots into the old slot.
const DefaultTrialDeadline = 5 * time.Minute

// SlotParams are the A/B settings of the kernel command line.
type SlotParams struct {
	// Slot is the slot this system was booted from; update.NoSlot for
	// the boot stage itself.
	Slot update.Slot
	// Trial is set on a trial boot.
	Trial bool
	// Deadline bounds a trial boot's wait for health.
	Deadline time.Duration
	// NoStage keeps the boot stage from looking for slots.
	NoStage bool
}

func isSlotKey(key string) bool {
	switch key {
	case KeySlot, KeyTrial, KeyTrialDeadline, KeyStage:
		return true
	}
	return false
}

// ParseSlotParams reads the A/B settings of a kernel command line. As
// with ParseCmdline, a malformed value is reported and left at its
// default.
func ParseSlotParams(line string) (SlotParams, []error) {
	p := SlotParams{Deadline: DefaultTrialDeadline}
	var errs []error
	for _, f := range strings.Fields(line) {
		key, val, _ := strings.Cut(f, "=")
		var err error
		switch key {
		case KeySlot:
			p.Slot, err = update.ParseSlot(val)
		case KeyTrial:
			switch val {
			case "1":
				p.Trial = true
			case "0":
				p.Trial = false
			default:
				err = errors.New("want 0 or 1")
			}
		case KeyTrialDeadline:
			var d time.Duration
			d, err = time.ParseDuration(val)
			if err == nil && d <= 0 {
				err = errors.New("want a positive duration")
			}
			if err == nil {
				p.Deadline = d
			}
		case KeyStage:
			if val != "off" {
				err = errors.New("want off")
			}
			p.NoStage = err == nil
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("kernel command line %s=%q: %w", key, val, err))
		}
	}
	if p.Trial && p.Slot == update.NoSlot {
		errs = append(errs, fmt.Errorf("kernel command line: %s without %s (ignored)", KeyTrial, KeySlot))
		p.Trial = false
	}
	return p, errs
}

// SlotCmdline is the command line the boot stage gives the kernel of the
// slot it chose: its own, without A/B settings and the boot loader's
// BOOT_IMAGE and initrd, plus the slot (and the trial mark).
func SlotCmdline(stage string, d update.Decision) string {
	var out []string
	for _, f := range strings.Fields(stage) {
		key, _, _ := strings.Cut(f, "=")
		if isSlotKey(key) || key == "BOOT_IMAGE" || key == "initrd" {
			continue
		}
		out = append(out, f)
	}
	out = append(out, KeySlot+"="+d.Slot.String())
	if d.Trial {
		out = append(out, KeyTrial+"=1")
	}
	return strings.Join(out, " ")
}

// Healthy tells from the running appliance's status (the control API's
// JSON) whether a trial boot may commit: a standalone or active box
// serves SIP on at least one listener; a standby or a box in
// maintenance runs its node with its store open (it serves once it
// becomes active). A box still booting, syncing or fenced is not
// healthy yet.
func Healthy(status []byte) (bool, string) {
	var st struct {
		Role      string            `json:"role"`
		Listeners []json.RawMessage `json:"listeners"`
	}
	if err := json.Unmarshal(status, &st); err != nil {
		return false, "status unreadable: " + err.Error()
	}
	switch st.Role {
	case "standalone", "active":
		if len(st.Listeners) == 0 {
			return false, st.Role + " without a SIP listener"
		}
		return true, st.Role + " serving SIP"
	case "standby", "maintenance":
		return true, st.Role
	case "":
		return false, "status without a role"
	}
	return false, "role " + st.Role
}

// trialWatch is the wait of a trial boot for health, with its effects
// (asking the status, committing, rebooting) as functions.
type trialWatch struct {
	log      *slog.Logger
	slot     update.Slot
	deadline time.Duration
	every    time.Duration
	status   func() ([]byte, error)
	commit   func() (update.State, error)
	reboot   func()
}

// run asks the status every w.every until it is Healthy, then commits;
// when w.deadline passes first it reboots so that the boot stage falls
// back. It reports whether it
// committed; it returns without either when ctx ends (twinpbx stopped:
// init reboots anyway).
func (w trialWatch) run(ctx context.Context) bool {
	end := time.Now().Add(w.deadline)
	why := "no status yet"
	t := time.NewTicker(w.every)
	defer t.Stop()
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		b, err := w.status()
		if err != nil {
			why = err.Error()
			continue
		}
		ok, reason := Healthy(b)
		why = reason
		if !ok {
			continue
		}
		st, err := w.commit()
		if err != nil {
			// The box serves: keep it so; the next boot falls back.
			w.log.Error("UPDATE NOT COMMITTED: writing the boot state failed; the next boot falls back to the old slot", "slot", w.slot.String(), "err", err)
			return false
		}
		w.log.Info("update committed: the trial slot is now the active slot", "slot", w.slot.String(), "version", st.Version(w.slot), "health", reason)
		return true
	}
	w.log.Error("UPDATE FAILED: the trial boot did not become healthy in time; rebooting into the old slot",
		"slot", w.slot.String(), "deadline", w.deadline, "last", why)
	w.reboot()
	return false
}
