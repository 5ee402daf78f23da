package e2e

import (
	"bytes"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"
)

// mediaSocket is a UDP socket of the test standing in for a phone's
// media; closed when the test ends.
func mediaSocket(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func udpPort(c *net.UDPConn) string { return strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port) }

// relayAddr is the address an SDP the PBX sent names for audio.
func relayAddr(t *testing.T, sdp string) *net.UDPAddr {
	t.Helper()
	m := mAudio.FindStringSubmatch(sdp)
	if m == nil {
		t.Fatalf("no audio line in %q", sdp)
	}
	n, _ := strconv.Atoi(m[1])
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: n}
}

// srtpPacket is an SRTP packet: the RTP header in clear, then arbitrary
// bytes for the encrypted payload and the authentication tag.
func srtpPacket(seq int, ssrc byte) []byte {
	b := []byte{0x80, 0, 0, byte(seq), 0, 0, 0, 160, ssrc, ssrc, ssrc, ssrc}
	for i := range 170 {
		b = append(b, byte(i*31+seq))
	}
	return b
}

// passesUnchanged sends packets from one media socket to a relay port
// and checks that each arrives at the other socket byte for byte.
func passesUnchanged(t *testing.T, name string, from, to *net.UDPConn, relay *net.UDPAddr, ssrc byte) {
	t.Helper()
	buf := make([]byte, 2048)
	for seq := 1; seq <= 5; seq++ {
		pkt := srtpPacket(seq, ssrc)
		if _, err := from.WriteToUDP(pkt, relay); err != nil {
			t.Fatal(err)
		}
		_ = to.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, _, err := to.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("%s: packet %d not relayed: %v", name, seq, err)
		}
		if !bytes.Equal(buf[:n], pkt) {
			t.Fatalf("%s: packet %d changed by the relay:\n got %x\nwant %x", name, seq, buf[:n], pkt)
		}
	}
}

// TestSippSRTPBlindTransfer: Alice calls Bob, both with SDES-SRTP, and
// transfers him to Carol with a REFER. Carol is offered Bob's key, Bob
// gets a re-INVITE with Carol's (each side sees the other's a=crypto,
// never Alice's), and SRTP packets pass between Bob and Carol unchanged
// on the relay ports their SDPs name. Three sipp phones; the test's
// sockets stand in for their media.
func TestSippSRTPBlindTransfer(t *testing.T) {
	needTools(t, "sipp")
	p := startPBX(t, alice, bob, carol)
	bobPort, carolPort := freePorts(t, 2), freePorts(t, 2)
	register(t, p, bob, bobPort)
	register(t, p, carol, carolPort)
	const aliceKey, bobKey, carolKey = "QUxJQ0VBTElDRUFMSUNFQUxJQ0VBTElDRUFMSUNF", "Qk9CQk9CQk9CQk9CQk9CQk9CQk9CQk9CQk9CQk9C",
		"Q0FST0xDQVJPTENBUk9MQ0FST0xDQVJPTENBUk9M"
	aliceMedia, bobMedia, carolMedia := mediaSocket(t), mediaSocket(t), mediaSocket(t)

	// Bob hangs up on Carol a while after the transfer: time for the
	// packets below, which take milliseconds.
	bobUA := startSipp(t, sippOpts{scenario: "uas-srtp-rekey.xml", service: bob.Number, port: bobPort, pause: 10 * time.Second,
		keys: map[string]string{"rtp_port": udpPort(bobMedia), "key": bobKey}})
	carolUA := startSipp(t, sippOpts{scenario: "uas-srtp.xml", service: carol.Number, port: carolPort,
		keys: map[string]string{"rtp_port": udpPort(carolMedia), "key": carolKey}})
	bobUA.waitBound()
	carolUA.waitBound()
	keys := map[string]string{"rtp_port": udpPort(aliceMedia), "key": aliceKey, "target": carol.Number}
	maps.Copy(keys, caller(alice))
	aliceUA := startSipp(t, sippOpts{scenario: "uac-srtp-blind-refer.xml", remote: p.addr(), service: bob.Number,
		user: alice.Number, pass: alice.Secret, pause: 500 * time.Millisecond, keys: keys})

	// What Carol's INVITE and Bob's re-INVITE carry.
	var toCarol, toBob string
	waitFor(t, 20*time.Second, "Carol's INVITE and Bob's re-INVITE", func() bool {
		b, _ := os.ReadFile(bobUA.msgFile)
		c, _ := os.ReadFile(carolUA.msgFile)
		toBob, toCarol = "", receivedSDP(string(c), "INVITE ")
		if invites := sdpsOf(string(b), "INVITE "); len(invites) >= 2 {
			toBob = invites[1]
		}
		return toBob != "" && toCarol != ""
	})
	keysSwapped(t, toCarol, toBob, bobKey, carolKey, carolMedia, bobMedia)
	aliceUA.wait(0)
	bobUA.wait(0)
	carolUA.wait(0)
}

// TestSippSRTPAttendedTransfer: Alice talks to Carol and to Bob, each
// call with SDES-SRTP and keys of its own, and joins them with a REFER
// whose Replaces names her call with Carol. Bob and Carol both held
// Alice's keys; each gets one re-INVITE with the other's, and SRTP
// packets pass between them unchanged. Four sipp processes: Alice's two
// calls, Bob and Carol.
func TestSippSRTPAttendedTransfer(t *testing.T) {
	needTools(t, "sipp")
	p := startPBX(t, alice, bob, carol)
	bobPort, carolPort := freePorts(t, 2), freePorts(t, 2)
	register(t, p, bob, bobPort)
	register(t, p, carol, carolPort)
	const alice1Key, alice2Key, bobKey, carolKey = "QUxJQ0UxQUxJQ0UxQUxJQ0UxQUxJQ0UxQUxJQ0Ux", "QUxJQ0UyQUxJQ0UyQUxJQ0UyQUxJQ0UyQUxJQ0Uy",
		"Qk9CQk9CQk9CQk9CQk9CQk9CQk9CQk9CQk9CQk9C", "Q0FST0xDQVJPTENBUk9MQ0FST0xDQVJPTENBUk9M"
	alice1Media, alice2Media, bobMedia, carolMedia := mediaSocket(t), mediaSocket(t), mediaSocket(t), mediaSocket(t)

	// Bob hangs up on Carol a while after the join: time for the
	// packets below, which take milliseconds.
	bobUA := startSipp(t, sippOpts{scenario: "uas-srtp-rekey.xml", service: bob.Number, port: bobPort, pause: 10 * time.Second,
		keys: map[string]string{"rtp_port": udpPort(bobMedia), "key": bobKey}})
	carolUA := startSipp(t, sippOpts{scenario: "uas-srtp-rekey-wait.xml", service: carol.Number, port: carolPort,
		keys: map[string]string{"rtp_port": udpPort(carolMedia), "key": carolKey}})
	bobUA.waitBound()
	carolUA.waitBound()

	// Call 2 first: Alice's call with Carol, which the REFER replaces.
	keys := map[string]string{"rtp_port": udpPort(alice2Media), "key": alice2Key}
	maps.Copy(keys, caller(alice))
	call2 := startSipp(t, sippOpts{scenario: "uac-srtp-wait-bye.xml", remote: p.addr(), service: carol.Number,
		user: alice.Number, pass: alice.Secret, keys: keys})
	tag := answerTag(t, call2)
	replaces := fmt.Sprintf("%s;to-tag=%s;from-tag=%duac1", sippCallID(call2), tag, call2.cmd.Process.Pid)
	keys = map[string]string{"rtp_port": udpPort(alice1Media), "key": alice1Key, "target": carol.Number, "replaces": url.QueryEscape(replaces)}
	maps.Copy(keys, caller(alice))
	call1 := startSipp(t, sippOpts{scenario: "uac-srtp-refer.xml", remote: p.addr(), service: bob.Number,
		user: alice.Number, pass: alice.Secret, pause: 500 * time.Millisecond, keys: keys})

	// The re-INVITEs Bob and Carol get after their first INVITE.
	var toBob, toCarol string
	waitFor(t, 20*time.Second, "Bob's and Carol's re-INVITEs", func() bool {
		b, _ := os.ReadFile(bobUA.msgFile)
		c, _ := os.ReadFile(carolUA.msgFile)
		toBob, toCarol = "", ""
		if invites := sdpsOf(string(b), "INVITE "); len(invites) >= 2 {
			toBob = invites[1]
		}
		if invites := sdpsOf(string(c), "INVITE "); len(invites) >= 2 {
			toCarol = invites[1]
		}
		return toBob != "" && toCarol != ""
	})
	keysSwapped(t, toCarol, toBob, bobKey, carolKey, carolMedia, bobMedia)
	call1.wait(0)
	call2.wait(0)
	bobUA.wait(0)
	carolUA.wait(0)
}

// keysSwapped checks what Bob and Carol were offered after a transfer
// joined them: each SDP (toCarol, toBob) carries the other's SDES key
// alone, on RTP/SAVP, and SRTP packets pass between their media sockets
// through the relay unchanged, both ways.
func keysSwapped(t *testing.T, toCarol, toBob, bobKey, carolKey string, carolMedia, bobMedia *net.UDPConn) {
	t.Helper()
	for _, c := range []struct{ who, sdp, key string }{{"Carol", toCarol, bobKey}, {"Bob", toBob, carolKey}} {
		want := "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + c.key
		if got := cryptoLine.FindAllString(c.sdp, -1); len(got) != 1 || got[0] != want {
			t.Errorf("%s was offered crypto %q, want %q", c.who, got, want)
		}
		if m := mAudio.FindStringSubmatch(c.sdp); m == nil || m[2] != "RTP/SAVP" {
			t.Errorf("%s was offered the media line %q, want RTP/SAVP", c.who, m)
		}
	}
	passesUnchanged(t, "Bob to Carol", bobMedia, carolMedia, relayAddr(t, toBob), 0xb0)
	passesUnchanged(t, "Carol to Bob", carolMedia, bobMedia, relayAddr(t, toCarol), 0xc0)
}
