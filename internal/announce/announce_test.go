package announce

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

// TestGARPFrames: a request and a reply, broadcast, each naming ip at mac
// as its sender (and as the reply's target, which Linux needs to take
// a reply as gratuitous).
func TestGARPFrames(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	ip := netip.MustParseAddr("10.0.0.10")
	frames, err := GARPFrames(mac, ip)
	if err != nil {
		t.Fatal(err)
	}
	ops := []arp.Operation{arp.OperationRequest, arp.OperationReply}
	if len(frames) != len(ops) {
		t.Fatalf("%d frames, want %d", len(frames), len(ops))
	}
	for i, b := range frames {
		var f ethernet.Frame
		if err := f.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		var p arp.Packet
		if err := p.UnmarshalBinary(f.Payload); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f.Destination, ethernet.Broadcast) || f.EtherType != ethernet.EtherTypeARP {
			t.Errorf("frame %d to %v type %v, want an ARP broadcast", i, f.Destination, f.EtherType)
		}
		if p.Operation != ops[i] || p.SenderIP != ip || p.TargetIP != ip || !bytes.Equal(p.SenderHardwareAddr, mac) {
			t.Errorf("frame %d: %+v", i, p)
		}
	}
	if _, err := GARPFrames(mac, netip.MustParseAddr("fd00::1")); err == nil {
		t.Error("an IPv6 address made ARP frames")
	}
}

// TestNAMessage: an unsolicited neighbour advertisement, override flag
// set, with the target link-layer address option.
func TestNAMessage(t *testing.T) {
	na, err := NAMessage(net.HardwareAddr{2, 0, 0, 0, 0, 1}, netip.MustParseAddr("fd00::10"))
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{136, 0, 0, 0, 0x20, 0, 0, 0, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 2, 1, 2, 0, 0, 0, 0, 1}
	if !bytes.Equal(na, want) {
		t.Errorf("neighbour advertisement\n got % x\nwant % x", na, want)
	}
}
