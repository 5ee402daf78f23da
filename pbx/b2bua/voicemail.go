package b2bua

import (
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/voicemail"
)

// Voicemail takes the calls an extension does not take itself
// (pbx/voicemail). *voicemail.Service implements it.
type Voicemail interface {
	// After reports how long a call to ext rings before its mailbox
	// answers; false: ext has no mailbox that can take a message.
	After(ext string) (time.Duration, bool)
	// Deposit answers the caller's INVITE for the mailbox and returns.
	Deposit(req *sip.Request, tx sip.ServerTransaction, d voicemail.Diversion)
}

// Reasons a call is diverted to a mailbox.
const (
	divertNoAnswer    = "no-answer"
	divertBusy        = "busy"
	divertUnavailable = "unavailable"
)

// divertible reports whether a call to callee may go to its mailbox, and
// the ring time before it does. Calls forwarded by another box of a site
// go to the mailbox on the box that took them.
func (b *B2BUA) divertible(callee, fromSite string) (time.Duration, bool) {
	if b.o.Voicemail == nil || fromSite != "" {
		return 0, false
	}
	return b.o.Voicemail.After(callee)
}

// divert hands the call to callee's mailbox; false when it has none (the
// caller is then failed as before). A call from a trunk has taken no
// channel yet: the mailbox call takes one, and without a free one the
// caller is failed as without a mailbox.
func (b *B2BUA) divert(req *sip.Request, tx sip.ServerTransaction, c *call, reason, fromSite string) bool {
	if _, ok := b.divertible(c.st.Callee, fromSite); !ok {
		return false
	}
	if t := c.inTrunk(); t != "" && !b.seize(t) {
		b.log.Info("every channel of the trunk is in use: the call is not offered the mailbox", "call", c.st.ID, "trunk", t)
		return false
	}
	b.deposit(req, tx, c, reason)
	return true
}

// deposit gives the call to the mailbox, with the To tag the caller has
// seen. A call from a trunk holds one of its channels (taken by the
// caller of deposit) until the mailbox call ends.
func (b *B2BUA) deposit(req *sip.Request, tx sip.ServerTransaction, c *call, reason string) {
	c.mu.Lock()
	d := voicemail.Diversion{
		Mailbox: c.st.Callee, Caller: c.st.Caller, CallerName: c.st.CallerName,
		Reason: reason, Start: c.st.Start, Tag: c.legs[LegA].Dialog.LocalTag,
	}
	c.mu.Unlock()
	if trunk := c.inTrunk(); trunk != "" {
		d.Release = sync.OnceFunc(func() { b.releaseChannel(trunk) })
	}
	b.o.Voicemail.Deposit(req, tx, d)
}

// inTrunk is the trunk the call came in over ("": from an extension).
func (c *call) inTrunk() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.legs[LegA].Trunk
}

// divertCode reports whether a final response of the callee's devices
// sends the call to the mailbox: busy, unavailable, no answer, declined.
func divertCode(code int) (string, bool) {
	switch code {
	case 486, 600:
		return divertBusy, true
	case 480, 408:
		return divertNoAnswer, true
	case 603:
		return divertNoAnswer, true
	}
	return "", false
}

// divertAfter diverts a call that rang the callee's devices: the ringing
// attempt ends first (its CDR says it was not answered; the mailbox
// writes one of its own), then the mailbox answers.
func (b *B2BUA) divertAfter(req *sip.Request, tx sip.ServerTransaction, c *call, reason, fromSite string) bool {
	if _, ok := b.divertible(c.st.Callee, fromSite); !ok {
		return false
	}
	disp, code := cdr.NoAnswer, 480
	if reason == divertBusy {
		disp, code = cdr.Busy, 486
	}
	// The channel the ringing call holds passes to the mailbox call:
	// counted again before the ringing attempt gives its own back, so
	// that no other call can take it in between.
	if t := c.inTrunk(); t != "" {
		b.holdChannel(t)
	}
	c.end(disp, code, "")
	// Asked once: the ringing attempt has ended, the mailbox must answer.
	b.deposit(req, tx, c, reason)
	return true
}
