package b2bua

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/cdr"
)

func hasLine(body []byte, line string) bool {
	return strings.Contains(string(body), line)
}

func TestBasicCall(t *testing.T) {
	tests := []struct {
		name     string
		hangupBy string
	}{
		{"caller hangs up", ByCaller},
		{"callee hangs up", ByCallee},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			alice := newPhone(t, e, "100", "answer")
			bob := newPhone(t, e, "200", "answer")
			e.loc.add("200", bob)

			oc := alice.dial("200", nil)
			res := oc.result()
			if res.StatusCode != 200 {
				t.Fatalf("call answered with %d", res.StatusCode)
			}
			// Media anchored both ways: the callee got the caller's SDP
			// through the relay, and the caller the callee's.
			inv := bob.wait(sip.INVITE, 1)
			if !hasLine(inv.Body(), "o=100 ") || !hasLine(inv.Body(), "a=relayed-from:A") {
				t.Errorf("callee got offer %q", inv.Body())
			}
			if !hasLine(res.Body(), "o=200 ") || !hasLine(res.Body(), "a=relayed-from:B") {
				t.Errorf("caller got answer %q", res.Body())
			}
			if got := inv.From().Address.User; got != "100" {
				t.Errorf("callee sees caller %q", got)
			}
			if got := inv.From().DisplayName; got != "Phone 100" {
				t.Errorf("callee sees caller name %q", got)
			}
			if inv.CallID().Value() == oc.d.CallID {
				t.Error("B-leg reuses the caller's Call-ID")
			}
			bob.wait(sip.ACK, 1)
			eventually(t, "call listed as answered", func() bool {
				cs := e.b.Calls()
				return len(cs) == 1 && cs[0].State == StateAnswered
			})

			var other *phone
			if tt.hangupBy == ByCaller {
				if r := alice.request(sip.BYE, nil); r.StatusCode != 200 {
					t.Fatalf("BYE answered %d", r.StatusCode)
				}
				other = bob
			} else {
				if r := bob.request(sip.BYE, nil); r.StatusCode != 200 {
					t.Fatalf("BYE answered %d", r.StatusCode)
				}
				other = alice
			}
			other.wait(sip.BYE, 1)
			recs := e.cdrs.wait(t, 1)
			r := recs[0]
			if r.Disp != cdr.Answered || r.SIPCode != 200 || r.HangupBy != tt.hangupBy ||
				r.Caller != "100" || r.CallerName != "Phone 100" || r.Callee != "200" ||
				r.Answer.IsZero() || r.End.Before(r.Answer) || r.Start.After(r.Answer) {
				t.Errorf("CDR %+v", r)
			}
			eventually(t, "media closed", func() bool { return e.media.sessions() == 0 })
			if n := len(e.b.Calls()); n != 0 {
				t.Errorf("%d calls left", n)
			}
		})
	}
}
