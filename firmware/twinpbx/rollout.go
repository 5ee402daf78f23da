package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/twinpbx/twinpbx/firmware/control"
	"github.com/twinpbx/twinpbx/firmware/rollout"
)

// rollPair asks the running box on data to roll the pair to bundle and
// prints the roll's log until it ends, or until this box reboots into
// the new version (its last step).
func rollPair(ctx context.Context, data, bundle string, stdout io.Writer) error {
	c, err := control.Dial(data)
	if errors.Is(err, control.ErrNotRunning) {
		return fmt.Errorf("update --pair: %w (%s)", err, strings.TrimRight(data, "/"))
	}
	if err != nil {
		return fmt.Errorf("update --pair: %w", err)
	}
	msg, err := c.StartRollout(bundle)
	if err != nil {
		return fmt.Errorf("update --pair: %w", err)
	}
	fmt.Fprintln(stdout, msg)
	return followRoll(ctx, c.Status, time.Second, stdout)
}

// followRoll polls the status and prints each new line of the roll's
// log; it returns nil when the roll is done or this box reboots, and the
// roll's error when it failed.
func followRoll(ctx context.Context, status func(io.Writer) error, every time.Duration, stdout io.Writer) error {
	var id string
	printed, lastStep := 0, ""
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		var buf bytes.Buffer
		err := status(&buf)
		if err != nil {
			if lastStep == rollout.StepReboot {
				fmt.Fprintln(stdout, "this box is rebooting into the new version; `twinpbx status` shows the outcome once it is back")
				return nil
			}
			return fmt.Errorf("update --pair: following the roll: %w (`twinpbx status` shows it)", err)
		}
		st, err := rollStatus(buf.Bytes())
		if err != nil {
			return fmt.Errorf("update --pair: %w", err)
		}
		if st != nil {
			if st.ID != id {
				id, printed = st.ID, 0
			}
			for _, e := range st.Log[min(printed, len(st.Log)):] {
				fmt.Fprintf(stdout, "%s  %s\n", e.At.Format("15:04:05"), e.Text)
			}
			printed = len(st.Log)
			lastStep = st.Step
			switch st.State {
			case rollout.Done:
				return nil
			case rollout.Failed, rollout.Abandoned, rollout.Waiting:
				return fmt.Errorf("rolling update %s: %s", st.State, st.Error)
			}
		}
		select {
		case <-ctx.Done():
			fmt.Fprintln(stdout, "no longer following; the roll goes on in the box (`twinpbx status`)")
			return nil
		case <-t.C:
		}
	}
}

// rollStatus reads the roll from the status JSON of a twin box; nil
// when there is none yet.
func rollStatus(b []byte) (*rollout.Status, error) {
	var s struct {
		Cluster struct {
			Rollout *rollout.Status `json:"rollout"`
		} `json:"cluster"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("reading the box's status: %w", err)
	}
	return s.Cluster.Rollout, nil
}
