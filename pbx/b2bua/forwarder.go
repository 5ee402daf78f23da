package b2bua

import (
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/location"
	"github.com/twinpbx/twinpbx/pbx/phoneflow"
)

// Phones registered through the twin's forwarder (docs/CLUSTER.md, "Both
// boxes take requests"). A phone on TCP that registers at the twin's own
// address keeps its connection to the twin, whose forwarder passes the
// REGISTER on over UDP without a mark: the binding's source is the
// forwarder, and calls to the phone go through it and down the phone's
// connection. When the twin's box dies, so do the forwarder and the
// connection, and nothing answers the INVITE. So a fork to such a binding
// that gets no answer at all within siteAnswerWait (a forwarder on the LAN
// passes the phone's 100 or 180 on within milliseconds), or fails, is
// followed by one straight to the phone's Contact, over a connection the
// PBX opens (package phoneflow), as a site member's silence is (site.go).
//
// The Contact's transport is its transport parameter; without one TCP,
// since the forwarder marks the requests of phones on UDP with their own
// address and only those on TCP reach the PBX from the forwarder itself.

// forwarderKey names the fallback of bd when it was registered through the
// twin's forwarder, "" otherwise.
func (b *B2BUA) forwarderKey(bd location.Binding) string {
	if bd.Holder != "" || b.o.Forwarder == nil || !b.o.Forwarder(bd.Source) {
		return ""
	}
	return "forwarder " + bd.Source + " " + bd.Contact
}

// forwarderFallbacks adds to behind, for every binding of routes that was
// registered through the twin's forwarder, the same phone to be rung at
// its Contact.
func (b *B2BUA) forwarderFallbacks(routes []location.Binding, behind map[string][]location.Binding) map[string][]location.Binding {
	for _, bd := range routes {
		k := b.forwarderKey(bd)
		if k == "" {
			continue
		}
		src, ok := contactSource(bd.Contact)
		if !ok {
			continue
		}
		if behind == nil {
			behind = map[string][]location.Binding{}
		}
		direct := bd
		direct.Source = src
		behind[k] = []location.Binding{direct}
	}
	return behind
}

// contactSource is where a phone listens by its Contact URI, as a
// binding's source ("tcp:192.0.2.7:5062"): the URI's transport, TLS for
// sips:, else TCP; the URI's port or the transport's default. ok is false
// for a URI that does not parse or names no IP address.
func contactSource(contact string) (string, bool) {
	var u sip.Uri
	if err := sip.ParseUri(contact, &u); err != nil {
		return "", false
	}
	tr, dest, ok := phoneflow.Listening(u, "tcp")
	if !ok {
		return "", false
	}
	return strings.ToLower(tr) + ":" + dest.String(), true
}
