package nstest

import (
	"syscall"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/internal/testbed"
)

// maxOutage is a generous bound on what a phone may see go unanswered in
// a failover test; the figures to aim for are in docs/CLUSTER.md.
const maxOutage = 3 * time.Second

func TestPairSettles(t *testing.T) {
	p := newPair(t, 1)
	active, standby := p.waitSettled(20 * time.Second)
	t.Logf("active %s, standby %s", active, standby)
}

func TestFailoverOnSIGKILL(t *testing.T) {
	p := newPair(t, 1)
	active, standby := p.waitSettled(20 * time.Second)
	pr := p.probe()
	waitFor(t, 5*time.Second, "the probe is answered", func() (bool, string) { return pr.Report().Answered > 5, pr.Report().String() })
	if err := p.boxes[active].proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the standby takes over", func() (bool, string) {
		s, err := p.status(standby)
		return err == nil && s.Role == "active" && s.Cluster.Serving, s.Role
	})
	waitFor(t, 5*time.Second, "the probe answered by the new active", func() (bool, string) {
		r := pr.Report()
		return len(r.Runs) > 0 && r.Runs[len(r.Runs)-1].Node == string(standby) && r.Runs[len(r.Runs)-1].Probes > 5, r.String()
	})
	r := pr.Stop()
	t.Logf("SIGKILL of the active: %s", r)
	if r.LongestOutage > maxOutage || r.Interleaved {
		t.Errorf("phone saw: %s", r)
	}
	_ = testbed.A
}
