package sdp

import (
	"fmt"
	"net/netip"
)

// LateOffer is the offer a B2BUA makes on behalf of a caller whose INVITE
// carried no SDP (RFC 3261 §13.2.1, "late offer"): G.711 µ-law and A-law
// with RFC 4733 events, received at relay (the relay's own address, which
// Rewrite keeps; the caller's real address comes later, with the answer
// in its ACK or from its first packets).
func LateOffer(relay netip.Addr) []byte {
	relay = relay.Unmap()
	return []byte("v=0\r\n" +
		"o=- 0 0 " + addrLine(relay) + "\r\n" +
		"s=-\r\n" +
		"c=" + addrLine(relay) + "\r\n" +
		"t=0 0\r\n" +
		"m=audio 9 RTP/AVP 0 8 101\r\n" +
		"a=rtpmap:0 PCMU/8000\r\n" +
		"a=rtpmap:8 PCMA/8000\r\n" +
		"a=rtpmap:101 telephone-event/8000\r\n" +
		"a=fmtp:101 0-16\r\n" +
		"a=sendrecv\r\n")
}

func addrLine(a netip.Addr) string { return fmt.Sprintf("IN %s %s", addrType(a), a) }
