package nstest

import (
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/testbed"
)

// TestFailoverKeepsMWISubscription: a phone subscribed to its mailbox's
// message-summary on the active box hears of a message left on the twin
// after the active was killed, in the same subscription dialog (sipp
// discards a NOTIFY of any other Call-ID): the subscription reached the
// standby by replication. The killed box, back as the standby, lists
// the message.
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
	p.waitInSync(standby, 20*time.Second)
	p.killActive(active, standby, 20*time.Second)
	// Bob leaves Alice (not registered) a message on the new active; the
	// scenario streams its tone from a file of the e2e tests' folder.
	dep := p.sippInE2E(testbed.Phone(1), "uac-voicemail.xml", "-timeout", "30",
		"-s", alice.Number, "-au", bob.Number, "-ap", bob.Secret,
		"-key", "caller", bob.Number, "-key", "caller_name", bob.Name,
		"-auth_uri", alice.Number+"@"+vip+":5060", "-d", "3300", vip+":5060")
	waitSipp(t, dep, "the message on the new active")
	waitSipp(t, sub, "the subscriber told of it by the new active")

	// The killed box back as the standby: its store holds the message,
	// which its running node lists over the control socket.
	p.start(active)
	p.waitInSync(active, 30*time.Second)
	out, err := p.exec("voicemail", "list", "--data", p.boxes[active].dir)
	if err != nil || !strings.HasPrefix(out, alice.Number+"\t") || !strings.Contains(out, "\t"+bob.Number+"\t") {
		t.Errorf("voicemail list on the standby: %v: %q", err, out)
	}
}
