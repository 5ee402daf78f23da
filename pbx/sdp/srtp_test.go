package sdp

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestSRTP(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
	for _, tc := range []struct {
		name string
		body string
		want Security
	}{
		{"SDES", head + "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n", SDES},
		{"SAVPF", head + "m=audio 4000 RTP/SAVPF 0\r\n", SDES},
		{"plain", head + "m=audio 4000 RTP/AVP 0\r\n", Plain},
		{"best effort", head + "m=audio 4000 RTP/AVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n", Plain},
		{"secure audio rejected", head + "m=audio 0 RTP/SAVP 0\r\nm=audio 4002 RTP/AVP 0\r\n", Plain},
		{"broken", "v=0\r\nm=", Plain},
	} {
		if got := SecurityOf([]byte(tc.body)); got != tc.want {
			t.Errorf("%s: SecurityOf = %v, want %v", tc.name, got, tc.want)
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
		if SecurityOf(out) != SecurityOf(body) {
			t.Fatalf("profile changed:\n%q\n%q", body, out)
		}
		if a, b := strings.Count(string(body), "a=crypto:"), strings.Count(string(out), "a=crypto:"); b < a && SecurityOf(body) != Plain {
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
	if SecurityOf(out) != SDES || strings.Count(string(out), "a=crypto:") != 2 {
		t.Fatalf("rewritten:\n%s", out)
	}
}

func TestSecurityAndKeys(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
	const fp = "sha-256 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB:4E:41:9B:51:4A:D0:26:5A:90:32:6B:43"
	for _, tc := range []struct {
		name string
		body string
		want Security
		keys []string
	}{
		{"plain", head + "m=audio 4000 RTP/AVP 0\r\n", Plain, nil},
		{"best effort SDES is plain", head + "m=audio 4000 RTP/AVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abc\r\n", Plain, nil},
		{"SDES, two offered", head + "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abc\r\na=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:def\r\n",
			SDES, []string{"1 AES_CM_128_HMAC_SHA1_80 inline:abc", "2 AES_CM_128_HMAC_SHA1_32 inline:def"}},
		{"SAVPF", head + "m=audio 4000 RTP/SAVPF 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abc\r\n", SDES, []string{"1 AES_CM_128_HMAC_SHA1_80 inline:abc"}},
		{"DTLS, media-level fingerprint", head + "m=audio 4000 UDP/TLS/RTP/SAVP 0\r\na=fingerprint:" + fp + "\r\na=setup:active\r\n", DTLS, []string{fp}},
		{"DTLS SAVPF, session-level fingerprint", head + "a=fingerprint:" + fp + "\r\nm=audio 4000 UDP/TLS/RTP/SAVPF 0\r\na=setup:actpass\r\n", DTLS, []string{fp}},
		{"the keys of the first active audio stream", head + "m=audio 0 RTP/SAVP 0\r\na=crypto:1 X inline:old\r\nm=audio 4002 RTP/SAVP 0\r\na=crypto:1 X inline:new\r\n", SDES, []string{"1 X inline:new"}},
		{"no audio", head + "m=video 4000 RTP/SAVP 96\r\na=crypto:1 X inline:v\r\n", Plain, nil},
		{"broken", "v=0\r\nm=", Plain, nil},
		{"fixture", string(fixture(t, "dtls-srtp.sdp")), DTLS, []string{fp}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := SecurityOf([]byte(tc.body)); got != tc.want {
				t.Errorf("SecurityOf = %v, want %v", got, tc.want)
			}
			if got := Keys([]byte(tc.body)); !slices.Equal(got, tc.keys) {
				t.Errorf("Keys = %q, want %q", got, tc.keys)
			}
		})
	}
}

// TestRewriteKeepsDTLS: DTLS-SRTP passes through the relay: the rewrite
// changes only the addresses and ports, keeps the profile, fingerprint,
// setup role and connection attributes, and drops ICE (the relay is the
// one address the phones see).
func TestRewriteKeepsDTLS(t *testing.T) {
	body := fixture(t, "dtls-srtp.sdp")
	out, remote, err := Rewrite(body, netip.MustParseAddr("203.0.113.5"), []int{30000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"c=IN IP4 203.0.113.5\r\n",
		"m=audio 30000 UDP/TLS/RTP/SAVP 0 101\r\n",
		"a=fingerprint:sha-256 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB:4E:41:9B:51:4A:D0:26:5A:90:32:6B:43\r\n",
		"a=setup:actpass\r\n", "a=connection:new\r\n", "a=rtcp-mux\r\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rewritten SDP lacks %q:\n%s", want, out)
		}
	}
	for _, gone := range []string{"a=candidate", "a=ice-ufrag", "a=ice-pwd", "192.0.2.20 49200"} {
		if strings.Contains(string(out), gone) {
			t.Errorf("rewritten SDP still has %q:\n%s", gone, out)
		}
	}
	if remote[0].Security() != DTLS || remote[0].Port != 49200 || !remote[0].RTCPMux {
		t.Errorf("remote stream %+v", remote[0])
	}
	if !slices.Equal(Keys(out), Keys(body)) {
		t.Errorf("keys changed: %q became %q", Keys(body), Keys(out))
	}
}

// FuzzKeys: Keys and SecurityOf never panic, and whatever Rewrite
// accepts keeps its protection and its keys.
func FuzzKeys(f *testing.F) {
	f.Add(fixture(f, "dtls-srtp.sdp"))
	f.Add(fixture(f, "srtp.sdp"))
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\na=fingerprint:x y\r\nm=audio 1 UDP/TLS/RTP/SAVPF 0\r\na=setup:active\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		sec, keys := SecurityOf(body), Keys(body)
		if sec == Plain && keys != nil {
			t.Fatalf("plain RTP with keys %q", keys)
		}
		out, _, err := Rewrite(body, netip.MustParseAddr("203.0.113.5"), []int{30000, 30002, 30004}, nil)
		if err != nil {
			return
		}
		// A rewrite may reject the first audio stream (no port for it);
		// then the streams compared are not the same.
		st, perr := Parse(body)
		ost, oerr := Parse(out)
		if perr != nil || oerr != nil || FirstAudio(st) != FirstAudio(ost) {
			return
		}
		// A CR inside a line is not SDP (RFC 4566 §9); the parser
		// reads it as a line end, so such a value cannot survive.
		if strings.Contains(strings.ReplaceAll(string(body), "\r\n", ""), "\r") {
			return
		}
		if SecurityOf(out) != sec {
			t.Fatalf("protection %v became %v:\n%q\n%q", sec, SecurityOf(out), body, out)
		}
		if !slices.Equal(Keys(out), keys) {
			t.Fatalf("keys %q became %q:\n%q\n%q", keys, Keys(out), body, out)
		}
	})
}
