package e2e

import (
	"bytes"
	"maps"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// receivedSDP returns the body of the last message in a sipp message
// trace that sipp received and whose first line starts with first.
func receivedSDP(trace, first string) string {
	var found string
	for _, part := range strings.Split("\n"+trace, "\n-----------------------------------------------")[1:] {
		head, msg, ok := strings.Cut(part, ":\n")
		if !ok || !strings.Contains(head, "message received") {
			continue
		}
		msg = strings.TrimLeft(msg, "\r\n")
		if !strings.HasPrefix(msg, first) {
			continue
		}
		if _, body, ok := strings.Cut(msg, "\r\n\r\n"); ok && strings.Contains(body, "m=audio") {
			found = body
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

	media := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	aliceMedia, bobMedia := media(), media()
	port := func(c *net.UDPConn) string { return strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port) }
	const aliceKey, bobKey = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk", "MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0"

	uas := startSipp(t, sippOpts{scenario: "uas-srtp.xml", service: bob.Number, port: bobPort,
		keys: map[string]string{"rtp_port": port(bobMedia), "key": bobKey}})
	uas.waitBound()
	keys := map[string]string{"rtp_port": port(aliceMedia), "key": aliceKey}
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
	relayPort := func(sdp string) *net.UDPAddr {
		m := mAudio.FindStringSubmatch(sdp)
		if m == nil {
			t.Fatalf("no audio line in %q", sdp)
		}
		n, _ := strconv.Atoi(m[1])
		return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: n}
	}
	// An SRTP packet: the RTP header in clear, then the encrypted
	// payload and the authentication tag, here arbitrary bytes.
	packet := func(seq int, ssrc byte) []byte {
		b := []byte{0x80, 0, 0, byte(seq), 0, 0, 0, 160, ssrc, ssrc, ssrc, ssrc}
		for i := range 170 {
			b = append(b, byte(i*31+seq))
		}
		return b
	}
	buf := make([]byte, 2048)
	for _, d := range []struct {
		name     string
		from, to *net.UDPConn
		relay    *net.UDPAddr
		ssrc     byte
	}{
		{"Alice to Bob", aliceMedia, bobMedia, relayPort(answer), 0xa1},
		{"Bob to Alice", bobMedia, aliceMedia, relayPort(offer), 0xb0},
	} {
		for seq := 1; seq <= 5; seq++ {
			pkt := packet(seq, d.ssrc)
			if _, err := d.from.WriteToUDP(pkt, d.relay); err != nil {
				t.Fatal(err)
			}
			_ = d.to.SetReadDeadline(time.Now().Add(20 * time.Second))
			n, _, err := d.to.ReadFromUDP(buf)
			if err != nil {
				t.Fatalf("%s: packet %d not relayed: %v", d.name, seq, err)
			}
			if !bytes.Equal(buf[:n], pkt) {
				t.Fatalf("%s: packet %d changed by the relay:\n got %x\nwant %x", d.name, seq, buf[:n], pkt)
			}
		}
	}
	uac.wait(0)
	uas.wait(0)
}
