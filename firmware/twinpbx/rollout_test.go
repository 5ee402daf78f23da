package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/rollout"
)

// statusJSON is a twin box's status with the roll st.
func statusJSON(t *testing.T, st *rollout.Status) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"role": "active", "cluster": map[string]any{"Role": 3, "rollout": st}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFollowRoll(t *testing.T) {
	at := time.Date(2026, 11, 24, 23, 0, 0, 0, time.UTC)
	entry := func(s string) rollout.Entry { return rollout.Entry{At: at, Text: s} }
	running := func(step string, log ...rollout.Entry) *rollout.Status {
		return &rollout.Status{ID: "r", State: rollout.Running, Step: step, Log: log}
	}
	l1, l2, l3 := entry("bundle 2.0 checked"), entry("updating the standby"), entry("switching over")
	tests := []struct {
		name     string
		statuses []*rollout.Status // then the box is gone
		wantErr  string
		wantOut  []string
	}{
		{name: "done", statuses: []*rollout.Status{
			nil, running(rollout.StepStandby, l1, l2), running(rollout.StepSwitchover, l1, l2, l3),
			{ID: "r", State: rollout.Done, Log: []rollout.Entry{l1, l2, l3, entry("done")}}},
			wantOut: []string{"bundle 2.0 checked", "updating the standby", "switching over", "done"}},
		{name: "this box reboots", statuses: []*rollout.Status{running(rollout.StepSelf, l1), running(rollout.StepReboot, l1, l2)},
			wantOut: []string{"rebooting into the new version"}},
		{name: "failed", statuses: []*rollout.Status{running(rollout.StepStandby, l1),
			{ID: "r", State: rollout.Failed, Error: "the standby came back on 1.0", Log: []rollout.Entry{l1, entry("failed: the standby came back on 1.0")}}},
			wantErr: "the standby came back on 1.0"},
		{name: "the box goes away mid-roll", statuses: []*rollout.Status{running(rollout.StepStandby, l1)},
			wantErr: "following the roll"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := 0
			status := func(w io.Writer) error {
				if i >= len(tt.statuses) {
					return errors.New("connection refused")
				}
				_, err := w.Write(statusJSON(t, tt.statuses[i]))
				i++
				return err
			}
			var out bytes.Buffer
			err := followRoll(context.Background(), status, time.Millisecond, &out)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("followRoll: %v, want error %q", err, tt.wantErr)
			}
			for _, w := range tt.wantOut {
				if strings.Count(out.String(), w) != 1 {
					t.Errorf("output does not say %q once:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestUpdatePairCommand(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"update", "--pair", "--data", t.TempDir(), "x.bundle"}, "not running"},
		{[]string{"update", "--pair", "--disk", "d.img", "x.bundle"}, "do not apply"},
		{[]string{"update", "--pair", "--reboot", "x.bundle"}, "do not apply"},
		{[]string{"update", "--pair"}, "one BUNDLE"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		err := run(context.Background(), tt.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%v: %v, want an error naming %q", tt.args, err, tt.wantErr)
		}
	}
}
