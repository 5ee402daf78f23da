package e2e

import (
	"testing"
	"time"
)

// TestReliableProvisional runs calls with reliable provisional responses
// (RFC 3262) through the PBX, which ends 100rel on each leg: a callee
// that sends its early media in a reliable 183 gets the PBX's PRACK, and
// a caller that requires 100rel gets reliable provisionals of the PBX's
// own and must PRACK them before the 200.
func TestReliableProvisional(t *testing.T) {
	needTools(t, "sipp")
	tests := []struct {
		name     string
		uas, uac string
	}{
		{"reliable callee, plain caller", "uas-100rel.xml", "uac.xml"},
		{"plain callee, caller requires 100rel", "uas.xml", "uac-100rel.xml"},
		{"reliable callee, caller requires 100rel", "uas-100rel.xml", "uac-100rel.xml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startPBX(t, alice, bob)
			bobPort := freePorts(t, 2)
			register(t, p, bob, bobPort)
			uas := startSipp(t, sippOpts{scenario: tt.uas, service: bob.Number, port: bobPort})
			uas.waitBound()
			uac := startSipp(t, sippOpts{
				scenario: tt.uac, remote: p.addr(), service: bob.Number,
				user: alice.Number, pass: alice.Secret, pause: 300 * time.Millisecond, keys: caller(alice),
			})
			uac.wait(0)
			uas.wait(0)
			checkCDR(t, p, sippCallID(uac), "ANSWERED", 200, "caller", 0)
		})
	}
}
