package media

import (
	"testing"
	"time"
)

// BenchmarkRelay measures packets per second through one session, A to
// B, with a window of packets in flight. Loopback can drop under load;
// lost packets are counted, not waited for.
func BenchmarkRelay(b *testing.B) {
	r := newTestRelay(b, 47700, 47799)
	pa, pb := newPhone(b), newPhone(b)
	s, forA, _ := call(b, r, "bench", pa, pb)
	pkt := rtpPacket(b, 0, 1, 0xa, make([]byte, 160))
	buf := make([]byte, 2048)
	const window = 32
	lost := 0
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for sent := 0; sent < b.N; {
		n := min(window, b.N-sent)
		for range n {
			if _, err := pa.rtp.WriteToUDPAddrPort(pkt, forA); err != nil {
				b.Fatal(err)
			}
		}
		sent += n
		pb.rtp.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		for range n {
			if _, _, err := pb.rtp.ReadFromUDPAddrPort(buf); err != nil {
				lost++
				break
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pkts/s")
	b.ReportMetric(float64(s.Stats().Legs[A].Dropped+uint64(lost)), "lost")
}
