package b2bua

import (
	"testing"

	"github.com/emiago/sipgo/sip"
)

const srtpSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
	"m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"

// TestSRTPTransferRefused: a blind or attended transfer of an SRTP call
// is refused with 488 and the call goes on.
func TestSRTPTransferRefused(t *testing.T) {
	for _, referTo := range []string{"<sip:300@127.0.0.1>", "<sip:300@127.0.0.1?Replaces=x%3Bto-tag%3Da%3Bfrom-tag%3Db>"} {
		t.Run(referTo, func(t *testing.T) {
			e := newEnv(t)
			alice := newPhone(t, e, "100", "answer")
			bob := newPhone(t, e, "200", "answer")
			bob.setSDP(srtpSDP)
			e.loc.add("200", bob)
			if res := alice.dial("200", []byte(srtpSDP)).result(); res.StatusCode != 200 {
				t.Fatalf("call: %d", res.StatusCode)
			}
			bob.wait(sip.ACK, 1)
			if res := bob.request(sip.REFER, nil, sip.NewHeader("Refer-To", referTo)); res.StatusCode != 488 {
				t.Fatalf("REFER answered %d, want 488", res.StatusCode)
			}
			if res := bob.request(sip.BYE, nil); res.StatusCode != 200 {
				t.Fatalf("BYE after the refused transfer: %d", res.StatusCode)
			}
			alice.wait(sip.BYE, 1)
		})
	}
}
