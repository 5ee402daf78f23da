package sdp

import (
	"net/netip"
	"strings"
	"testing"
)

// TestLateOffer: the offer made for a caller without SDP parses and
// becomes through Rewrite an ordinary offer at the relay's address and
// port, with G.711 and telephone events.
func TestLateOffer(t *testing.T) {
	relay := netip.MustParseAddr("192.0.2.10")
	streams, err := Parse(LateOffer(relay))
	if err != nil {
		t.Fatal(err)
	}
	if len(streams) != 1 || streams[0].Media != "audio" || streams[0].Addr != relay {
		t.Fatalf("streams %+v, want one audio stream at the relay", streams)
	}
	out, _, err := Rewrite(LateOffer(relay), relay, []int{30000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Addr != relay || got[0].Port != 30000 {
		t.Errorf("the offer to the callee points at %v:%d, want %v:30000", got[0].Addr, got[0].Port, relay)
	}
	for _, codec := range []string{"PCMU/8000", "PCMA/8000", "telephone-event/8000"} {
		if !strings.Contains(string(out), codec) {
			t.Errorf("the offer to the callee lacks %s:\n%s", codec, out)
		}
	}
	if strings.Contains(string(out), "0.0.0.0") {
		t.Errorf("the offer to the callee says 0.0.0.0 (hold):\n%s", out)
	}
	if _, err := Parse(LateOffer(netip.MustParseAddr("2001:db8::10"))); err != nil {
		t.Errorf("IPv6 late offer: %v", err)
	}
}
