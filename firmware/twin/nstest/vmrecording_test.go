package nstest

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/testbed"
)

// TestFailoverKeepsMessageBeingRecorded: Bob is leaving Alice (not
// registered) a message on the active box when it is killed; the twin
// that takes over keeps the message as far as it was saved (at least the
// second of audio the active logged as kept, which reached the standby
// by replication before the kill), and ends Bob's call with a BYE, which
// the scenario waits for.
func TestFailoverKeepsMessageBeingRecorded(t *testing.T) {
	p := idlePair(t, 1, func(_ testbed.Node, c *config.Config) { c.Voicemail = &config.Voicemail{} })
	for _, n := range []testbed.Node{testbed.A, testbed.B} {
		p.start(n)
	}
	active, standby := p.waitSettled(20 * time.Second)
	vip := p.bed.VIP().Addr().String()
	// The scenario streams its tone from a file of the e2e tests' folder.
	e2e, err := filepath.Abs(filepath.Join(testbed.SippScenarios, "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	phone := testbed.Phone(0)
	dep, err := p.bed.Start(phone, "env", "-C", e2e, "sipp", "-sf", filepath.Join("testdata", "sipp", "uac-voicemail-failover.xml"),
		"-i", p.bed.Addr(phone).String(), "-mi", p.bed.Addr(phone).String(),
		"-p", strconv.Itoa(testbed.SipPhonePort), "-mp", "6000",
		"-m", "1", "-nostdin", "-timeout", "90", "-timeout_error",
		"-s", alice.Number, "-au", bob.Number, "-ap", bob.Secret,
		"-key", "caller", bob.Number, "-key", "caller_name", bob.Name,
		"-auth_uri", alice.Number+"@"+vip+":5060", vip+":5060")
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

	kept := regexp.MustCompile(`msg="message being recorded: kept from now on should the box fail".* saved=([0-9.]+m?s)`)
	var saved time.Duration
	waitFor(t, 40*time.Second, "a second of the message saved on the active", func() (bool, string) {
		m := kept.FindStringSubmatch(p.boxes[active].proc.Output())
		if m == nil {
			return false, dep.Output()
		}
		saved, err = time.ParseDuration(m[1])
		return err == nil, fmt.Sprint(err)
	})
	if saved < time.Second {
		t.Fatalf("the active logged %v kept, want at least a second", saved)
	}
	// The standby holds everything the active had written by then.
	s, err := p.status(active)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the standby caught up", func() (bool, string) {
		st, err := p.status(standby)
		return err == nil && st.Cluster.Replication.Seq >= s.Cluster.Replication.Seq,
			fmt.Sprintf("standby at %d, active at %d (%v)", st.Cluster.Replication.Seq, s.Cluster.Replication.Seq, err)
	})
	if err := p.boxes[active].proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the standby takes over", func() (bool, string) {
		s, err := p.status(standby)
		return err == nil && s.Role == "active" && s.Cluster.Serving, s.Role
	})
	waitSipp(t, dep, "the caller's call ended by the new active")

	got := regexp.MustCompile(`msg="message of the twin saved as recorded so far".* duration=([0-9.]+m?s)`).
		FindStringSubmatch(p.boxes[standby].proc.Output())
	if got == nil {
		t.Fatalf("the new active saved no message:\n%s", p.boxes[standby].proc.Output())
	}
	d, err := time.ParseDuration(got[1])
	if err != nil || d < saved {
		t.Fatalf("the new active kept a message of %s (%v), want at least the %v saved before the kill", got[1], err, saved)
	}
	t.Logf("saved on the active before the kill: %v; message kept by the twin: %v", saved, d)
}
