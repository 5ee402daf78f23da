package b2bua

import (
	"strings"
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

// TestSRTPAttendedTransferOfSRTPCallRefused: an attended transfer whose
// REFER comes on a plain RTP call but names an SRTP call with Replaces
// fails with NOTIFY 488, and both calls go on.
func TestSRTPAttendedTransferOfSRTPCallRefused(t *testing.T) {
	e := newEnv(t)
	alice := newPhone(t, e, "100", "answer")
	bob := newPhone(t, e, "200", "answer")
	carol := newPhone(t, e, "300", "answer")
	alice.setSDP(audioSDP("100", 4000, "sendrecv"))
	bob.setSDP(audioSDP("200", 4002, "sendrecv"))
	carol.setSDP(srtpSDP)
	e.loc.add("200", bob)
	e.loc.add("300", carol)
	if res := alice.dial("200", nil).result(); res.StatusCode != 200 {
		t.Fatalf("plain call: %d", res.StatusCode)
	}
	bob.wait(sip.ACK, 1)
	call1 := alice.call()
	if res := alice.dial("300", []byte(srtpSDP)).result(); res.StatusCode != 200 {
		t.Fatalf("SRTP call: %d", res.StatusCode)
	}
	carol.wait(sip.ACK, 1)
	call2 := alice.call()
	if res := alice.requestOn(call1, sip.REFER, nil, referReplacing("300", call2, false)); res.StatusCode != 202 {
		t.Fatalf("REFER answered %d", res.StatusCode)
	}
	n := alice.wait(sip.NOTIFY, 2)
	if !hasLine(n.Body(), "SIP/2.0 488") || !strings.HasPrefix(n.GetHeader("Subscription-State").Value(), "terminated") {
		t.Fatalf("final NOTIFY %q", n.String())
	}
	if got := len(e.b.Calls()); got != 2 {
		t.Errorf("%d calls after the refused transfer, want 2", got)
	}
	for _, c := range []struct {
		d    *Dialog
		peer *phone
	}{{call1, bob}, {call2, carol}} {
		if res := alice.requestOn(c.d, sip.BYE, nil); res.StatusCode != 200 {
			t.Fatalf("BYE after the refused transfer: %d", res.StatusCode)
		}
		c.peer.wait(sip.BYE, 1)
	}
}
