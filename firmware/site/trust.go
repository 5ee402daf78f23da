package site

import (
	"net"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/sipmark"
)

// TrustHeader is the header a box adds to a request it forwards to
// another box of the site, so that the other box takes it without digest
// authentication (docs/SITE.md, "Forwarding"). It is a pbx/sipmark mark
// without a claim:
//
//	<member> <unix seconds> <mac>
//
// keyed by a key derived from the site key. Only a box with the site key
// can make one; a copy is refused once seen, and a header older or newer
// than trustWindow is refused, so a captured INVITE cannot be played
// again.
const TrustHeader = "X-Twinpbx-Site"

// trustWindow is how far a forwarded request's time may be from the
// receiving box's clock; the boxes' clocks must agree (NTP).
const trustWindow = sipmark.DefaultWindow

// Errors of Verify; each is logged by the receiving box with the source.
var (
	ErrNotForwarded = sipmark.ErrNotMarked
	errBadHeader    = sipmark.ErrMalformed
	errBadMAC       = sipmark.ErrBadMAC
	errStale        = sipmark.ErrStale
	errReplayed     = sipmark.ErrReplayed
	errNotMember    = sipmark.ErrNotSender
)

// trust signs and checks forwarded requests with the site's mark. With
// no marker (a key sipmark refuses; the derived key never is) it signs
// nothing and accepts nothing.
type trust struct{ m *sipmark.Marker }

func newTrust(key []byte, now func() time.Time, member func(string) []net.IP) *trust {
	m, err := sipmark.New(sipmark.Options{Header: TrustHeader, Key: key, Senders: member,
		Window: trustWindow, RefuseReplays: true, Now: now})
	if err != nil {
		return &trust{}
	}
	return &trust{m: m}
}

// sign adds the header to req as sent by member.
func (t *trust) sign(req *sip.Request, member string) {
	if t.m == nil || t.m.Sign(req, member, "") != nil {
		// A node name is a checked token (config validation); a request
		// signed with none is refused by the receiver.
		req.RemoveHeader(TrustHeader)
	}
}

// verify checks req's header and its source address, and returns the
// member that forwarded it.
func (t *trust) verify(req *sip.Request) (string, error) {
	if t.m == nil {
		if req.GetHeader(TrustHeader) == nil {
			return "", ErrNotForwarded
		}
		return "", errBadMAC
	}
	mk, err := t.m.Verify(req)
	return mk.Sender, err
}
