package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
)

// TestISDNEmergencyPreemption: two ordinary calls from extensions hold
// both B channels of the simulated BRI; a third extension dials 112. The
// PBX clears the call answered last (its phone gets a BYE with the
// preemption Reason, the line clears it with cause 8, its CDR says so),
// the emergency call reaches the line on the freed channel and is
// answered; the other call stays up.
func TestISDNEmergencyPreemption(t *testing.T) {
	needTools(t, "sipp")
	p := startOnSimulatedBRI(t, []config.Route{
		{Pattern: "112", Emergency: true, Trunks: []string{"isdn"}},
		{Pattern: "0.", Strip: 1, Trunks: []string{"isdn"}},
	}, alice, bob, carol)

	var st struct {
		Calls []struct {
			Caller string
			State  string
		}
		Trunks []struct {
			Name     string
			Channels int
			InUse    int `json:"in_use"`
		}
	}
	status := func() {
		t.Helper()
		if err := p.status(&st); err != nil {
			t.Fatal(err)
		}
	}
	answered := func(caller string) func() bool {
		return func() bool {
			status()
			for _, c := range st.Calls {
				if c.Caller == caller && c.State == "answered" {
					return true
				}
			}
			return false
		}
	}
	// Alice's call first, then Bob's: Bob's is the one answered last.
	first := startSipp(t, sippOpts{
		scenario: "uac-wait-bye.xml", remote: p.addr(), service: "0301234567",
		user: alice.Number, pass: alice.Secret, keys: caller(alice),
	})
	waitFor(t, 20*time.Second, "Alice's call answered", answered(alice.Number))
	second := startSipp(t, sippOpts{
		scenario: "uac-wait-bye.xml", remote: p.addr(), service: "0307654321",
		user: bob.Number, pass: bob.Secret, keys: caller(bob),
	})
	waitFor(t, 20*time.Second, "Bob's call answered", answered(bob.Number))
	status()
	if len(st.Trunks) != 1 || st.Trunks[0].Channels != 2 || st.Trunks[0].InUse != 2 {
		t.Fatalf("trunks %+v, want isdn with both of its 2 channels in use", st.Trunks)
	}

	emergency := runSipp(t, sippOpts{
		scenario: "uac.xml", remote: p.addr(), service: "112",
		user: carol.Number, pass: carol.Secret, pause: 500 * time.Millisecond, keys: caller(carol),
	}, 0)
	rec := p.waitCDR(func(r map[string]string) bool { return r["call_id"] == sippCallID(emergency) })
	if rec["disposition"] != "ANSWERED" || rec["trunk"] != "isdn" {
		t.Errorf("emergency call's CDR %v, want ANSWERED over trunk isdn", rec)
	}

	// Bob's phone got the BYE, with the preemption Reason.
	second.wait(0)
	msgs, err := os.ReadFile(second.msgFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(msgs), `Reason: preemption ;cause=1 ;text="UA preemption"`) {
		t.Error("Bob's BYE has no preemption Reason")
	}
	cleared := p.waitCDR(func(r map[string]string) bool { return r["call_id"] == sippCallID(second) })
	if cleared["disposition"] != "ANSWERED" || cleared["hangup_by"] != "preemption" || cleared["trunk"] != "isdn" {
		t.Errorf("cleared call's CDR %v, want ANSWERED, hung up by preemption, over isdn", cleared)
	}
	// The line heard cause 8, preemption, for Bob's call.
	waitFor(t, 10*time.Second, "the line to clear Bob's call with cause 8", func() bool {
		return strings.Contains(p.log.String(), "called=307654321 cause=8")
	})
	// Alice's call is still up.
	select {
	case <-first.done:
		t.Errorf("Alice's sipp ended (exit %d): her call was cleared too", first.exitCode)
	default:
	}
	if !answered(alice.Number)() {
		t.Error("Alice's call is no longer up")
	}
}
