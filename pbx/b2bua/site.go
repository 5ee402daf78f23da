package b2bua

import (
	"fmt"
	"slices"
	"time"

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
// Holder. behind holds the bindings each forwarding stands for, Holder
// cleared, to ring directly if the box does not answer (siteFallback).
// Without a site every binding is rung directly.
func (b *B2BUA) siteRoutes(bs []location.Binding, callee string) (out []location.Binding, behind map[string][]location.Binding) {
	out = make([]location.Binding, 0, len(bs))
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
			holder := bd.Holder
			bd.Holder = ""
			behind[holder] = append(behind[holder], bd)
			continue
		}
		_, hp, err := location.ParseSource(src)
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
		if behind == nil {
			behind = map[string][]location.Binding{}
		}
		holder := bd.Holder
		bd.Holder = ""
		behind[holder] = append(behind[holder], bd)
	}
	return out, behind
}

// siteAnswerWait is how long a box that a call was forwarded to may take
// to answer at all (its 100 Trying comes at once) before the call rings
// the phones it holds directly: gossip takes seconds to show a dead box
// gone.
const siteAnswerWait = 2 * time.Second

// siteFallback rings directly the phones of a box that does not answer a
// forwarded call, or answers it 408, 500 or 503, once per box.
type siteFallback struct {
	behind map[string][]location.Binding
	done   map[string]bool
	timer  *time.Timer
}

func newSiteFallback(behind map[string][]location.Binding) *siteFallback {
	fb := &siteFallback{behind: behind, done: map[string]bool{}}
	if len(behind) > 0 {
		fb.timer = time.NewTimer(siteAnswerWait)
	}
	return fb
}

// expired fires when siteAnswerWait has passed (never without forwarding).
func (fb *siteFallback) expired() <-chan time.Time {
	if fb.timer == nil {
		return nil
	}
	return fb.timer.C
}

func (fb *siteFallback) stop() {
	if fb.timer != nil {
		fb.timer.Stop()
	}
}

// failed says whether a forwarded fork's end calls for ringing directly:
// no final response at all, or one that says the box could not take it.
func siteFailed(res *sip.Response) bool {
	return res == nil || res.StatusCode == 408 || res.StatusCode == 500 || res.StatusCode == 503
}

// direct starts forks straight to the phones behind f, a forwarded fork
// that failed or stays silent.
func (b *B2BUA) direct(s ringSpec, fb *siteFallback, f *fork, events chan<- forkEvent) []*fork {
	if f.fallback == "" || fb.done[f.fallback] {
		return nil
	}
	fb.done[f.fallback] = true
	if f.site != "" {
		s.log.Warn("the box holding the callee's registration does not take the call: ringing the phone directly", "box", f.site)
	} else {
		s.log.Warn("the twin's forwarder does not pass the call on: ringing the phone at its Contact", "via", f.fallback)
	}
	var out []*fork
	for _, bd := range fb.behind[f.fallback] {
		nf, err := b.startFork(s, bd)
		if err != nil {
			s.log.Info("cannot ring a device", "contact", bd.Contact, "err", err)
			continue
		}
		out = append(out, nf)
		go nf.run(events)
	}
	return out
}

// answered says whether a fork has had any response.
func (f *fork) answered() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.provisional || f.final
}
