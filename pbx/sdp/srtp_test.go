package sdp

import (
	"net/netip"
	"strings"
	"testing"
)

func TestSRTP(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
	for _, tc := range []struct {
		name string
		body string
		want bool
	}{
		{"SDES", head + "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n", true},
		{"SAVPF", head + "m=audio 4000 RTP/SAVPF 0\r\n", true},
		{"plain", head + "m=audio 4000 RTP/AVP 0\r\n", false},
		{"best effort", head + "m=audio 4000 RTP/AVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n", false},
		{"secure audio rejected", head + "m=audio 0 RTP/SAVP 0\r\nm=audio 4002 RTP/AVP 0\r\n", false},
		{"broken", "v=0\r\nm=", false},
	} {
		if got := HasSRTP([]byte(tc.body)); got != tc.want {
			t.Errorf("%s: HasSRTP = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestRewriteKeepsCrypto: the relay's rewrite keeps the profile and the
// SDES attributes (RFC 4568) byte for byte: the keys travel end to end.
func TestRewriteKeepsCrypto(t *testing.T) {
	const crypto = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:32"
	body := "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n" +
		"m=audio 4000 RTP/SAVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n" + crypto + "\r\n" +
		"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj\r\n"
	out, _, err := Rewrite([]byte(body), netip.MustParseAddr("203.0.113.5"), []int{30000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"m=audio 30000 RTP/SAVP 0 101\r\n", crypto + "\r\n", "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj\r\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rewritten SDP lost %q:\n%s", want, out)
		}
	}
}

// FuzzRewriteKeepsSRTP: whatever Rewrite accepts keeps the first audio
// stream's profile and every a=crypto line.
func FuzzRewriteKeepsSRTP(f *testing.F) {
	f.Add(fixture(f, "srtp.sdp"))
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\na=crypto:1 x inline:y\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		out, _, err := Rewrite(body, netip.MustParseAddr("203.0.113.5"), []int{30000, 30002, 30004}, nil)
		if err != nil {
			return
		}
		if HasSRTP(out) != HasSRTP(body) {
			t.Fatalf("profile changed:\n%q\n%q", body, out)
		}
		if a, b := strings.Count(string(body), "a=crypto:"), strings.Count(string(out), "a=crypto:"); b < a && HasSRTP(body) {
			t.Fatalf("%d crypto lines became %d", a, b)
		}
	})
}

func TestSRTPFixture(t *testing.T) {
	body := fixture(t, "srtp.sdp")
	out, _, err := Rewrite(body, netip.MustParseAddr("203.0.113.5"), []int{30000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !HasSRTP(out) || strings.Count(string(out), "a=crypto:") != 2 {
		t.Fatalf("rewritten:\n%s", out)
	}
}
