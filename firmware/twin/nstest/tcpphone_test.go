package nstest

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/testbed"
)

// tcpRegisterPort is the port a phone's REGISTER over TCP leaves from in
// TestTCPPhoneAfterFailover; it listens on testbed.SipPhonePort.
const tcpRegisterPort = testbed.SipPhonePort + 9

// TestTCPPhoneAfterFailover: bob registers over TCP on the VIP from a port
// of its own, as phones do, with a Contact naming the port it listens on;
// the active box is killed, and alice (UDP) calls bob through the new
// active. bob's connection died with the old active, so the new active
// must open one to bob's Contact, not to the port bob connected from, and
// the call (INVITE, ACK, the caller's BYE) goes over it.
func TestTCPPhoneAfterFailover(t *testing.T) {
	p := idlePair(t, 2, withTCP)
	for _, n := range []testbed.Node{testbed.A, testbed.B} {
		p.start(n)
	}
	active, standby := p.waitSettled(30 * time.Second)

	// StartSipp names scenarios relative to e2e's folder of them.
	base, err := filepath.Abs(testbed.SippScenarios)
	if err != nil {
		t.Fatal(err)
	}
	own, err := filepath.Abs(filepath.Join("testdata", "register-contact.xml"))
	if err != nil {
		t.Fatal(err)
	}
	scenario, err := filepath.Rel(base, own)
	if err != nil {
		t.Fatal(err)
	}
	reg := p.sipp(testbed.Phone(1), scenario, bob, bob.Number, "-key", "expires", "600", "-t", "t1",
		"-p", strconv.Itoa(tcpRegisterPort), "-key", "contact_port", strconv.Itoa(testbed.SipPhonePort))
	waitSipp(t, reg, "bob registering over TCP on the VIP")
	// The binding has the port bob connected from as its source: where
	// the new active used to send after a failover, in vain.
	from := "tcp:" + netip.AddrPortFrom(p.bed.Addr(testbed.Phone(1)), tcpRegisterPort).String()
	waitFor(t, 30*time.Second, "bob's TCP binding on the active", func() (bool, string) {
		src, err := p.bindingSources(active)
		return err == nil && src[bob.Number] == from, fmt.Sprint(src, err)
	})
	p.waitInSync(standby, 30*time.Second)

	p.killActive(active, standby, 30*time.Second)

	// bob listens on TCP (sipp's t1 accepts connections on its port);
	// alice calls over UDP and hangs up after 200 ms.
	uas := p.sipp(testbed.Phone(1), "uas.xml", config.Extension{}, bob.Number, "-t", "t1")
	p.waitListening(testbed.Phone(1), testbed.SipPhonePort)
	vip := p.bed.VIP().Addr().String()
	uac := p.sipp(testbed.Phone(0), "uac.xml", alice, bob.Number,
		"-key", "caller", alice.Number, "-key", "caller_name", alice.Name,
		"-auth_uri", bob.Number+"@"+vip+":5060", "-d", "200")
	waitSipp(t, uac, "alice calls bob on TCP after the failover: caller")
	waitSipp(t, uas, "alice calls bob on TCP after the failover: callee")
}

// TestTCPPhoneThroughDeadForwarder: bob registers over TCP at the
// standby's own address (docs/CLUSTER.md, "Both boxes take requests"), so
// his binding on the active names the standby's forwarder, which holds
// his connection. The standby is powered off; alice calls bob through the
// VIP: the active's INVITE to the dead forwarder goes unanswered, and
// after siteAnswerWait the active rings bob at his Contact over a
// connection of its own.
func TestTCPPhoneThroughDeadForwarder(t *testing.T) {
	p := idlePair(t, 2, withTCP)
	for _, n := range []testbed.Node{testbed.A, testbed.B} {
		p.start(n)
	}
	active, standby := p.waitSettled(30 * time.Second)
	reg := p.bed.StartSipp(t, testbed.Phone(1), p.ownAddr(standby), "register.xml", bob, bob.Number,
		"-key", "expires", "600", "-t", "t1")
	waitSipp(t, reg, "bob registering over TCP at the standby's own address")
	waitFor(t, 30*time.Second, "bob's binding on the active through the standby's forwarder", func() (bool, string) {
		src, err := p.bindingSources(active)
		return err == nil && src[bob.Number] == "udp:"+p.ownAddr(standby), fmt.Sprint(src, err)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.bed.PowerOff(ctx, standby); err != nil {
		t.Fatal(err)
	}
	uas := p.sipp(testbed.Phone(1), "uas.xml", config.Extension{}, bob.Number, "-t", "t1")
	p.waitListening(testbed.Phone(1), testbed.SipPhonePort)
	vip := p.bed.VIP().Addr().String()
	uac := p.sipp(testbed.Phone(0), "uac.xml", alice, bob.Number,
		"-key", "caller", alice.Number, "-key", "caller_name", alice.Name,
		"-auth_uri", bob.Number+"@"+vip+":5060", "-d", "200")
	waitSipp(t, uac, "alice calls bob with the forwarder's box off: caller")
	waitSipp(t, uas, "alice calls bob with the forwarder's box off: callee")
}

// waitListening waits until something listens on TCP port in phone's
// namespace: a refused connection is not retried as a lost UDP INVITE is
// retransmitted.
func (p *pair) waitListening(phone testbed.Node, port int) {
	p.t.Helper()
	waitFor(p.t, 30*time.Second, fmt.Sprintf("TCP port %d listening at %s", port, phone), func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		out, err := p.bed.Exec(ctx, p.bed.NS(phone), "ss", "-Hltn", "sport = :"+strconv.Itoa(port))
		return err == nil && strings.Contains(string(out), "LISTEN"), fmt.Sprint(string(out), err)
	})
}
