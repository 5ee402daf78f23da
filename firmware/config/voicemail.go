package config

import (
	"fmt"
	"strings"
	"time"
)

// Voicemail turns on the PBX's mailboxes (docs/CALLS.md, "Voicemail"). A
// call to an extension with a mailbox that is not answered within After,
// finds the extension busy or not registered, is answered by the PBX,
// which records a message. The owner dials Number to listen. Absent: no
// voicemail at all.
type Voicemail struct {
	// Number is what an owner dials to listen to the messages. Default *98.
	Number string `yaml:"number,omitempty"`
	// All gives every extension a mailbox unless its voicemail key says
	// false. Absent: true. False: only extensions with voicemail: true.
	All *bool `yaml:"all,omitempty"`
	// After is how long a call rings before the mailbox answers. Default
	// 20s; shorter than sip.ring_timeout.
	After Duration `yaml:"after,omitempty"`
	// MaxLength ends a recording. Default 3m.
	MaxLength Duration `yaml:"max_length,omitempty"`
	// MaxMessages bounds a mailbox. Default 30.
	MaxMessages int `yaml:"max_messages,omitempty"`
	// UnsolicitedMWI sends a message-summary NOTIFY to the registered
	// phones of a mailbox that did not subscribe, when its count changes
	// and when they register while messages wait. Absent: true.
	UnsolicitedMWI *bool `yaml:"unsolicited_mwi,omitempty"`
}

// Defaults and bounds of the voicemail section.
const (
	DefaultVoicemailNumber    = "*98"
	DefaultVoicemailAfter     = 20 * time.Second
	DefaultVoicemailMaxLength = 3 * time.Minute
	DefaultVoicemailMessages  = 30
	MaxVoicemailMessages      = 200
)

// Mailbox reports whether extension e has a mailbox under v (nil: no
// voicemail).
func (v *Voicemail) Mailbox(e Extension) bool {
	if v == nil {
		return false
	}
	if e.Voicemail != nil {
		return *e.Voicemail
	}
	return v.All == nil || *v.All
}

// DialNumber is the number in effect for listening.
func (v *Voicemail) DialNumber() string {
	if v == nil || v.Number == "" {
		return DefaultVoicemailNumber
	}
	return v.Number
}

// AfterTime is the ring time in effect before the mailbox answers.
func (v *Voicemail) AfterTime() time.Duration {
	if v == nil || v.After == 0 {
		return DefaultVoicemailAfter
	}
	return v.After.D()
}

// MaxLengthTime is the longest recording.
func (v *Voicemail) MaxLengthTime() time.Duration {
	if v == nil || v.MaxLength == 0 {
		return DefaultVoicemailMaxLength
	}
	return v.MaxLength.D()
}

// Unsolicited reports whether phones that did not subscribe are told of
// waiting messages.
func (v *Voicemail) Unsolicited() bool {
	return v != nil && (v.UnsolicitedMWI == nil || *v.UnsolicitedMWI)
}

// Messages is the mailbox size in effect.
func (v *Voicemail) Messages() int {
	if v == nil || v.MaxMessages == 0 {
		return DefaultVoicemailMessages
	}
	return v.MaxMessages
}

func (c *Config) validateVoicemail(ps *problems) {
	v := c.Voicemail
	if v == nil {
		for i, e := range c.Extensions {
			if e.Voicemail != nil && *e.Voicemail {
				ps.add(fmt.Sprintf("extensions[%d].voicemail", i), "true needs the voicemail section")
			}
		}
		return
	}
	if n := v.Number; n != "" {
		ok := len(n) <= 8 && strings.Trim(n, "0123456789*#") == ""
		if !ok {
			ps.add("voicemail.number", "%q: up to 8 of 0-9, * and #", n)
		}
		for _, e := range c.Extensions {
			if e.Number == n {
				ps.add("voicemail.number", "%q is an extension", n)
			}
		}
	}
	for i, e := range c.Extensions {
		if p := e.VoicemailPIN; p != "" {
			f := fmt.Sprintf("extensions[%d].voicemail_pin", i)
			switch {
			case len(p) < 4 || len(p) > 8 || strings.Trim(p, "0123456789") != "":
				ps.add(f, "4 to 8 digits")
			case p == e.Number:
				ps.add(f, "must not be the extension number")
			case !v.Mailbox(e):
				ps.add(f, "the extension has no mailbox")
			}
		}
	}
	ring := c.SIP.RingTimeout.D()
	if ring == 0 {
		ring = 60 * time.Second
	}
	if a := v.After.D(); a != 0 && (a < time.Second || a >= ring) {
		ps.add("voicemail.after", "%v is outside 1s to below sip.ring_timeout (%v)", v.After, Duration(ring))
	}
	if m := v.MaxLength.D(); m != 0 && (m < 5*time.Second || m > 10*time.Minute) {
		ps.add("voicemail.max_length", "%v is outside 5s to 10m", v.MaxLength)
	}
	if n := v.MaxMessages; n < 0 || n > MaxVoicemailMessages {
		ps.add("voicemail.max_messages", "%d is outside 1 to %d (0: the default)", n, MaxVoicemailMessages)
	}
}
