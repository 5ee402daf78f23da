package nstest

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/internal/testbed"
)

// TestSupervisedWorker breaks the active box's node process (the worker
// `twinpbx run` supervises) while a phone probes the VIP: the supervisor
// must take the VIP off the box the moment the worker dies, and restart a
// crashed or hung worker, which then rejoins as the standby.
func TestSupervisedWorker(t *testing.T) {
	const watchdog = 3 * time.Second // the pair's watchdog_timeout (see config)
	tests := []struct {
		name string
		sig  syscall.Signal
	}{
		{"worker SIGKILL", syscall.SIGKILL},
		{"worker SIGSTOP", syscall.SIGSTOP},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, 1)
			active, standby := p.waitSettled(20 * time.Second)
			if held, err := p.hasVIP(active); err != nil || !held {
				t.Fatalf("active %s holds the VIP: %v, %v", active, held, err)
			}
			old := p.waitWorker(active, 0, 20*time.Second)
			pr := p.probe()
			waitFor(t, 15*time.Second, "the probe is answered", func() (bool, string) {
				r := pr.Report()
				return r.Answered > 5, r.String()
			})

			broken := time.Now()
			if err := syscall.Kill(old, tc.sig); err != nil {
				t.Fatal(err)
			}
			if tc.sig == syscall.SIGKILL {
				// OnChildExit runs before the restart: the VIP goes at
				// once, long before the twin could count the box silent.
				// That it was the supervisor's exit hook, and not the new
				// worker's start-up, is in its log; how soon is measured
				// (a loaded machine may take the supervisor a while).
				waitFor(t, 20*time.Second, "the VIP gone from the dead box", func() (bool, string) {
					held, err := p.hasVIP(active)
					return err == nil && !held, fmt.Sprint(held, err)
				})
				t.Logf("VIP removed from %s %v after the worker was killed", active, time.Since(broken).Round(time.Millisecond))
				waitFor(t, 20*time.Second, "the supervisor's word that it removed the VIP", func() (bool, string) {
					return strings.Contains(p.boxes[active].proc.Output(), "node process ended: removed its VIP"), testbed.Tail(p.boxes[active].proc.Output(), 10)
				})
			}
			p.waitTakeover(standby, 20*time.Second)

			fresh := p.waitWorker(active, old, watchdog+10*time.Second)
			restartedAfter := time.Since(broken)
			if tc.sig == syscall.SIGSTOP {
				// The countdown started at the last kick, up to one kick
				// period (a third of the timeout) before the stop.
				if earliest := watchdog - watchdog/3; restartedAfter < earliest {
					t.Errorf("hung worker replaced after %v, before the watchdog could expire (%v after the last kick at the earliest)", restartedAfter, earliest)
				}
				if out := p.boxes[active].proc.Output(); !strings.Contains(out, "watchdog reset") {
					t.Errorf("the supervisor logged no watchdog reset; log:\n%s", testbed.Tail(out, 40))
				}
			}
			t.Logf("worker %d replaced by %d %v after %s", old, fresh, restartedAfter.Round(time.Millisecond), tc.name)
			if held, err := p.hasVIP(active); err != nil || held {
				t.Errorf("the old active %s still holds the VIP after its worker was replaced: %v, %v", active, held, err)
			}
			p.waitRoles(standby, active, 20*time.Second)

			r := pr.Stop()
			t.Logf("%s: phone saw %s", tc.name, r)
			if r.LongestOutage > maxOutage {
				t.Errorf("longest outage %v exceeds %v", r.LongestOutage, maxOutage)
			}
			if r.Interleaved {
				t.Errorf("both boxes answered on the VIP: %s", r)
			}
		})
	}
}
