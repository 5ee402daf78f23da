package config

import (
	"strings"
	"testing"
	"time"
)

func TestVoicemailValidate(t *testing.T) {
	const base = "node: {name: a}\nsip: {listen: [\"udp:10.77.0.5:5060\"], rtp_ports: \"20000-20999\", ring_timeout: 30s}\n" +
		"extensions:\n- {number: \"201\", secret: Xk3-vq9-Lm2}\n- {number: \"202\", secret: Xk3-vq9-Lm3, voicemail: false}\n"
	tests := []struct {
		name    string
		section string // appended to base
		want    string // substring of the error; empty: valid
		boxes   [2]bool
		number  string
		after   time.Duration
		pin     string // of extension 201
		quiet   bool   // unsolicited MWI off
	}{
		{name: "absent: none", number: "*98", after: DefaultVoicemailAfter},
		{name: "empty: defaults", section: "voicemail: {}\n", boxes: [2]bool{true, false}, number: "*98", after: DefaultVoicemailAfter},
		{name: "opt in only", section: "voicemail: {all: false, number: \"*97\", after: 10s}\n", number: "*97", after: 10 * time.Second},
		{name: "no unsolicited MWI", section: "voicemail: {unsolicited_mwi: false}\n", boxes: [2]bool{true, false}, number: "*98", after: DefaultVoicemailAfter, quiet: true},
		{name: "after not below ring", section: "voicemail: {after: 30s}\n", want: "voicemail.after"},
		{name: "after too short", section: "voicemail: {after: 100ms}\n", want: "voicemail.after"},
		{name: "number letters", section: "voicemail: {number: \"vm\"}\n", want: "voicemail.number"},
		{name: "number is extension", section: "voicemail: {number: \"201\"}\n", want: "is an extension"},
		{name: "length", section: "voicemail: {max_length: 1h}\n", want: "voicemail.max_length"},
		{name: "messages", section: "voicemail: {max_messages: 1000}\n", want: "voicemail.max_messages"},
		{name: "negative messages", section: "voicemail: {max_messages: -1}\n", want: "voicemail.max_messages"},
		{name: "pin", section: "voicemail: {}\n", pin: "4711", boxes: [2]bool{true, false}, number: "*98", after: DefaultVoicemailAfter},
		{name: "pin too short", section: "voicemail: {}\n", pin: "471", want: "extensions[0].voicemail_pin: 4 to 8 digits"},
		{name: "pin letters", section: "voicemail: {}\n", pin: "47a1", want: "voicemail_pin"},
		{name: "pin is the number", section: "voicemail: {}\n", pin: "201", want: "voicemail_pin"},
		{name: "pin without mailbox", section: "voicemail: {all: false}\n", pin: "4711", want: "no mailbox"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("test", []byte(base+tc.section))
			if err == nil {
				c.Extensions[0].VoicemailPIN = tc.pin
			}
			if c = checkParsed(t, c, err, tc.want); c == nil {
				return
			}
			for i, want := range tc.boxes {
				if got := c.Voicemail.Mailbox(c.Extensions[i]); got != want {
					t.Errorf("extension %s has a mailbox: %v, want %v", c.Extensions[i].Number, got, want)
				}
			}
			if got := c.Voicemail.DialNumber(); got != tc.number {
				t.Errorf("number %q, want %q", got, tc.number)
			}
			if got := c.Voicemail.AfterTime(); got != tc.after {
				t.Errorf("after %v, want %v", got, tc.after)
			}
			if got, want := c.Voicemail.Unsolicited(), c.Voicemail != nil && !tc.quiet; got != want {
				t.Errorf("unsolicited MWI %v, want %v", got, want)
			}
		})
	}
}

func TestVoicemailExtensionWithoutSection(t *testing.T) {
	c, err := Parse("test", []byte("node: {name: a}\nsip: {listen: [\"udp:10.77.0.5:5060\"], rtp_ports: \"20000-20999\"}\nextensions:\n- {number: \"201\", secret: Xk3-vq9-Lm2, voicemail: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "extensions[0].voicemail") {
		t.Fatalf("error %v, want one naming extensions[0].voicemail", err)
	}
}
