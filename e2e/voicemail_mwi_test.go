package e2e

import (
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
)

// TestVoicemailUnsolicitedMWI: a phone that never subscribes is told by
// an unsolicited NOTIFY that a message waits when it registers, and that
// none does once the owner deleted it.
func TestVoicemailUnsolicitedMWI(t *testing.T) {
	needTools(t, "sipp")
	p := startPBXWith(t, func(c *config.Config) {
		c.Voicemail = &config.Voicemail{}
	}, alice, bob)

	// A message for Alice, who is not registered.
	runSipp(t, sippOpts{
		scenario: "uac-voicemail.xml", remote: p.addr(), service: alice.Number,
		user: bob.Number, pass: bob.Secret, pause: 2500 * time.Millisecond, keys: caller(bob),
	}, 0)
	waitFor(t, 20*time.Second, "the message to be saved", func() bool {
		return regexp.MustCompile(`msg="message saved"`).MatchString(p.log.String())
	})

	// Alice's phone registers, then listens on the same port for the
	// NOTIFYs (the first one is retransmitted if it came before).
	port := freePorts(t, 2)
	runSipp(t, sippOpts{
		scenario: "register.xml", remote: p.addr(), service: alice.Number,
		user: alice.Number, pass: alice.Secret, port: port, keys: map[string]string{"expires": "300"},
	}, 0)
	lamp := startSipp(t, sippOpts{scenario: "uas-mwi.xml", port: port, calls: 2})
	waitFor(t, 30*time.Second, "the NOTIFY of the registration", func() bool {
		b, _ := os.ReadFile(lamp.msgFile)
		return regexp.MustCompile(`Voice-Message: 1/0`).Match(b)
	})

	// The owner deletes the message from another phone of hers: the
	// registered one hears that none waits.
	runSipp(t, sippOpts{
		scenario: "uac-voicemail-listen.xml", remote: p.addr(), service: config.DefaultVoicemailNumber,
		user: alice.Number, pass: alice.Secret, pause: 2500 * time.Millisecond, keys: caller(alice),
	}, 0)
	lamp.wait(0)
	b, err := os.ReadFile(lamp.msgFile)
	if err != nil {
		t.Fatal(err)
	}
	got := regexp.MustCompile(`Voice-Message: \d+/\d+`).FindAllString(string(b), -1)
	if len(got) < 2 || got[0] != "Voice-Message: 1/0" || got[len(got)-1] != "Voice-Message: 0/0" {
		t.Errorf("the phone was told %v, want 1/0, then 0/0", got)
	}
}
