package pbx

import (
	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// guardedRouter registers handlers behind checkRequest, so that no
// handler ever sees a request without the headers RFC 3261 §8.1.1 makes
// mandatory, and behind the serving gate, so that a box that may not serve
// (a twin's standby) answers nothing at all.
type guardedRouter struct {
	srv     *sipgo.Server
	serving func() bool
	workers *workers
	fwd     *forwarded
}

func (g guardedRouter) OnRequest(method sip.RequestMethod, h sipgo.RequestHandler) {
	inner := guard(h, g.serving, g.fwd)
	if g.workers == nil {
		g.srv.OnRequest(method, inner)
		return
	}
	g.srv.OnRequest(method, func(req *sip.Request, tx sip.ServerTransaction) {
		g.workers.do(func() { inner(req, tx) })
	})
}

// guard wraps h; serving, when not nil, is checked first: while it is
// false the request is dropped without an answer. With fwd, a request
// whose forwarding mark does not verify is refused with 403.
func guard(h sipgo.RequestHandler, serving func() bool, fwd *forwarded) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		if serving != nil && !serving() {
			end(tx) // nothing answers: keep no transaction for Timer J
			return
		}
		if reason := checkRequest(req); reason != "" {
			if req.Method != sip.ACK { // an ACK is never answered
				_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusBadRequest, reason, nil))
			}
			end(tx)
			return
		}
		if fwd.refuse(req, tx) {
			end(tx)
			return
		}
		h(req, tx)
	}
}

// end terminates tx at once: a request refused here leaves nothing to wait
// for, and a retransmission is simply refused again.
func end(tx sip.ServerTransaction) {
	if tx != nil {
		tx.Terminate()
	}
}

// checkRequest returns the reason phrase of a 400 for a request that lacks
// a mandatory header, or "" when it is complete.
func checkRequest(req *sip.Request) string {
	switch {
	case req.From() == nil:
		return "Missing From header"
	case req.To() == nil:
		return "Missing To header"
	case req.CallID() == nil || req.CallID().Value() == "":
		return "Missing Call-ID header"
	case req.CSeq() == nil:
		return "Missing CSeq header"
	case req.CSeq().MethodName != req.Method:
		return "CSeq method does not match the request"
	case req.Via() == nil:
		return "Missing Via header"
	}
	return ""
}
