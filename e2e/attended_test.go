package e2e

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/cdr"
)

var carol = config.Extension{Number: "102", Name: "Carol", Secret: "carol-secret-333"}

// answerTag waits for the 200 OK that answered s's INVITE to appear in
// its message trace and returns the To tag the PBX gave it.
func answerTag(t *testing.T, s *sippProc) string {
	t.Helper()
	re := regexp.MustCompile(`(?s)SIP/2\.0 200 OK.*?\nTo:[^\n]*;tag=([^;\s>]+).*?CSeq: *\d+ INVITE`)
	var tag string
	waitFor(t, 10*time.Second, "the answer in "+s.name+"'s trace", func() bool {
		b, err := os.ReadFile(s.msgFile)
		if err != nil {
			return false
		}
		m := re.FindSubmatch(b)
		if m == nil {
			return false
		}
		tag = string(m[1])
		return true
	})
	return tag
}

// TestAttendedTransfer: Alice calls Carol, then Bob, and transfers Bob to
// Carol with a REFER whose Refer-To replaces her call with Carol (RFC
// 5589). The PBX joins Bob and Carol in its relay without calling anyone
// again, tells Alice by NOTIFY and hangs up both her calls; Carol later
// hangs up on Bob. When Alice put Bob on hold first, Bob gets one
// re-INVITE taking him off hold. Three sipp phones for Alice's two calls
// and one each for Bob and Carol.
func TestAttendedTransfer(t *testing.T) {
	needTools(t, "sipp")
	tests := []struct {
		name     string
		transfer string // Alice's first call
		bob      string
	}{
		{"Bob talking", "uac-refer.xml", "uas.xml"},
		{"Bob on hold", "uac-hold-refer.xml", "uas-held.xml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startPBX(t, alice, bob, carol)
			bobPort, carolPort := freePorts(t, 2), freePorts(t, 2)
			register(t, p, bob, bobPort)
			register(t, p, carol, carolPort)
			carolUA := startSipp(t, sippOpts{scenario: "uas-bye.xml", service: carol.Number, port: carolPort, pause: 4 * time.Second})
			bobUA := startSipp(t, sippOpts{scenario: tt.bob, service: bob.Number, port: bobPort})
			carolUA.waitBound()
			bobUA.waitBound()

			// Call 2 first: Alice's call with Carol, which the REFER
			// replaces.
			call2 := startSipp(t, sippOpts{
				scenario: "uac-wait-bye.xml", remote: p.addr(), service: carol.Number,
				user: alice.Number, pass: alice.Secret, keys: caller(alice),
			})
			tag := answerTag(t, call2)
			replaces := fmt.Sprintf("%s;to-tag=%s;from-tag=%duac1", sippCallID(call2), tag, call2.cmd.Process.Pid)
			keys := caller(alice)
			keys["target"] = carol.Number
			keys["replaces"] = url.QueryEscape(replaces)
			call1 := startSipp(t, sippOpts{
				scenario: tt.transfer, remote: p.addr(), service: bob.Number,
				user: alice.Number, pass: alice.Secret, pause: 500 * time.Millisecond, keys: keys,
			})
			call1.wait(0)
			call2.wait(0)
			carolUA.wait(0) // Carol hangs up on Bob...
			bobUA.wait(0)   // ...who gets the BYE: they were joined.

			for _, c := range []struct{ callID, callee string }{{sippCallID(call1), bob.Number}, {sippCallID(call2), carol.Number}} {
				rec := p.waitCDR(func(r map[string]string) bool { return r["call_id"] == c.callID && r["callee"] == c.callee })
				if rec["caller"] != alice.Number || rec["disposition"] != "ANSWERED" || rec["hangup_by"] != "transfer" {
					t.Errorf("CDR of Alice's call with %s: %v", c.callee, rec)
				}
			}
			rec := p.waitCDR(func(r map[string]string) bool { return r["caller"] == bob.Number })
			if rec["callee"] != carol.Number || rec["disposition"] != "ANSWERED" || rec["hangup_by"] != "callee" {
				t.Errorf("CDR of the joined call: %v", rec)
			}
		})
	}
}

// TestAttendedTransferToOutside: Alice talks to Bob, calls an outside
// number over a trunk (a sipp provider server), and transfers Bob to it
// with a REFER whose Replaces names her trunk call. Bob and the provider
// are joined in the relay; Bob hangs up later and the provider gets the
// BYE: the trunk leg survived the join. The trunk's one channel stays
// taken by the joined call and is free after it.
func TestAttendedTransferToOutside(t *testing.T) {
	needTools(t, "sipp")
	portA := freePorts(t, 2)
	prov := startProvider(t, portA)
	res := noDNS(t)
	cfg := trunkConfig(t, config.Config{
		Trunks: []config.TrunkLine{{Name: "one", Host: fmt.Sprintf("127.0.0.1:%d", portA), Channels: 1}},
		Routes: []config.Route{{Pattern: "0.", Strip: 1, Trunks: []string{"one"}}},
	})
	ip := startInProcessPBX(t, cfg, res)
	bobPort := freePorts(t, 2)
	runSipp(t, sippOpts{scenario: "register.xml", remote: ip.addr, port: bobPort,
		service: bob.Number, user: bob.Number, pass: bob.Secret, keys: map[string]string{"expires": "300"}}, 0)
	bobUA := startSipp(t, sippOpts{scenario: "uas-bye.xml", service: bob.Number, port: bobPort, pause: 4 * time.Second})
	bobUA.waitBound()

	// Call 2 first: Alice's call out over the trunk, which the REFER
	// replaces.
	call2 := startSipp(t, sippOpts{
		scenario: "uac-wait-bye.xml", remote: ip.addr, service: "0301234",
		user: alice.Number, pass: alice.Secret, keys: caller(alice),
	})
	tag := answerTag(t, call2)
	waitFor(t, 10*time.Second, "Alice's call on the trunk", func() bool { return ip.trunkStatus("one").InUse == 1 })
	replaces := fmt.Sprintf("%s;to-tag=%s;from-tag=%duac1", sippCallID(call2), tag, call2.cmd.Process.Pid)
	keys := caller(alice)
	keys["target"] = "0301234"
	keys["replaces"] = url.QueryEscape(replaces)
	call1 := startSipp(t, sippOpts{
		scenario: "uac-refer.xml", remote: ip.addr, service: bob.Number,
		user: alice.Number, pass: alice.Secret, pause: 500 * time.Millisecond, keys: keys,
	})
	call1.wait(0)
	call2.wait(0)
	if n := ip.trunkStatus("one").InUse; n != 1 {
		t.Errorf("the joined call holds %d channels of the trunk, want 1", n)
	}
	bobUA.wait(0) // Bob hangs up on the provider...
	var joined *cdr.Record
	waitFor(t, 10*time.Second, "the joined call's CDR", func() bool {
		for _, r := range ip.cdrs(t) {
			if r.Caller == bob.Number {
				joined = &r
			}
		}
		return joined != nil
	})
	if joined.Callee != "301234" || joined.Trunk != "one" || joined.Disp != cdr.Answered || joined.HangupBy != "caller" {
		t.Errorf("CDR of the joined call %+v", joined)
	}
	// ...who got the BYE: sipp's provider scenario ends its call with it.
	waitFor(t, 10*time.Second, "the provider's BYE", func() bool {
		b, err := os.ReadFile(prov.msgFile)
		return err == nil && strings.Contains(string(b), "\nBYE sip:")
	})
	waitFor(t, 10*time.Second, "the trunk's channel free", func() bool { return ip.trunkStatus("one").InUse == 0 })
}
