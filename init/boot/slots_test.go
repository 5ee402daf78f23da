package boot

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/update"
)

func TestParseSlotParams(t *testing.T) {
	tests := []struct {
		line    string
		want    SlotParams
		wantErr string
	}{
		{"console=ttyS0 twinpbx.ip=10.0.2.15/24", SlotParams{Deadline: DefaultTrialDeadline}, ""},
		{"twinpbx.slot=B twinpbx.trial=1", SlotParams{Slot: update.SlotB, Trial: true, Deadline: DefaultTrialDeadline}, ""},
		{"twinpbx.slot=a twinpbx.trial.deadline=30s", SlotParams{Slot: update.SlotA, Deadline: 30 * time.Second}, ""},
		{"twinpbx.stage=off", SlotParams{NoStage: true, Deadline: DefaultTrialDeadline}, ""},
		{"twinpbx.slot=C", SlotParams{Deadline: DefaultTrialDeadline}, "want A or B"},
		{"twinpbx.slot=A twinpbx.trial=yes", SlotParams{Slot: update.SlotA, Deadline: DefaultTrialDeadline}, "want 0 or 1"},
		{"twinpbx.trial=1", SlotParams{Deadline: DefaultTrialDeadline}, "without twinpbx.slot"},
		{"twinpbx.trial.deadline=-1s", SlotParams{Deadline: DefaultTrialDeadline}, "positive"},
		{"twinpbx.stage=on", SlotParams{Deadline: DefaultTrialDeadline}, "want off"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, errs := ParseSlotParams(tt.line)
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if tt.wantErr == "" && len(errs) > 0 || tt.wantErr != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), tt.wantErr)) {
				t.Errorf("errors %v, want %q", errs, tt.wantErr)
			}
			// The general parser leaves the A/B keys to this one.
			if _, errs := ParseCmdline(tt.line); len(errs) > 0 {
				t.Errorf("ParseCmdline complains: %v", errs)
			}
		})
	}
}

func TestSlotCmdline(t *testing.T) {
	stage := "BOOT_IMAGE=/vmlinuz initrd=/init.img console=ttyS0,115200 panic=-1 twinpbx.slot=A twinpbx.trial=1 twinpbx.trial.deadline=1m twinpbx.ip=10.0.2.15/24"
	tests := []struct {
		d    update.Decision
		want string
	}{
		{update.Decision{Slot: update.SlotB, Trial: true}, "console=ttyS0,115200 panic=-1 twinpbx.ip=10.0.2.15/24 twinpbx.slot=B twinpbx.trial=1"},
		{update.Decision{Slot: update.SlotA, FellBack: true}, "console=ttyS0,115200 panic=-1 twinpbx.ip=10.0.2.15/24 twinpbx.slot=A"},
	}
	for _, tt := range tests {
		got := SlotCmdline(stage, tt.d)
		if got != tt.want {
			t.Errorf("SlotCmdline(%+v) =\n%q\nwant\n%q", tt.d, got, tt.want)
		}
		sp, errs := ParseSlotParams(got)
		if len(errs) > 0 || sp.Slot != tt.d.Slot || sp.Trial != tt.d.Trial {
			t.Errorf("the slot's kernel reads %+v %v from %q", sp, errs, got)
		}
	}
}

func TestHealthy(t *testing.T) {
	tests := []struct {
		status string
		want   bool
	}{
		{`{"role":"standalone","listeners":[{"transport":"udp","addr":"0.0.0.0:5060"}]}`, true},
		{`{"role":"standalone","listeners":[]}`, false},
		{`{"role":"standalone"}`, false},
		{`{"role":"active","listeners":[{"transport":"udp"}],"cluster":{}}`, true},
		{`{"role":"standby","listeners":null}`, true},
		{`{"role":"maintenance"}`, true},
		{`{"role":"sync"}`, false},
		{`{"role":"fenced","listeners":[{}]}`, false},
		{`{}`, false},
		{`not json`, false},
	}
	for _, tt := range tests {
		if got, why := Healthy([]byte(tt.status)); got != tt.want {
			t.Errorf("Healthy(%s) = %v (%s), want %v", tt.status, got, why, tt.want)
		}
	}
}

func TestTrialWatch(t *testing.T) {
	healthy := []byte(`{"role":"standalone","listeners":[{"transport":"udp"}]}`)
	starting := []byte(`{"role":"standalone","listeners":[]}`)
	tests := []struct {
		name       string
		deadline   time.Duration
		answers    [][]byte // status answers in turn; nil: an error; the last repeats
		commitErr  error
		cancel     bool
		wantCommit bool
		wantReboot bool
		wantOK     bool
	}{
		{"healthy after a while", time.Minute, [][]byte{nil, starting, starting, healthy}, nil, false, true, false, true},
		{"never healthy", 50 * time.Millisecond, [][]byte{starting}, nil, false, false, true, false},
		{"never answers", 50 * time.Millisecond, [][]byte{nil}, nil, false, false, true, false},
		{"commit not written", time.Minute, [][]byte{healthy}, errors.New("disk gone"), false, true, false, false},
		{"twinpbx stopped", time.Minute, [][]byte{starting}, nil, true, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var asked, commits, reboots int
			w := trialWatch{
				log: slog.New(slog.NewTextHandler(io.Discard, nil)), slot: update.SlotB,
				deadline: tt.deadline, every: time.Millisecond,
				status: func() ([]byte, error) {
					a := tt.answers[min(asked, len(tt.answers)-1)]
					asked++
					if tt.cancel && asked == 3 {
						cancel()
					}
					if a == nil {
						return nil, errors.New("not running")
					}
					return a, nil
				},
				commit: func() (update.State, error) { commits++; return update.State{}, tt.commitErr },
				reboot: func() { reboots++ },
			}
			ok := w.run(ctx)
			if ok != tt.wantOK || (commits == 1) != tt.wantCommit || commits > 1 || (reboots == 1) != tt.wantReboot || reboots > 1 {
				t.Fatalf("run = %v with %d commits, %d reboots after %d status calls", ok, commits, reboots, asked)
			}
		})
	}
}

func FuzzSlotParams(f *testing.F) {
	for _, s := range []string{
		"BOOT_IMAGE=/vmlinuz console=ttyS0 twinpbx.slot=B twinpbx.trial=1 twinpbx.trial.deadline=90s",
		"twinpbx.slot= twinpbx.trial twinpbx.trial.deadline=-5m twinpbx.stage=off",
		"twinpbx.slot=a\ttwinpbx.trial=0\u00a0twinpbx.trial.deadline=1e400h",
		"\x00twinpbx.slot=\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		p, _ := ParseSlotParams(line)
		if p.Deadline <= 0 {
			t.Fatalf("deadline %v", p.Deadline)
		}
		if p.Trial && p.Slot == update.NoSlot {
			t.Fatal("trial without a slot")
		}
		// Whatever the stage's own line, the slot's kernel reads the
		// boot stage's choice back, and nothing else of the A/B keys.
		for _, d := range []update.Decision{{Slot: update.SlotA}, {Slot: update.SlotB, Trial: true}} {
			out := SlotCmdline(line, d)
			sp, errs := ParseSlotParams(out)
			if len(errs) > 0 || sp != (SlotParams{Slot: d.Slot, Trial: d.Trial, Deadline: DefaultTrialDeadline}) {
				t.Fatalf("SlotCmdline(%q, %+v) = %q, read back as %+v %v", line, d, out, sp, errs)
			}
		}
	})
}
