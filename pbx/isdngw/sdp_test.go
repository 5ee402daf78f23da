package isdngw

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/twinpbx/twinpbx/pbx/sdp"
)

// The offer names the RTP socket's own address, with the address type
// that fits it, so the PBX can read it back.
func TestOfferAddress(t *testing.T) {
	for _, tc := range []struct{ listen, conn string }{
		{"127.0.0.1", "c=IN IP4 127.0.0.1\r\n"},
		{"::1", "c=IN IP6 ::1\r\n"},
		{"::ffff:127.0.0.1", "c=IN IP4 127.0.0.1\r\n"},
	} {
		listen := tc.listen
		t.Run(listen, func(t *testing.T) {
			conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(listen), 0)))
			if err != nil {
				t.Skipf("no %s here: %v", listen, err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			c := &gwCall{rtp: conn}
			if body := string(c.sdp(8, 0)); !strings.Contains(body, tc.conn) {
				t.Fatalf("offer lacks %q:\n%s", tc.conn, body)
			}
			streams, err := sdp.Parse(c.sdp(8, 0))
			if err != nil {
				t.Fatalf("parsing our offer: %v\n%s", err, c.sdp(8, 0))
			}
			la := conn.LocalAddr().(*net.UDPAddr).AddrPort()
			want := netip.AddrPortFrom(la.Addr().Unmap(), la.Port())
			if len(streams) != 1 || streams[0].RTP() != want {
				t.Fatalf("offer streams %+v, want one at %v\n%s", streams, want, c.sdp(8, 0))
			}
		})
	}
}
