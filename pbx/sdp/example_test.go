package sdp_test

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/twinpbx/twinpbx/pbx/sdp"
)

func ExampleRewrite() {
	offer := []byte("v=0\r\n" +
		"o=- 1 1 IN IP4 192.168.1.20\r\n" +
		"s=-\r\n" +
		"c=IN IP4 192.168.1.20\r\n" +
		"t=0 0\r\n" +
		"m=audio 4000 RTP/AVP 0 18 101\r\n" +
		"a=rtpmap:0 PCMU/8000\r\n" +
		"a=rtpmap:18 G729/8000\r\n" +
		"a=rtpmap:101 telephone-event/8000\r\n" +
		"a=candidate:1 1 UDP 2130706431 192.168.1.20 4000 typ host\r\n")
	noG729 := func(name string) bool { return name != "G729" }
	out, remote, err := sdp.Rewrite(offer, netip.MustParseAddr("192.0.2.1"), []int{20000}, noG729)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(strings.ReplaceAll(string(out), "\r\n", "\n"))
	fmt.Println("phone receives RTP on", remote[0].RTP(), "and RTCP on", remote[0].RTCP())
	// Output:
	// v=0
	// o=- 1 1 IN IP4 192.168.1.20
	// s=-
	// c=IN IP4 192.0.2.1
	// t=0 0
	// m=audio 20000 RTP/AVP 0 101
	// a=rtpmap:0 PCMU/8000
	// a=rtpmap:101 telephone-event/8000
	// phone receives RTP on 192.168.1.20:4000 and RTCP on 192.168.1.20:4001
}
