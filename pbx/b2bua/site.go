package b2bua

import (
	"fmt"
	"slices"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/location"
)

// Site is the site cluster as the B2BUA sees it (docs/SITE.md,
// "Forwarding"). A call to a phone held by another box of the site goes to
// that box, signed so that it takes the call without digest; that box
// rings the phone over the phone's own flow (its NAT binding or
// connection) and relays the media, and never forwards the call again.
// *site.Site implements it.
type Site interface {
	// Route returns the SIP address ("transport:ip:port") of the box that
	// holds b, when calls to b go through it; ok false: ring b directly.
	Route(b location.Binding) (source string, ok bool)
	// Sign marks an INVITE as forwarded by this box.
	Sign(req *sip.Request)
	// Verify checks a request's site mark: forwarded is false when it has
	// none; err says why a marked request is not to be trusted.
	Verify(req *sip.Request) (member string, forwarded bool, err error)
}

// fromSite checks whether an INVITE was forwarded by another box of the
// site. forwarded false: it was not (authenticate the caller as usual).
// ok false: it claims to be and was refused (403, logged), or it looped
// (483).
func (b *B2BUA) fromSite(req *sip.Request, tx sip.ServerTransaction) (member string, forwarded, ok bool) {
	if b.o.Site == nil {
		return "", false, false
	}
	member, forwarded, err := b.o.Site.Verify(req)
	if !forwarded {
		return "", false, false
	}
	if err != nil {
		b.log.Warn("forwarded INVITE refused", "source", req.Source(), "member", member, "err", err)
		respond(tx, req, 403, "Forbidden", b.log)
		return member, true, false
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		b.log.Info("forwarded INVITE refused: no hops left", "member", member)
		respond(tx, req, 483, "Too Many Hops", b.log)
		return member, true, false
	}
	return member, true, true
}

// ownBindings keeps the bindings this box holds itself: a forwarded call
// rings only those, so it never goes on to a third box or back.
func ownBindings(bs []location.Binding) []location.Binding {
	return slices.DeleteFunc(bs, func(b location.Binding) bool { return b.Holder != "" })
}

// siteRoutes replaces the bindings held by other boxes with one binding
// per box that forwards to it (Holder kept, Source that box's SIP address,
// Contact the callee at that box); the others, rung directly, lose their
// Holder. Without a site every binding is rung directly.
func (b *B2BUA) siteRoutes(bs []location.Binding, callee string) []location.Binding {
	out := make([]location.Binding, 0, len(bs))
	routed := map[string]bool{}
	for _, bd := range bs {
		if bd.Holder == "" {
			out = append(out, bd)
			continue
		}
		var src string
		ok := false
		if b.o.Site != nil {
			src, ok = b.o.Site.Route(bd)
		}
		if !ok {
			bd.Holder = ""
			out = append(out, bd)
			continue
		}
		if routed[bd.Holder] {
			continue
		}
		_, hp, err := parseSource(src)
		if err != nil {
			b.log.Warn("a site member's SIP address", "member", bd.Holder, "err", err)
			bd.Holder = ""
			out = append(out, bd)
			continue
		}
		routed[bd.Holder] = true
		out = append(out, location.Binding{
			AOR:     bd.AOR,
			Contact: fmt.Sprintf("sip:%s@%s", callee, hp),
			Source:  src,
			Holder:  bd.Holder,
		})
	}
	return out
}
