package nstest

import (
	"fmt"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/testbed"
)

// Log lines of the mailbox about a message being recorded.
var (
	vmKept    = regexp.MustCompile(`msg="message being recorded: kept from now on should the box fail".* saved=([0-9.]+m?s)`)
	vmTwins   = regexp.MustCompile(`msg="message of the twin saved as recorded so far".* duration=([0-9.]+m?s)`)
	vmCarried = regexp.MustCompile(`msg="message being recorded carried on from the twin".* saved=([0-9.]+m?s)`)
	vmSaved   = regexp.MustCompile(`msg="message saved".* duration=([0-9.]+m?s)`)
)

// vmHangUpAfter is when the caller hangs up, from the start of its
// audio: long after the takeover, which comes some 10 s in (a second
// saved at the first save, 5 s into the recording, then the takeover).
const vmHangUpAfter = 26 * time.Second

// lastDuration is the duration of the last of the n-th and later
// matches of re in out, and whether there is one.
func lastDuration(t *testing.T, re *regexp.Regexp, out string, n int) (time.Duration, bool) {
	t.Helper()
	m := re.FindAllStringSubmatch(out, -1)
	if len(m) <= n {
		return 0, false
	}
	d, err := time.ParseDuration(m[len(m)-1][1])
	if err != nil {
		t.Fatalf("a duration in the log: %v", err)
	}
	return d, true
}

// TestFailoverKeepsMessageBeingRecorded: Bob is leaving Alice (not
// registered) a message on the active box when it hands over (a
// switchover) and, in a second call, when the new active is killed; each
// time the twin that takes over reopens the mailbox's RTP port on the
// virtual IP and carries the call on: Bob goes on sending audio and
// hangs up himself (a BYE from the box would fail the scenario), and the
// twin saves ONE message, as long as what was saved before the takeover
// (the second logged as kept, which reached the twin by replication)
// and the audio sent after it; the box that died saved none.
func TestFailoverKeepsMessageBeingRecorded(t *testing.T) {
	p := idlePair(t, 1, func(_ testbed.Node, c *config.Config) { c.Voicemail = &config.Voicemail{} })
	for _, n := range []testbed.Node{testbed.A, testbed.B} {
		p.start(n)
	}
	active, standby := p.waitSettled(20 * time.Second)
	vip := p.bed.VIP().Addr().String()
	phone := testbed.Phone(0)

	for i, end := range []struct {
		name string
		do   func(active testbed.Node)
	}{
		{"switchover", func(active testbed.Node) {
			if out, err := p.exec("switchover", "--data", p.boxes[active].dir); err != nil {
				t.Fatalf("switchover: %v: %s", err, out)
			}
		}},
		{"SIGKILL", func(active testbed.Node) {
			if err := p.boxes[active].proc.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		keptBefore := len(vmKept.FindAllString(p.boxes[active].proc.Output(), -1))
		twinsBefore := len(vmTwins.FindAllString(p.boxes[standby].proc.Output(), -1))
		carriedBefore := len(vmCarried.FindAllString(p.boxes[standby].proc.Output(), -1))
		savedBefore := len(vmSaved.FindAllString(p.boxes[standby].proc.Output(), -1))
		activeSavedBefore := len(vmSaved.FindAllString(p.boxes[active].proc.Output(), -1))
		dep := p.sippInE2E(phone, "uac-voicemail-failover.xml", "-timeout", "90", "-d", strconv.Itoa(int(vmHangUpAfter/time.Millisecond)),
			"-s", alice.Number, "-au", bob.Number, "-ap", bob.Secret,
			"-key", "caller", bob.Number, "-key", "caller_name", bob.Name,
			"-auth_uri", alice.Number+"@"+vip+":5060", vip+":5060")

		var saved time.Duration
		waitFor(t, 40*time.Second, end.name+": a second of the message saved on the active", func() (bool, string) {
			var ok bool
			saved, ok = lastDuration(t, vmKept, p.boxes[active].proc.Output(), keptBefore)
			return ok, dep.Output()
		})
		if saved < time.Second {
			t.Fatalf("%s: the active logged %v kept, want at least a second", end.name, saved)
		}
		// The standby holds everything the active had written by then.
		s, err := p.status(active)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, end.name+": the standby caught up", func() (bool, string) {
			st, err := p.status(standby)
			return err == nil && st.Cluster.Replication.Seq >= s.Cluster.Replication.Seq,
				fmt.Sprintf("standby at %d, active at %d (%v)", st.Cluster.Replication.Seq, s.Cluster.Replication.Seq, err)
		})
		end.do(active)
		waitFor(t, 20*time.Second, end.name+": the standby takes over", func() (bool, string) {
			s, err := p.status(standby)
			return err == nil && s.Role == "active" && s.Cluster.Serving, s.Role
		})
		serving := time.Now()
		waitFor(t, 20*time.Second, end.name+": the new active carries the call on", func() (bool, string) {
			_, ok := lastDuration(t, vmCarried, p.boxes[standby].proc.Output(), carriedBefore)
			return ok, p.boxes[standby].proc.Output()
		})
		waitSipp(t, dep, end.name+": the caller goes on and hangs up itself")
		after := time.Since(serving)

		var d time.Duration
		waitFor(t, 20*time.Second, end.name+": the message saved by the new active", func() (bool, string) {
			var ok bool
			d, ok = lastDuration(t, vmSaved, p.boxes[standby].proc.Output(), savedBefore)
			return ok, p.boxes[standby].proc.Output()
		})
		if n := len(vmSaved.FindAllString(p.boxes[standby].proc.Output(), -1)) - savedBefore; n != 1 {
			t.Errorf("%s: the new active saved %d messages, want one", end.name, n)
		}
		if _, ok := lastDuration(t, vmTwins, p.boxes[standby].proc.Output(), twinsBefore); ok {
			t.Errorf("%s: the new active also kept the message as recorded so far: two messages", end.name)
		}
		if end.name == "switchover" {
			if n := len(vmSaved.FindAllString(p.boxes[active].proc.Output(), -1)) - activeSavedBefore; n != 0 {
				t.Errorf("%s: the box that handed over saved %d messages, want none", end.name, n)
			}
		}
		// The message runs from the recording's start to the caller's
		// BYE: at least what was saved before the takeover and the audio
		// sent after it (less a margin for the BYE's way).
		if want := saved + after - 2*time.Second; d < want {
			t.Fatalf("%s: the message lasts %v, want at least %v (%v saved before the takeover, %v of audio after it)", end.name, d, want, saved, after)
		}
		t.Logf("%s: saved on the active before: %v; audio after the takeover: %v; message: %v", end.name, saved, after, d)
		if i == 0 {
			// The box that handed over stands by for the second call.
			p.waitRoles(standby, active, 30*time.Second)
			active, standby = standby, active
		}
	}
}
