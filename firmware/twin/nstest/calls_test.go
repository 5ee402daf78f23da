package nstest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/testbed"
)

// sipp runs one sipp call (-m 1) from a phone and waits for it; a
// failure reports sipp's output.
func (p *pair) sipp(phone testbed.Node, scenario string, ext config.Extension, service string, extra ...string) *testbed.Process {
	p.t.Helper()
	return p.bed.StartSipp(p.t, phone, p.bed.VIP().Addr().String()+":5060", scenario, ext, service, extra...)
}

func waitSipp(t *testing.T, proc *testbed.Process, what string) { testbed.WaitSipp(t, proc, what) }

// call makes one answered call from alice on phone 0 to bob on phone 1,
// whose registration must already be known to the active box.
func (p *pair) call(what string) {
	p.t.Helper()
	uas := p.sipp(testbed.Phone(1), "uas.xml", config.Extension{}, bob.Number)
	// Should the INVITE beat sipp's bind, the PBX retransmits it.
	vip := p.bed.VIP().Addr().String()
	uac := p.sipp(testbed.Phone(0), "uac.xml", alice, bob.Number,
		"-key", "caller", alice.Number, "-key", "caller_name", alice.Name,
		"-auth_uri", bob.Number+"@"+vip+":5060", "-d", "200")
	waitSipp(p.t, uac, what+": caller")
	waitSipp(p.t, uas, what+": callee")
}

// cdrCount is how many CDRs box n exports.
func (p *pair) cdrCount(n testbed.Node) (int, string) {
	out, err := p.exec("cdr", "export", "--data", p.boxes[n].dir)
	if err != nil {
		return -1, fmt.Sprintf("%v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return len(lines) - 1, out // less the header
}

// TestFailoverKeepsRegistrationsAndCDRs registers a phone and makes a call
// on the active, kills it, and calls the phone again through the new
// active without the phone registering again: the binding and the first
// call's CDR reached the standby by replication.
func TestFailoverKeepsRegistrationsAndCDRs(t *testing.T) {
	p := newPair(t, 2)
	active, standby := p.waitSettled(20 * time.Second)
	reg := p.sipp(testbed.Phone(1), "register.xml", bob, bob.Number, "-key", "expires", "600")
	waitSipp(t, reg, "registering bob")
	p.call("call before the failover")
	waitFor(t, 20*time.Second, "the first CDR on the active", func() (bool, string) {
		n, out := p.cdrCount(active)
		return n == 1, out
	})
	p.waitInSync(standby, 20*time.Second)

	p.killActive(active, standby, 20*time.Second)
	s, err := p.status(standby)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range s.Registrations {
		found = found || r.AOR == bob.Number
	}
	if !found {
		t.Fatalf("the new active %s does not know bob's registration: %+v", standby, s.Registrations)
	}
	p.call("call after the failover")
	waitFor(t, 20*time.Second, "both CDRs on the new active", func() (bool, string) {
		n, out := p.cdrCount(standby)
		return n == 2, out
	})
}
