package testphone

import (
	"net/netip"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/internal/waitfor"
)

func TestMediaAddr(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    string
		wantErr bool
	}{
		{"session connection", "v=0\r\no=- 1 1 IN IP4 10.0.0.10\r\ns=-\r\nc=IN IP4 10.0.0.10\r\nt=0 0\r\nm=audio 30002 RTP/AVP 0\r\n", "10.0.0.10:30002", false},
		{"media connection wins", "v=0\r\no=- 1 1 IN IP4 10.0.0.10\r\ns=-\r\nc=IN IP4 10.0.0.10\r\nt=0 0\r\nm=audio 30002 RTP/AVP 0\r\nc=IN IP4 10.0.0.11\r\n", "10.0.0.11:30002", false},
		{"no audio", "v=0\r\no=- 1 1 IN IP4 10.0.0.10\r\ns=-\r\nc=IN IP4 10.0.0.10\r\nt=0 0\r\nm=video 30002 RTP/AVP 96\r\n", "", true},
		{"no connection", "v=0\r\no=- 1 1 IN IP4 10.0.0.10\r\ns=-\r\nt=0 0\r\nm=audio 30002 RTP/AVP 0\r\n", "", true},
		{"not SDP", "hello", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MediaAddr([]byte(tt.body))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tt.wantErr)
			}
			if err == nil && got.String() != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func FuzzMediaAddr(f *testing.F) {
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 10.0.0.10\r\ns=-\r\nc=IN IP4 10.0.0.10\r\nt=0 0\r\nm=audio 30002 RTP/AVP 0\r\n"))
	f.Add([]byte("v=0\r\nm=audio 0 RTP/AVP 0\r\nc=IN IP4 x\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := MediaAddr(b)
		if err == nil && (!a.IsValid() || a.Port() == 0) {
			t.Fatalf("accepted %q as %v", b, a)
		}
	})
}

// TestRTPStream: two peers on loopback hear each other's 20 ms streams,
// numbered in sequence.
func TestRTPStream(t *testing.T) {
	a, err := ListenRTP(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	// Port 0 was asked for: learn the one the kernel gave.
	a.Local = a.conn.LocalAddr().(interface{ AddrPort() netip.AddrPort }).AddrPort()
	b, err := ListenRTP(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.Local = b.conn.LocalAddr().(interface{ AddrPort() netip.AddrPort }).AddrPort()
	start := time.Now()
	a.Send(b.Local)
	b.Send(a.Local)
	waitfor.Cond(t, 30*time.Second, "10 packets each way", func() bool {
		return a.ReceivedSince(start) >= 10 && b.ReceivedSince(start) >= 10
	})
	a.StopSending()
	got := b.Received()
	for i := 1; i < len(got); i++ {
		if got[i].Seq != got[i-1].Seq+1 {
			t.Fatalf("sequence %d after %d", got[i].Seq, got[i-1].Seq)
		}
	}
}
