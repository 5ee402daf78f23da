package b2bua

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/twinpbx/twinpbx/pbx/sdp"
)

// joinable checks that two parties can be put in one call through the
// relay, which forwards media untouched: both must protect it the same
// way (plain RTP, SDES-SRTP or DTLS-SRTP, by their last SDPs). The error
// says which kinds met; the request that asked for the join gets 488.
func joinable(x, y []byte) error {
	if sx, sy := sdp.SecurityOf(x), sdp.SecurityOf(y); sx != sy {
		return fmt.Errorf("%v cannot be joined with %v", sx, sy)
	}
	return nil
}

// maxRekeys bounds the re-INVITEs rekey sends: two in the usual case
// (each party given the other's keys once), one more for a party that
// changed its keys when it answered.
const maxRekeys = 4

// rekey gives each party of an SRTP call, freshly joined by a transfer,
// the keys of its new peer. The keys travel in the SDP (SDES, RFC 4568:
// each party's a=crypto is the key it sends with; for DTLS-SRTP the
// fingerprint and setup role the handshake needs), so a party that was
// keyed with the transferor's SDP gets a re-INVITE offering the other
// party's last SDP through the relay. Its answer may carry new keys of
// its own; then the other party is offered those, and so on, at most
// maxRekeys times. given[l] are the keys party l was last given (see
// sdp.Keys). Plain calls are left alone. When a party refuses or does
// not answer its re-INVITE, the call goes on half re-keyed and a
// warning says so.
func (b *B2BUA) rekey(c *call, given [2][]string, log *slog.Logger) {
	for range maxRekeys {
		c.mu.Lock()
		to, keys := Leg(-1), []string(nil)
		for _, l := range []Leg{LegA, LegB} {
			peer := c.legs[other(l)]
			if peer == nil || c.legs[l] == nil {
				c.mu.Unlock()
				return
			}
			if k := sdp.Keys(peer.SDP); !slices.Equal(k, given[l]) {
				to, keys = l, k
				break
			}
		}
		c.mu.Unlock()
		if to < 0 {
			return
		}
		code := b.reinvite(c, to, log)
		if code == 491 {
			// The offers crossed (RFC 3261 §14.1): the phone's own
			// re-INVITE got 491 from us too. Try again after a pause
			// longer than the phone's, if it owns the Call-ID.
			select {
			case <-time.After(b.glareWait()):
			case <-c.done:
				return
			}
			code = b.reinvite(c, to, log)
		}
		if code != 200 {
			c.mu.Lock()
			ended := c.ended
			c.mu.Unlock()
			if ended {
				return // hung up meanwhile: nothing left to key
			}
			log.Warn("transferred SRTP call: a party did not take its new peer's keys; its media may not decrypt",
				"leg", to, "code", code)
			return
		}
		given[to] = keys
	}
	log.Warn("transferred SRTP call: the parties kept changing keys; media may not decrypt")
}

// glareWait is the pause before an offer that crossed another is made
// again: 2.1 to 4 s, as RFC 3261 §14.1 gives the owner of the Call-ID
// (the longest; Options.GlareWait in tests).
func (b *B2BUA) glareWait() time.Duration {
	if b.o.GlareWait > 0 {
		return b.o.GlareWait
	}
	return 2100*time.Millisecond + rand.N(1900*time.Millisecond)
}
