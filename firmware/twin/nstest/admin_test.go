package nstest

import (
	"syscall"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/internal/testbed"
)

// TestSwitchoverAndMaintenance drives the administrator's commands on a
// running pair while a phone probes the VIP: a switchover moves service
// with a near-zero gap; maintenance on the active hands over, holds
// across a restart of the box's software and keeps the box from becoming
// active even when its twin's node process dies, until maintenance off.
func TestSwitchoverAndMaintenance(t *testing.T) {
	p := newPair(t, 1)
	active, standby := p.waitSettled(20 * time.Second)
	pr := p.probe()
	waitFor(t, 15*time.Second, "the probe is answered", func() (bool, string) {
		r := pr.Report()
		return r.Answered > 5, r.String()
	})

	// Switchover on the active.
	if out, err := p.exec("switchover", "--data", p.boxes[active].dir); err != nil {
		t.Fatalf("switchover: %v\n%s", err, out)
	}
	p.waitRoles(standby, active, 20*time.Second)
	waitAnsweredBy(t, pr, standby)
	r := pr.Stop()
	t.Logf("switchover %s → %s: phone saw %s", active, standby, r)
	if r.LongestOutage >= time.Second {
		t.Errorf("switchover outage %v, want under 1 s", r.LongestOutage)
	}
	if r.Interleaved || r.Switches != 1 {
		t.Errorf("switchover: want one clean switch: %s", r)
	}
	active, standby = standby, active

	// Maintenance on the active: it hands over.
	pr = p.probe()
	waitFor(t, 15*time.Second, "the probe is answered", func() (bool, string) {
		r := pr.Report()
		return r.Answered > 5, r.String()
	})
	if out, err := p.exec("maintenance", "on", "--data", p.boxes[active].dir); err != nil {
		t.Fatalf("maintenance on: %v\n%s", err, out)
	}
	p.waitRole(active, "maintenance", 20*time.Second)
	waitFor(t, 20*time.Second, "the twin takes over", func() (bool, string) {
		s, err := p.status(standby)
		return err == nil && s.Role == "active" && s.Cluster.Serving, s.Role
	})
	waitAnsweredBy(t, pr, standby)
	r = pr.Stop()
	t.Logf("maintenance on %s: phone saw %s", active, r)
	if r.LongestOutage >= time.Second || r.Interleaved || r.Switches != 1 {
		t.Errorf("maintenance handover: want one clean switch under 1 s: %s", r)
	}
	inMaint, serving := active, standby

	// Maintenance holds across a restart of the box's software.
	if err := p.boxes[inMaint].proc.Stop(5 * time.Second); err != nil {
		t.Logf("stopping %s: %v", inMaint, err)
	}
	p.start(inMaint)
	p.waitRole(inMaint, "maintenance", 20*time.Second)

	// The serving box's node process dies: the box in maintenance must not
	// take over; the serving box's supervisor brings it back.
	pr = p.probe()
	old, err := p.worker(serving)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.waitWorker(serving, old, 20*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := p.status(inMaint)
		if err == nil && s.Role != "maintenance" {
			t.Fatalf("%s left maintenance (%s) when its twin's node process died", inMaint, s.Role)
		}
		if ss, err := p.status(serving); err == nil && ss.Role == "active" && ss.Cluster.Serving {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not serve again after its worker restarted", serving)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Serving by its status is not yet answered on the phone (the VIP
	// comes back with the new worker's takeover).
	waitAnsweredBy(t, pr, serving)
	if s, err := p.status(inMaint); err == nil && s.Role != "maintenance" {
		t.Fatalf("%s left maintenance (%s) when its twin's node process died", inMaint, s.Role)
	}
	r = pr.Stop()
	t.Logf("%s's worker killed while %s is in maintenance: phone saw %s", serving, inMaint, r)
	if nodes := r.Nodes(); len(nodes) != 1 || nodes[0] != string(serving) {
		t.Errorf("answered by %v, want only %s", nodes, serving)
	}

	// Maintenance off: the box comes back as the standby.
	if out, err := p.exec("maintenance", "off", "--data", p.boxes[inMaint].dir); err != nil {
		t.Fatalf("maintenance off: %v\n%s", err, out)
	}
	p.waitRoles(serving, inMaint, 20*time.Second)
}

// waitAnsweredBy waits until the phone's probe has had a few answers in a
// row from box n, the last stretch of what it saw: the probes sent just
// after a switch are judged too.
func waitAnsweredBy(t *testing.T, pr *testbed.Probe, n testbed.Node) {
	t.Helper()
	waitFor(t, 15*time.Second, "the phone answered by "+string(n), func() (bool, string) {
		r := pr.Report()
		if len(r.Runs) == 0 {
			return false, r.String()
		}
		last := r.Runs[len(r.Runs)-1]
		return last.Node == string(n) && last.Probes >= 10, r.String()
	})
}

// waitRole waits until box n reports role.
func (p *pair) waitRole(n testbed.Node, role string, timeout time.Duration) {
	p.t.Helper()
	waitFor(p.t, timeout, string(n)+" "+role, func() (bool, string) {
		s, err := p.status(n)
		if err != nil {
			return false, err.Error()
		}
		return s.Role == role, s.Role
	})
}
