package nstest

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/testbed"
)

// TestFailoverKeepsMWISubscription: a phone subscribed to its mailbox's
// message-summary on the active box hears of a message left on the twin
// after the active was killed, in the same subscription dialog (sipp
// discards a NOTIFY of any other Call-ID): the subscription reached the
// standby by replication.
func TestFailoverKeepsMWISubscription(t *testing.T) {
	p := idlePair(t, 2, func(_ testbed.Node, c *config.Config) { c.Voicemail = &config.Voicemail{} })
	for _, n := range []testbed.Node{testbed.A, testbed.B} {
		p.start(n)
	}
	active, standby := p.waitSettled(20 * time.Second)
	vip := p.bed.VIP().Addr().String()
	sub := p.sipp(testbed.Phone(0), "subscribe-mwi-wait.xml", alice, alice.Number,
		"-key", "caller", alice.Number, "-auth_uri", alice.Number+"@"+vip+":5060", "-timeout", "60")
	waitFor(t, 20*time.Second, "the subscription on the active", func() (bool, string) {
		return strings.Contains(p.boxes[active].proc.Output(), `msg="message-summary subscription"`), sub.Output()
	})
	waitFor(t, 20*time.Second, "the standby in sync", func() (bool, string) {
		s, err := p.status(standby)
		return err == nil && s.Cluster.Replication.InSync, fmt.Sprint(err)
	})
	if err := p.boxes[active].proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the standby takes over", func() (bool, string) {
		s, err := p.status(standby)
		return err == nil && s.Role == "active" && s.Cluster.Serving, s.Role
	})
	// Bob leaves Alice (not registered) a message on the new active; the
	// scenario streams its tone from a file of the e2e tests' folder.
	e2e, err := filepath.Abs(filepath.Join(testbed.SippScenarios, "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	phone := testbed.Phone(1)
	dep, err := p.bed.Start(phone, "env", "-C", e2e, "sipp", "-sf", filepath.Join("testdata", "sipp", "uac-voicemail.xml"),
		"-i", p.bed.Addr(phone).String(), "-mi", p.bed.Addr(phone).String(),
		"-p", strconv.Itoa(testbed.SipPhonePort), "-mp", "6000",
		"-m", "1", "-nostdin", "-timeout", "30", "-timeout_error",
		"-s", alice.Number, "-au", bob.Number, "-ap", bob.Secret,
		"-key", "caller", bob.Number, "-key", "caller_name", bob.Name,
		"-auth_uri", alice.Number+"@"+vip+":5060", "-d", "3300", vip+":5060")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		select {
		case <-dep.Done():
		default:
			dep.Kill()
		}
	})
	waitSipp(t, dep, "the message on the new active")
	waitSipp(t, sub, "the subscriber told of it by the new active")
}
