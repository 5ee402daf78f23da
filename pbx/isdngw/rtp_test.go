package isdngw

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/twinpbx/twinpbx/hw/isdn/g711"
)

// B-channel audio leaves as RTP in the law the PBX chose, sequence and
// timestamp advancing packet by packet.
func TestSendRTP(t *testing.T) {
	for _, pt := range []uint8{8, 0} {
		t.Run(map[uint8]string{8: "PCMA", 0: "PCMU"}[pt], func(t *testing.T) {
			lo := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0"))
			ours, err := net.ListenUDP("udp", lo)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = ours.Close() })
			peer, err := net.ListenUDP("udp", lo)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = peer.Close() })
			c := &gwCall{rtp: ours, ssrc: 0x1234, answered: make(chan struct{})}
			close(c.answered)
			c.pt.Store(uint32(pt))
			to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
			c.remote.Store(&to)

			buf := make([]byte, 1500)
			for i, n := range []int{160, 80, 160} {
				samples := bytes.Repeat([]byte{byte(0x10 + i)}, n)
				c.sendRTP(samples)
				_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
				got, _, err := peer.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
				var p rtp.Packet
				if err := p.Unmarshal(buf[:got]); err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
				want := samples
				if pt == 0 {
					want = g711.ALawToULaw(make([]byte, n), samples)
				}
				wantTS := []uint32{0, 160, 240}[i]
				if p.PayloadType != pt || p.SSRC != 0x1234 || p.SequenceNumber != uint16(i+1) || p.Timestamp != wantTS || !bytes.Equal(p.Payload, want) {
					t.Fatalf("packet %d: pt %d ssrc %x seq %d ts %d payload % x; want pt %d seq %d ts %d payload % x",
						i, p.PayloadType, p.SSRC, p.SequenceNumber, p.Timestamp, p.Payload, pt, i+1, wantTS, want)
				}
			}
		})
	}
}
