package e2e

import (
	"net"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/twinpbx/twinpbx/firmware/config"
)

// TestVoicemailGreeting: the owner records a greeting (0, a pcap of 3 s of tone,
// #, 2) with sipp; a caller of the mailbox then gets RTP of the
// greeting's length and the beep's, not the tone greeting's 1.9 s.
func TestVoicemailGreeting(t *testing.T) {
	needTools(t, "sipp")
	p := startPBXWith(t, func(c *config.Config) {
		c.Voicemail = &config.Voicemail{}
	}, alice, bob)

	runSipp(t, sippOpts{
		scenario: "uac-voicemail-greeting.xml", remote: p.addr(), service: config.DefaultVoicemailNumber,
		user: alice.Number, pass: alice.Secret, keys: caller(alice),
	}, 0)
	m := regexp.MustCompile(`msg="greeting recorded".* duration=([0-9.]+m?s)`).FindStringSubmatch(p.log.String())
	if m == nil {
		t.Fatal("the PBX did not log a recorded greeting")
	}
	greeting, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatal(err)
	}
	if greeting < 2500*time.Millisecond || greeting > 3100*time.Millisecond {
		t.Errorf("greeting of %v, want up to the 3 s of tone", greeting)
	}

	// Bob calls Alice, who is not registered: the mailbox plays her
	// greeting, then the beep (0.5 s), to the port Bob's SDP names.
	ear, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ear.Close() })
	heard := make(chan int, 1)
	go func() {
		got := 0
		buf := make([]byte, 1500)
		first := 20 * time.Second // the answer comes first
		for {
			_ = ear.SetReadDeadline(time.Now().Add(first))
			n, err := ear.Read(buf)
			if err != nil {
				heard <- got
				return
			}
			first = 1500 * time.Millisecond // then silence ends it
			var pkt rtp.Packet
			if pkt.Unmarshal(buf[:n]) == nil {
				got += len(pkt.Payload)
			}
		}
	}()
	runSipp(t, sippOpts{
		scenario: "uac-hear.xml", remote: p.addr(), service: alice.Number,
		user: bob.Number, pass: bob.Secret, pause: 6 * time.Second,
		keys: map[string]string{"caller": bob.Number, "caller_name": bob.Name, "rtp_port": strconv.Itoa(ear.LocalAddr().(*net.UDPAddr).Port)},
	}, 0)
	got := time.Duration(<-heard) * time.Second / 8000
	want := greeting + 500*time.Millisecond
	if got < want-40*time.Millisecond || got > want+40*time.Millisecond {
		t.Errorf("the caller heard %v of audio, want %v (the greeting and the beep)", got, want)
	}
}
