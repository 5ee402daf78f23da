package nat

import (
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestSymmetric(t *testing.T) {
	tests := []struct {
		name, via, src, wantReceived, wantRport, wantDest string
	}{
		{"behind NAT", "10.0.0.5:5060", "203.0.113.7:40211", "203.0.113.7", "40211", "203.0.113.7:40211"},
		{"same host, other port", "203.0.113.7:5060", "203.0.113.7:40211", "", "40211", "203.0.113.7:40211"},
		// With no packet source sipgo falls back to the Via: nothing to correct.
		{"no source", "10.0.0.5:5060", "", "", "5060", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := "REGISTER sip:pbx SIP/2.0\r\nVia: SIP/2.0/UDP " + tc.via + ";branch=z9hG4bK1\r\n" +
				"From: <sip:100@pbx>;tag=1\r\nTo: <sip:100@pbx>\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
			m, err := sip.ParseMessage([]byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			req := m.(*sip.Request)
			req.SetSource(tc.src)
			res := sip.NewResponseFromRequest(req, 200, "OK", nil)
			res.SetDestination("")
			Symmetric(req, res)
			got, _ := res.Via().Params.Get("received")
			rport, _ := res.Via().Params.Get("rport")
			if got != tc.wantReceived || rport != tc.wantRport {
				t.Errorf("received=%q rport=%q, want %q %q", got, rport, tc.wantReceived, tc.wantRport)
			}
			if tc.wantDest != "" && res.Destination() != tc.wantDest {
				t.Errorf("destination %q, want %q", res.Destination(), tc.wantDest)
			}
		})
	}
}
