package b2bua

import "github.com/emiago/sipgo/sip"

// reconnect points req, a request to a phone, at the phone's Contact when
// it would go over TCP or TLS and its connection is closed (package
// phoneflow). It reports whether req was changed, and an error when a TLS
// connection to the phone could not be opened.
func (b *B2BUA) reconnect(req *sip.Request) (bool, error) {
	return b.o.Flow.Redirect(req)
}

// inDialog reports whether req is sent inside a dialog (its To has a tag).
func inDialog(req *sip.Request) bool {
	to := req.To()
	if to == nil {
		return false
	}
	_, ok := to.Params.Get("tag")
	return ok
}

// trunkLeg reports whether req belongs to a leg that runs over a trunk.
func (b *B2BUA) trunkLeg(req *sip.Request) bool {
	cid := req.CallID()
	if cid == nil {
		return false
	}
	_, ok := b.trunkLegs.Load(cid.Value())
	return ok
}
