package e2e

import (
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// receivedSDP returns the body of the last message in a sipp message
// trace that sipp received and whose first line starts with first.
func receivedSDP(trace, first string) string {
	all := sdpsOf(trace, first)
	if len(all) == 0 {
		return ""
	}
	return all[len(all)-1]
}

// sdpsOf returns the bodies with an audio stream of every message in a
// sipp message trace that sipp received and whose first line starts
// with first, in order; a retransmission (the same body again) counts
// once.
func sdpsOf(trace, first string) []string {
	var found []string
	for _, part := range strings.Split("\n"+trace, "\n-----------------------------------------------")[1:] {
		head, msg, ok := strings.Cut(part, ":\n")
		if !ok || !strings.Contains(head, "message received") {
			continue
		}
		msg = strings.TrimLeft(msg, "\r\n")
		if !strings.HasPrefix(msg, first) {
			continue
		}
		if _, body, ok := strings.Cut(msg, "\r\n\r\n"); ok && strings.Contains(body, "m=audio") && !slices.Contains(found, body) {
			found = append(found, body)
		}
	}
	return found
}

var (
	mAudio     = regexp.MustCompile(`m=audio (\d+) (\S+) `)
	cryptoLine = regexp.MustCompile(`a=crypto:[^\r\n]*`)
)

// TestSippSRTPPassthrough: sipp phones offer and answer SDES-SRTP
// (RTP/SAVP with a=crypto); each gets the other's crypto line unchanged,
// and packets sent to the relay ports their SDPs name arrive at the other
// side byte for byte (the test's sockets stand in for the phones' media).
func TestSippSRTPPassthrough(t *testing.T) {
	needTools(t, "sipp")
	p := startPBX(t, alice, bob)
	bobPort := freePorts(t, 2)
	register(t, p, bob, bobPort)

	aliceMedia, bobMedia := mediaSocket(t), mediaSocket(t)
	const aliceKey, bobKey = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk", "MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0"

	uas := startSipp(t, sippOpts{scenario: "uas-srtp.xml", service: bob.Number, port: bobPort,
		keys: map[string]string{"rtp_port": udpPort(bobMedia), "key": bobKey}})
	uas.waitBound()
	keys := map[string]string{"rtp_port": udpPort(aliceMedia), "key": aliceKey}
	maps.Copy(keys, caller(alice))
	uac := startSipp(t, sippOpts{scenario: "uac-srtp.xml", remote: p.addr(), service: bob.Number,
		user: alice.Number, pass: alice.Secret, pause: 5 * time.Second, keys: keys})

	var offer, answer string // what Bob and Alice received
	waitFor(t, 20*time.Second, "the call to be answered", func() bool {
		a, _ := os.ReadFile(uac.msgFile)
		b, _ := os.ReadFile(uas.msgFile)
		answer, offer = receivedSDP(string(a), "SIP/2.0 200"), receivedSDP(string(b), "INVITE ")
		return answer != "" && offer != ""
	})
	for _, c := range []struct{ who, sdp, key string }{{"Bob", offer, aliceKey}, {"Alice", answer, bobKey}} {
		want := "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + c.key
		if got := cryptoLine.FindAllString(c.sdp, -1); len(got) != 1 || got[0] != want {
			t.Errorf("%s got crypto %q, want %q", c.who, got, want)
		}
		if m := mAudio.FindStringSubmatch(c.sdp); m == nil || m[2] != "RTP/SAVP" {
			t.Errorf("%s got the media line %q, want RTP/SAVP", c.who, m)
		}
	}
	passesUnchanged(t, "Alice to Bob", aliceMedia, bobMedia, relayAddr(t, answer), 0xa1)
	passesUnchanged(t, "Bob to Alice", bobMedia, aliceMedia, relayAddr(t, offer), 0xb0)
	uac.wait(0)
	uas.wait(0)
}
