package dispatch

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Failover of a new call, as kamailio's failure_route with ds_next_dst
// does it: an initial INVITE from a phone that its backend leaves without
// any answer for TxTimeout, or refuses with 500 or 503 before anything but
// 100 Trying, is sent on to the next backend in the algorithm's order (for
// the hashes the next in the rendezvous ranking of its key, so the choice
// stays the same for the same key), up to Config.Attempts backends. The
// dispatcher is transaction-stateful for just these INVITEs: it ACKs the
// errors it absorbs itself, keeps the request to send it on, and answers
// the phone 503 itself when no backend took the call (487 when the phone
// cancelled meanwhile).
//
// A phone's other requests outside a dialog (REGISTER, OPTIONS, MESSAGE,
// SUBSCRIBE, …) go on the same way on TxTimeout or 500/503, without ACKs
// and without repetitions by the dispatcher (the phone repeats them until
// their final answer); pending.nonInvite says which answers pass.
// Everything else stays stateless.

// pickNext chooses the next backend among those up that ok allows.
func (d *Dispatcher) pickNext(key string, ok func(int) bool) int {
	return d.sel.pick(key, func(i int) bool { return d.usable(i) && ok(i) })
}

// sweep handles the requests left unanswered: their backends are marked
// down, and initial INVITEs go on to the next backend or get the
// dispatcher's own answer.
func (d *Dispatcher) sweep(now time.Time) {
	r := d.pend.sweep(now, d.cfg.TxTimeout, d.pickFn)
	for _, t := range r.timedOut {
		d.health.timedOut(t.backend, t.method)
	}
	for _, nx := range r.moved {
		d.sendAttempt(nx, "dispatcher sends a request on to the next backend: the last one did not answer")
	}
	for _, nx := range r.repeat {
		if d.pool(nx.backend) != nil {
			continue // a reliable transport: nothing is repeated on it
		}
		d.sendAttempt(nx, "")
	}
	for _, g := range r.gaveUp {
		d.log.Warn("dispatcher gave up on a request: no backend answered", "method", string(g.res.CSeq().MethodName), "call_id", g.res.CallID().Value(), "status", g.res.StatusCode)
		if to, err := viaAddr(g.res.Via()); err == nil {
			d.send(g.sock, g.res, to)
		}
	}
}

// parseRequest reads back a request the dispatcher stored as it went out,
// without the dispatcher's Via and its rrs Record-Route entries.
func parseRequest(raw []byte, rrs int) (*sip.Request, error) {
	m, err := sip.ParseMessage(raw)
	if err != nil {
		return nil, fmt.Errorf("reading a stored request: %w", err)
	}
	req, ok := m.(*sip.Request)
	if !ok || req.CallID() == nil || req.Via() == nil {
		return nil, fmt.Errorf("reading a stored request: not a request with a Call-ID and a Via")
	}
	req.RemoveHeader("Via")
	for range rrs {
		req.RemoveHeader("Record-Route")
	}
	return req, nil
}

// sendAttempt sends a stored initial INVITE to nx.backend with the
// attempt's branch, Record-Routed with that backend, and logs why; why ""
// is a repetition to the same backend, neither logged nor counted.
func (d *Dispatcher) sendAttempt(nx next, why string, args ...any) {
	req, err := parseRequest(nx.raw, nx.rrs)
	if err != nil {
		d.log.Error("dispatcher cannot send a call on", "err", err)
		return
	}
	if why != "" {
		d.log.Info(why, append(args, "call_id", req.CallID().Value(), "backend", d.name(nx.backend))...)
		d.sent[nx.backend].Add(1)
	}
	in := nx.in
	if in == nil {
		in = nx.sock
	}
	out, err := d.toBackend(nx.backend, req, nx.sock)
	if err != nil {
		// Lost, as a datagram would be: repeated, or the next backend
		// tried, when the sweep finds it unanswered.
		d.netLog.Warn("dispatcher cannot send a call on: no connection to the backend is open", "call_id", req.CallID().Value(), "backend", d.name(nx.backend))
		return
	}
	if nx.rrs > 0 {
		d.addRecordRoute(req, in, out, nx.inConn, nil, nx.backend)
	}
	req.PrependHeader(d.via(out, nx.branch))
	d.send(out, req, d.addr(nx.backend))
}

// recordRoute is the dispatcher's Record-Route naming backend.
func (d *Dispatcher) recordRoute(s *sock, backend int) *sip.RecordRouteHeader {
	return &sip.RecordRouteHeader{Address: sip.Uri{Scheme: "sip", Host: s.host, Port: s.port,
		UriParams: sip.HeaderParams{{K: "lr"}, {K: routeParam, V: backendTag(d.name(backend))}}}}
}

// via is the dispatcher's own Via with branch.
func (d *Dispatcher) via(s *sock, branch string) *sip.ViaHeader {
	tr := s.transport
	if tr == "" {
		tr = "UDP"
	}
	return &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: tr, Host: s.host, Port: s.port,
		Params: sip.HeaderParams{{K: "branch", V: branch}, {K: "rport"}}}
}

// ackError acknowledges a final error of a backend that the phone will not
// see, hop by hop (RFC 3261 §17.1.1.3): the INVITE's Request-URI, the
// response's From, To, Call-ID and CSeq number, and the dispatcher's Via
// the response came back with.
func (d *Dispatcher) ackError(s *sock, res *sip.Response, raw []byte, to netip.AddrPort) {
	via, cs := res.Via(), res.CSeq()
	if via == nil || cs == nil || res.From() == nil || res.To() == nil || res.CallID() == nil {
		return
	}
	// Without the INVITE (no longer kept) the backend's address: the
	// ACK of an error matches its transaction by the branch.
	u := sip.Uri{Scheme: "sip", Host: to.Addr().String(), Port: int(to.Port())}
	if raw != nil {
		if req, err := parseRequest(raw, 0); err == nil {
			u = req.Recipient
		}
	}
	ack := sip.NewRequest(sip.ACK, u)
	ack.AppendHeader(via.Clone())
	mf := sip.MaxForwardsHeader(defaultMaxFw)
	ack.AppendHeader(&mf)
	ack.AppendHeader(sip.HeaderClone(res.From()))
	ack.AppendHeader(sip.HeaderClone(res.To()))
	ack.AppendHeader(sip.HeaderClone(res.CallID()))
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: cs.SeqNo, MethodName: sip.ACK})
	cl := sip.ContentLengthHeader(0)
	ack.AppendHeader(&cl)
	d.send(s, ack, to)
}

// localFinal is the dispatcher's own final answer to an initial INVITE no
// backend took: 503, or 487 when the phone cancelled it meanwhile.
// server, if not empty, is its Server header.
func localFinal(req *sip.Request, base string, canceled bool, server string) *sip.Response {
	code, reason := sip.StatusServiceUnavailable, "No Backend Available"
	if canceled {
		code, reason = sip.StatusRequestTerminated, "Request Terminated"
	}
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if to := res.To(); to != nil && !to.Params.Has("tag") {
		to.Params.Add("tag", "d"+strings.TrimPrefix(base, branchPrefix))
	}
	if server != "" {
		res.AppendHeader(sip.NewHeader("Server", server))
	}
	return res
}
