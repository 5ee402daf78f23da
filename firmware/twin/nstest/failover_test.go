package nstest

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/testbed"
)

// maxOutage is a generous bound on what a phone may see go unanswered in
// a failover test; the figures to aim for are in docs/CLUSTER.md and the
// measured ones are logged.
const maxOutage = 3 * time.Second

// breakCase is one row of the decision table: how the active is broken and
// whether the standby must take over.
type breakCase struct {
	name     string
	breakIt  func(t *testing.T, p *pair, active testbed.Node)
	takeover bool
	// alarm, if set, must be raised by the box that is standby after the
	// break (by the active one when onActive).
	alarm    string
	onActive bool
	// timing is the pair's timing preset (empty: the default). The rows
	// where a failover must not happen although the twin falls silent
	// run "slow": a loaded machine's stall of a few hundred ms makes the
	// default timing take over there by design (docs/CLUSTER.md,
	// "Timing argument": with the beats lost, the active's lease lasts a
	// probe span, and a standby probing the VIP meanwhile finds no
	// answer), while the decision these rows check is the same.
	timing string
}

var breakCases = []breakCase{
	{name: "active SIGKILL", breakIt: func(t *testing.T, p *pair, a testbed.Node) {
		// The node process crashes; its supervisor lives on.
		pid, err := p.worker(a)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}, takeover: true},
	{name: "active SIGSTOP", breakIt: func(t *testing.T, p *pair, a testbed.Node) {
		// The whole box's software hangs, supervisor included.
		if err := p.signalBox(a, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}, takeover: true},
	{name: "active power off", breakIt: func(t *testing.T, p *pair, a testbed.Node) {
		if err := p.bed.PowerOff(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}, takeover: true},
	{name: "LAN carrier cut on the active", breakIt: func(t *testing.T, p *pair, a testbed.Node) {
		if err := p.bed.CutLink(context.Background(), a, testbed.LAN, testbed.Carrier); err != nil {
			t.Fatal(err)
		}
	}, takeover: true},
	{name: "silent cut of both paths on the active", breakIt: func(t *testing.T, p *pair, a testbed.Node) {
		for _, path := range []testbed.Path{testbed.LAN, testbed.Crossover} {
			if err := p.bed.CutLink(context.Background(), a, path, testbed.Silent); err != nil {
				t.Fatal(err)
			}
		}
	}, takeover: true},
	{name: "silent crossover cut", breakIt: func(t *testing.T, p *pair, a testbed.Node) {
		if err := p.bed.CutLink(context.Background(), a, testbed.Crossover, testbed.Silent); err != nil {
			t.Fatal(err)
		}
	}, alarm: "heartbeat path crossover down", timing: "slow"},
	{name: "LAN silent cut on the active", breakIt: func(t *testing.T, p *pair, a testbed.Node) {
		// No carrier change: the active learns it from its gateway probe,
		// and the standby still reaches the gateway.
		if err := p.bed.CutLink(context.Background(), a, testbed.LAN, testbed.Silent); err != nil {
			t.Fatal(err)
		}
	}, takeover: true},
	{name: "LAN carrier cut on the standby", breakIt: func(t *testing.T, p *pair, a testbed.Node) {
		if err := p.bed.CutLink(context.Background(), a.Twin(), testbed.LAN, testbed.Carrier); err != nil {
			t.Fatal(err)
		}
	}, alarm: "isolated: the gateway does not answer"},
	{name: "both heartbeat paths broken, active fine", breakIt: func(t *testing.T, p *pair, a testbed.Node) {
		// The crossover is cut and the LAN drops the beats alone: SIP and
		// the gateway still work for both boxes.
		if err := p.bed.CutLink(context.Background(), a, testbed.Crossover, testbed.Silent); err != nil {
			t.Fatal(err)
		}
		for _, n := range []testbed.Node{a, a.Twin()} {
			p.dropHeartbeats(n)
		}
	}, alarm: "heartbeat paths broken, twin serving", timing: "slow"},
}

// TestDecisionTable breaks the active box in each way of the decision
// table while a phone probes the VIP, and checks the takeover (or that
// none happened), the phone's longest outage, that the boxes never both
// answered, and that the standby ends up serving.
func TestDecisionTable(t *testing.T) {
	for _, c := range breakCases {
		t.Run(c.name, func(t *testing.T) {
			p := idlePair(t, 2, func(_ testbed.Node, cfg *config.Config) { cfg.Cluster.Timing = c.timing })
			for _, n := range []testbed.Node{testbed.A, testbed.B} {
				p.start(n)
			}
			active, standby := p.waitSettled(20 * time.Second)
			if c.takeover {
				// A registration and a CDR made on the active must be on
				// the new active after the takeover.
				waitSipp(t, p.sipp(testbed.Phone(1), "register.xml", bob, bob.Number, "-key", "expires", "600"), "registering bob")
				p.call("call before the failure")
				waitFor(t, 20*time.Second, "the standby in sync with the first CDR", func() (bool, string) {
					s, err := p.status(standby)
					n, out := p.cdrCount(active)
					return err == nil && n == 1 && s.Cluster.Replication.InSync, fmt.Sprint(n, err, out)
				})
			}
			pr := p.probe()
			waitFor(t, 15*time.Second, "the probe is answered", func() (bool, string) {
				r := pr.Report()
				return r.Answered > 5, r.String()
			})
			broken := time.Now()
			c.breakIt(t, p, active)
			want := active
			if c.takeover {
				want = standby
				p.waitTakeover(standby, 20*time.Second)
			} else {
				time.Sleep(3 * time.Second) // what must not happen gets its chance (past the slow dead time and a VIP probe)
				s, err := p.status(standby)
				if err != nil || s.Role != "standby" {
					t.Fatalf("standby %s is %q (%v) after %s; want standby", standby, s.Role, err, c.name)
				}
			}
			// Generous waits from here on: a loaded machine delays the
			// monitors' rounds; the outage the phone saw is judged below.
			waitFor(t, 15*time.Second, "the phone is answered by "+string(want), func() (bool, string) {
				r := pr.Report()
				if len(r.Runs) == 0 {
					return false, r.String()
				}
				last := r.Runs[len(r.Runs)-1]
				return last.Node == string(want) && last.Last.After(broken.Add(time.Second)), r.String()
			})
			if c.takeover {
				// bob did not register again: the call finds him through
				// the replicated binding, and no CDR is lost.
				p.call("call after the takeover")
				waitFor(t, 20*time.Second, "both CDRs on the new active", func() (bool, string) {
					n, out := p.cdrCount(standby)
					return n == 2, out
				})
			}
			if c.alarm != "" {
				on := standby
				if c.takeover != c.onActive {
					on = active // roles swapped
				}
				waitFor(t, 15*time.Second, fmt.Sprintf("alarm %q on %s", c.alarm, on), func() (bool, string) {
					s, err := p.status(on)
					if err != nil {
						return false, err.Error()
					}
					var texts []string
					for _, a := range s.Cluster.Alarms {
						if a.Text == c.alarm {
							return true, ""
						}
						texts = append(texts, a.Text)
					}
					return false, fmt.Sprint(texts)
				})
			}
			r := pr.Stop()
			t.Logf("%s: phone saw %s", c.name, r)
			if r.LongestOutage > maxOutage {
				t.Errorf("longest outage %v exceeds %v", r.LongestOutage, maxOutage)
			}
			if r.Interleaved {
				t.Errorf("both boxes answered on the VIP: %s", r)
			}
			if !c.takeover && r.Switches != 0 {
				t.Errorf("service moved although it must not: %s", r)
			}
		})
	}
}

// TestRejoinIsSticky restarts a killed active: it must come back as the
// standby, with no second interruption for the phones.
//
// The pair runs the slow timing: until the killed box is back, the new
// active holds its lease by the gateway a probe span at a time, and with
// the default timing a loaded machine holding its loop past 100 ms costs
// the phone a VIP probe's worth of answers (the lease fencing a hung box,
// by design) before the rejoin has even begun.
func TestRejoinIsSticky(t *testing.T) {
	p := idlePair(t, 1, func(_ testbed.Node, c *config.Config) { c.Cluster.Timing = "slow" })
	for _, n := range []testbed.Node{testbed.A, testbed.B} {
		p.start(n)
	}
	active, standby := p.waitSettled(30 * time.Second)
	if err := p.boxes[active].proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.boxes[active].proc.Wait()
	p.waitTakeover(standby, 20*time.Second)
	pr := p.probe()
	waitFor(t, 15*time.Second, "the probe is answered", func() (bool, string) {
		r := pr.Report()
		return r.Answered > 5, r.String()
	})
	p.start(active)
	p.waitRoles(standby, active, 30*time.Second)
	time.Sleep(2 * time.Second) // what must not happen gets its chance
	r := pr.Stop()
	t.Logf("rejoin of %s: phone saw %s", active, r)
	if r.Switches != 0 || r.LongestOutage > 0 || r.Interleaved {
		// The time lets the boxes' logs tell what happened then.
		t.Errorf("the rejoin interrupted the phones: %s (the longest outage from %s)", r, r.LongestOutageAt.Format("15:04:05.000"))
	}
}
