package dispatch

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Parameters of the dispatcher's own Via branch and Record-Route entry.
const (
	branchPrefix = sip.RFC3261BranchMagicCookie + "-d-"  // forwarded requests
	probePrefix  = sip.RFC3261BranchMagicCookie + "-dp-" // OPTIONS probes
	routeParam   = "dbe"                                 // backend tag in Record-Route
	defaultMaxFw = 70
)

func (d *Dispatcher) handle(s *sock, parser *sip.Parser, data []byte, from netip.AddrPort) {
	if len(bytes.TrimSpace(data)) == 0 {
		return // keep-alive
	}
	msg, err := parser.ParseSIP(data)
	if err != nil {
		d.netLog.Warn("dispatcher dropped an unparseable datagram", "from", from.String(), "err", err)
		return
	}
	d.handleMsg(s, msg, from, nil)
}

// handleMsg handles one message that came on s from from; c is its
// connection when s is a stream listener.
func (d *Dispatcher) handleMsg(s *sock, msg sip.Message, from netip.AddrPort, c *streamConn) {
	switch m := msg.(type) {
	case *sip.Request:
		if s.probeOnly || !d.serving() {
			return
		}
		d.request(s, m, from, c)
	case *sip.Response:
		if s.probeOnly || !d.serving() {
			// Answers to the probes still count: they keep the view
			// of the backends current while not serving.
			if via := m.Via(); via != nil {
				if b, _ := via.Params.Get("branch"); strings.HasPrefix(b, probePrefix) && m.SipVersion == "SIP/2.0" {
					d.probeAnswered(b, m.StatusCode, from)
				}
			}
			return
		}
		d.response(s, m, from)
	}
}

// request forwards one request (or answers it when it cannot go on). c is
// the phone's connection it came on (nil: a datagram).
func (d *Dispatcher) request(s *sock, req *sip.Request, from netip.AddrPort, c *streamConn) {
	via := req.Via()
	if via == nil || req.CallID() == nil || req.CSeq() == nil || req.From() == nil || req.To() == nil {
		d.netLog.Warn("dispatcher dropped a request without Via, Call-ID, CSeq, From or To", "from", from.String())
		return
	}
	if err := sane(req, via); err != nil {
		d.netLog.Warn("dispatcher dropped a malformed request", "from", from.String(), "err", err)
		return
	}
	if c != nil {
		// Its answers must go back over this connection, whatever
		// port the phone listens on (RFC 3261 §18.2.2).
		via.Params.Add("rport", strconv.Itoa(int(from.Port())))
		via.Params.Add("received", from.Addr().String())
		if req.Method == sip.REGISTER {
			c.offerContacts(req)
		}
	} else {
		stampVia(via, from)
	}
	isAck := req.IsAck()
	fromPhone := c != nil || !d.fromBackend(from)
	if fromPhone && d.cfg.Refuse != nil {
		if wait := d.cfg.Refuse(); wait > 0 {
			if !isAck {
				d.replyRetry(s, req, wait)
			}
			return
		}
	}

	mf := req.MaxForwards()
	if mf == nil {
		v := sip.MaxForwardsHeader(defaultMaxFw)
		req.AppendHeader(&v)
	} else {
		if mf.Val() == 0 {
			if !isAck {
				d.reply(s, req, sip.StatusTooManyHops, "Too Many Hops")
			}
			return
		}
		mf.Dec()
	}

	branch := d.branch(req, via)
	inDialog := req.To().Params.Has("tag")
	dest, backend := netip.AddrPort{}, -1
	var err error
	// out is the socket the request leaves on, outConn the phone's
	// connection it goes to (nil: UDP).
	out := d.udpSock(s)
	var outConn *streamConn
	viaBackend := c == nil && d.fromBackend(from)

	own, token := d.popOwnRoutes(s, req)
	var pb found
	if own == nil {
		pb = d.pend.find(branch, req.Method == sip.CANCEL)
	} else {
		pb.backend = -1
	}
	wire := branch // the branch towards the backend
	var rt *retry
	switch {
	case own != nil:
		// In a dialog we record-routed: towards its backend, unless it
		// comes from there.
		if i, ok := d.routeBackend(own); ok && !viaBackend && req.Route() == nil {
			dest, backend = d.addr(i), i
			out, err = d.toBackend(i, req, out)
		} else {
			out, outConn, dest, err = d.toPhone(s, req, token, viaBackend)
		}
	case pb.backend >= 0:
		// A retransmission, the CANCEL or the ACK of an error of a
		// request already sent, to the backend that has it now (after a
		// failover not the first one). A retransmitted INVITE the
		// backend has answered provisionally is absorbed, the caller
		// getting a 100 again; after the final answer it goes on, and
		// the backend repeats its answer. When the dispatcher gave the
		// final answer itself, it repeats it, takes the ACK and answers
		// a late CANCEL.
		if pb.local != nil {
			switch {
			case !isAck && req.Method != sip.CANCEL:
				if to, err := viaAddr(pb.local.Via()); err == nil {
					d.send(s, pb.local, to)
				}
			case req.Method == sip.CANCEL:
				d.reply(s, req, sip.StatusOK, "OK")
			}
			return
		}
		if req.IsInvite() && pb.provisional {
			d.reply(s, req, sip.StatusTrying, "Trying")
			return
		}
		backend, dest, wire = pb.backend, d.addr(pb.backend), pb.branch
		out, err = d.toBackend(backend, req, out)
	case req.Method == sip.CANCEL || isAck:
		// Not of a request sent to a backend from here. A backend's
		// CANCEL or ACK follows its Request-URI, as the INVITE did (see
		// below); so does an ACK meant for someone else. A phone's
		// CANCEL of nothing gets 481.
		if viaBackend || isAck && !d.forUs(s, req.Recipient) {
			out, outConn, dest, err = d.toPhone(s, req, "", viaBackend)
			break
		}
		if !isAck {
			d.reply(s, req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		}
		return
	case inDialog || req.Route() != nil:
		// Someone else's route set or dialog: plain loose routing.
		if d.forUs(s, req.Recipient) && req.Route() == nil {
			d.reply(s, req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
			return
		}
		out, outConn, dest, err = d.toPhone(s, req, "", viaBackend)
	case req.Method == sip.OPTIONS && req.Recipient.User == "" && d.forUs(s, req.Recipient):
		d.reply(s, req, sip.StatusOK, "OK")
		return
	default:
		// A new request: from a backend it goes to the phone in its
		// Request-URI (a PBX calls a phone that registered through the
		// dispatcher: the PBX sends to where the REGISTER came from);
		// from anyone else to the backend the algorithm picks. Either
		// way the Record-Route names the backend, so the dialog's later
		// requests from the phone reach it.
		rrBackend, fromBE := d.roster.Load().byAddr[from]
		if fromBE && c == nil {
			out, outConn, dest, err = d.toPhone(s, req, "", viaBackend)
		} else {
			key := d.cfg.Algorithm.Key(req)
			backend = d.sel.pick(key, d.usableFn)
			if backend < 0 {
				d.reply(s, req, sip.StatusServiceUnavailable, "No Backend Available")
				return
			}
			dest = d.addr(backend)
			udp := out
			if out, err = d.toBackend(backend, req, out); err != nil {
				d.reply(s, req, sip.StatusServiceUnavailable, "No Backend Available")
				return
			}
			d.sent[backend].Add(1)
			rrBackend = backend
			if d.cfg.Attempts > 1 {
				// Kept (below) to go on to the next backend if this
				// one fails: an INVITE, or any other request outside a
				// dialog (REGISTER, OPTIONS, MESSAGE, SUBSCRIBE, …).
				rt = &retry{sock: udp, in: s, inConn: c, key: key, tried: []int{backend}, max: d.cfg.Attempts}
				if recordRoutes(req.Method) {
					rt.rrs = 1
					if out != s {
						rt.rrs = 2
					}
				}
			}
		}
		if err == nil && recordRoutes(req.Method) {
			d.addRecordRoute(req, s, out, c, outConn, rrBackend)
		}
	}
	if err == nil && outConn == nil && dest.Addr() == out.local && int(dest.Port()) == out.port {
		d.netLog.Warn("dispatcher refused a request whose next hop is itself", "method", string(req.Method), "call_id", req.CallID().Value())
		if !isAck {
			d.reply(s, req, sip.StatusLoopDetected, "Loop Detected")
		}
		return
	}
	if errors.Is(err, errNoBackendConn) {
		d.netLog.Warn("dispatcher cannot reach a backend: no connection to it is open", "method", string(req.Method), "call_id", req.CallID().Value(), "backend", d.name(backend))
		if !isAck {
			d.reply(s, req, sip.StatusServiceUnavailable, "No Connection To The Backend")
		}
		return
	}
	if errors.Is(err, errNoFlow) {
		d.netLog.Warn("dispatcher cannot reach a phone over TCP or TLS: its connection is closed", "method", string(req.Method), "call_id", req.CallID().Value(), "to", req.Recipient.String())
		if !isAck {
			d.reply(s, req, sip.StatusTemporarilyUnavailable, "No Connection To The Phone")
		}
		return
	}
	if err != nil {
		d.netLog.Warn("dispatcher cannot route a request", "method", string(req.Method), "call_id", req.CallID().Value(), "err", err)
		if !isAck {
			d.reply(s, req, sip.StatusBadRequest, "Bad Route")
		}
		return
	}
	if backend < 0 {
		if i, ok := d.roster.Load().byAddr[dest]; ok {
			backend = i
		}
	}
	// Only requests outside a dialog go into the table: they are what the
	// algorithm placed (their retransmissions, CANCEL and ACK must follow)
	// and what shows a dead backend. A request inside a dialog follows its
	// Route; a late retransmission of one (a BYE repeated after its 200)
	// may rightly get no answer from a backend that ended the dialog.
	if fromPhone && backend >= 0 && d.cfg.Mark != nil {
		tp := "udp"
		if c != nil {
			tp = strings.ToLower(s.transport)
		}
		d.cfg.Mark(req, from, tp)
	}
	v := d.via(out, wire)
	if s.pool {
		// From a backend over one of the pool's connections: its
		// answers go back over that one (RFC 3261 §18.2.2).
		v.Params.Add(poolParam, s.id)
	}
	req.PrependHeader(v)
	// An INVITE that may go on to another backend is kept as it goes out
	// (the dispatcher's Via and Record-Route are taken off again when it
	// is sent on): serialized once for both.
	var raw []byte
	if rt != nil {
		raw = marshal(req)
		rt.raw = raw
	}
	if backend >= 0 && !isAck && req.Method != sip.CANCEL && !inDialog && own == nil {
		// The 100 goes with the first copy only: a late one, after the
		// caller has its 200, would only confuse it.
		if d.pend.add(branch, backend, string(req.Method), time.Now(), rt) && req.IsInvite() {
			// As a transaction-stateful proxy would (kamailio's tm):
			// the caller stops retransmitting the INVITE at once
			// instead of when the backend's answer arrives.
			// It leaves before the INVITE: sent after, a backend's quick
			// final answer could overtake it, and a caller that gets 100
			// after its 407 may take the call for failed (sipp does).
			trying := sip.NewResponseFromRequest(req, sip.StatusTrying, "Trying", nil)
			trying.RemoveHeader("Via") // the dispatcher's own
			if to, err := viaAddr(trying.Via()); err == nil {
				d.send(s, trying, to)
			}
		}
	}
	if raw != nil {
		d.sendRaw(out, raw, dest)
	} else {
		d.send(out, req, dest)
	}
}

// toBackend is the socket a request for backend i leaves on: udp (a UDP
// listener, or the UDP listener of a stream one) for a backend over UDP,
// else the pool connection the request's Call-ID hashes to
// (errNoBackendConn: none is open).
func (d *Dispatcher) toBackend(i int, req *sip.Request, udp *sock) (*sock, error) {
	p := d.pool(i)
	if p == nil {
		return d.udpSock(udp), nil
	}
	if s := p.sock(callID(req)); s != nil {
		return s, nil
	}
	return d.udpSock(udp), errNoBackendConn
}

// recordRoutes tells the methods that create a dialog.
func recordRoutes(m sip.RequestMethod) bool {
	return m == sip.INVITE || m == sip.SUBSCRIBE || m == sip.REFER || m == sip.NOTIFY
}

// stampVia adds received and rport to the sender's Via (RFC 3261 §18.2.1,
// RFC 3581), so the response finds its way back through NAT.
func stampVia(via *sip.ViaHeader, from netip.AddrPort) {
	src := from.Addr().String()
	if v, ok := via.Params.Get("rport"); ok && v == "" {
		via.Params.Add("rport", strconv.Itoa(int(from.Port())))
		via.Params.Add("received", src)
		return
	}
	if strings.Trim(via.Host, "[]") != src {
		via.Params.Add("received", src)
	}
}

// branch is the dispatcher's branch for req: derived from the caller's top
// Via, so a retransmission, the CANCEL and the ACK of an error get the
// branch of their INVITE (RFC 3261 §16.11).
func (d *Dispatcher) branch(req *sip.Request, via *sip.ViaHeader) string {
	h := fnv.New64a()
	b, _ := via.Params.Get("branch")
	if strings.HasPrefix(b, sip.RFC3261BranchMagicCookie) {
		h.Write([]byte(b))
		h.Write([]byte{0})
		h.Write([]byte(via.SentBy()))
	} else {
		// RFC 2543 caller: the transaction's own fields.
		h.Write([]byte(req.CallID().Value()))
		h.Write([]byte{0})
		h.Write([]byte(strconv.FormatUint(uint64(req.CSeq().SeqNo), 10)))
		h.Write([]byte{0})
		ft, _ := req.From().Params.Get("tag")
		h.Write([]byte(ft))
		h.Write([]byte{0})
		h.Write([]byte(req.Recipient.String()))
	}
	return branchPrefix + strconv.FormatUint(h.Sum64(), 36)
}

// popOwnRoutes removes the top Routes that name this dispatcher (two
// where it Record-Routed twice, RFC 5658) and returns the first one with a
// backend tag (nil: none of its own) and the flow token among them.
func (d *Dispatcher) popOwnRoutes(s *sock, req *sip.Request) (own *sip.RouteHeader, token string) {
	for range 2 {
		r := req.Route()
		if r == nil || !d.isSelf(s, r.Address) && !d.isOwn(r.Address) {
			break
		}
		req.RemoveHeader("Route")
		if own == nil || !own.Address.UriParams.Has(routeParam) {
			own = r
		}
		if t, ok := r.Address.UriParams.Get(flowParam); ok && token == "" {
			token = t
		}
	}
	return own, token
}

// isOwn tells whether u names any listener of the dispatcher, or is an
// entry the dispatcher wrote for a connection to a backend (its backend
// tag, one of the local addresses of those connections).
func (d *Dispatcher) isOwn(u sip.Uri) bool {
	if u.UriParams.Has(routeParam) {
		if _, ok := d.ownHosts.Load(strings.ToLower(u.Host)); ok {
			return true
		}
	}
	d.mu.Lock()
	socks := d.socks
	d.mu.Unlock()
	for _, x := range socks {
		if d.isSelf(x, u) {
			return true
		}
	}
	return false
}

// routeBackend returns the backend named in the dispatcher's Route entry.
func (d *Dispatcher) routeBackend(r *sip.RouteHeader) (int, bool) {
	tag, ok := r.Address.UriParams.Get(routeParam)
	if !ok {
		return 0, false
	}
	i, ok := d.roster.Load().byTag[tag]
	return i, ok
}

func (d *Dispatcher) fromBackend(from netip.AddrPort) bool {
	_, ok := d.roster.Load().byAddr[from]
	return ok
}

// isSelf tells whether u names the dispatcher on s.
func (d *Dispatcher) isSelf(s *sock, u sip.Uri) bool {
	port := u.Port
	if port == 0 {
		port = 5060
	}
	if port != s.port {
		return false
	}
	h := strings.ToLower(u.Host)
	if h == strings.ToLower(s.host) {
		return true
	}
	a, err := netip.ParseAddr(strings.Trim(h, "[]"))
	if err != nil {
		return false
	}
	return a.Unmap() == s.local
}

// forUs tells whether a Request-URI names the dispatcher itself.
func (d *Dispatcher) forUs(s *sock, u sip.Uri) bool { return d.isSelf(s, u) }

// nextHop is where loose routing sends req: its first Route, else its
// Request-URI. Only IP addresses are routed (the dispatcher sits between
// phones and PBXs that Record-Route and Contact with addresses).
func nextHop(req *sip.Request) (netip.AddrPort, error) {
	u := req.Recipient
	if r := req.Route(); r != nil {
		u = r.Address
	}
	host, port := u.Host, u.Port
	if mh, ok := u.UriParams.Get("maddr"); ok && mh != "" {
		host = mh
	}
	ap, err := ipPort(host, port)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("next hop: %w", err)
	}
	return ap, nil
}

// ipPort is host (an IP address, IPv6 possibly bracketed) and port, 5060
// when zero.
func ipPort(host string, port int) (netip.AddrPort, error) {
	if port == 0 {
		port = 5060
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IP address", host)
	}
	if port < 0 || port > 65535 {
		return netip.AddrPort{}, fmt.Errorf("port %d is out of range", port)
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), nil
}

// reply answers req from the dispatcher itself.
func (d *Dispatcher) reply(s *sock, req *sip.Request, code int, reason string) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if d.cfg.Server != "" {
		res.AppendHeader(sip.NewHeader("Server", d.cfg.Server))
	}
	dest, err := viaAddr(res.Via())
	if err != nil {
		d.netLog.Warn("dispatcher cannot answer a request", "err", err)
		return
	}
	d.send(s, res, dest)
}

// replyRetry refuses req with 503 and a Retry-After of wait (Config.Refuse).
func (d *Dispatcher) replyRetry(s *sock, req *sip.Request, wait time.Duration) {
	res := sip.NewResponseFromRequest(req, sip.StatusServiceUnavailable, "Service Unavailable", nil)
	res.AppendHeader(sip.NewHeader("Retry-After", strconv.Itoa(max(1, int(wait.Round(time.Second)/time.Second)))))
	if d.cfg.Server != "" {
		res.AppendHeader(sip.NewHeader("Server", d.cfg.Server))
	}
	dest, err := viaAddr(res.Via())
	if err != nil {
		d.netLog.Warn("dispatcher cannot answer a request", "err", err)
		return
	}
	d.send(s, res, dest)
}

// viaAddr is where a response goes: received and rport of the Via, else
// its sent-by (RFC 3261 §18.2.2, RFC 3581).
func viaAddr(via *sip.ViaHeader) (netip.AddrPort, error) {
	if via == nil {
		return netip.AddrPort{}, fmt.Errorf("response without Via")
	}
	host := via.Host
	if r, ok := via.Params.Get("received"); ok && r != "" {
		host = r
	}
	port := via.Port
	if rp, ok := via.Params.Get("rport"); ok && rp != "" {
		if p, err := strconv.Atoi(rp); err == nil {
			port = p
		}
	}
	ap, err := ipPort(host, port)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("the Via: %w", err)
	}
	return ap, nil
}

var outPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// marshal returns msg as it goes on the wire.
func marshal(msg sip.Message) []byte {
	b := outPool.Get().(*bytes.Buffer)
	b.Reset()
	msg.StringWrite(b)
	out := bytes.Clone(b.Bytes())
	outPool.Put(b)
	return out
}

// sendRaw sends what marshal made.
func (d *Dispatcher) sendRaw(s *sock, b []byte, dest netip.AddrPort) {
	if _, err := s.conn.WriteToUDPAddrPort(b, dest); err != nil {
		d.netLog.Warn("dispatcher could not send", "to", dest.String(), "err", err)
	}
}

func (d *Dispatcher) send(s *sock, msg sip.Message, dest netip.AddrPort) {
	b := outPool.Get().(*bytes.Buffer)
	b.Reset()
	msg.StringWrite(b)
	if _, err := s.conn.WriteToUDPAddrPort(b.Bytes(), dest); err != nil {
		d.netLog.Warn("dispatcher could not send", "to", dest.String(), "err", err)
	}
	outPool.Put(b)
}

// response forwards a response to the next Via, after taking off the
// dispatcher's own.
func (d *Dispatcher) response(s *sock, res *sip.Response, from netip.AddrPort) {
	via := res.Via()
	if via == nil {
		return
	}
	if res.SipVersion != "SIP/2.0" || res.StatusCode < 100 || res.StatusCode > 699 {
		d.netLog.Warn("dispatcher dropped a malformed response", "from", from.String())
		return
	}
	b, _ := via.Params.Get("branch")
	if strings.HasPrefix(b, probePrefix) {
		d.probeAnswered(b, res.StatusCode, from)
		return
	}
	if !strings.HasPrefix(b, branchPrefix) || !d.isSelf(s, sip.Uri{Host: via.Host, Port: via.Port}) {
		d.netLog.Warn("dispatcher dropped a response not meant for it", "from", from.String(), "via", via.SentBy())
		return
	}
	if cs := res.CSeq(); cs != nil {
		base, n := splitBranch(b)
		o := d.pend.response(base, n, string(cs.MethodName), res.StatusCode, time.Now(), d.pickFn)
		if o.failed >= 0 {
			// Counted as a failed probe: a box that refuses calls
			// this way down_after times in a row gets no new ones
			// until its probes are answered again.
			d.health.probed(o.failed, false)
		}
		switch o.verdict {
		case drop:
			return
		case ackDrop:
			d.ackError(s, res, o.raw, from)
			return
		case failover:
			d.ackError(s, res, o.raw, from)
			d.sendAttempt(o.next, "dispatcher sends a call on to the next backend", "status", res.StatusCode, "from", from.String())
			return
		case resend:
			d.sendAttempt(o.next, "dispatcher sends a request on to the next backend", "method", string(cs.MethodName), "status", res.StatusCode, "from", from.String())
			return
		}
	}
	conn, _ := via.Params.Get(poolParam)
	res.RemoveHeader("Via")
	dest, err := viaAddr(res.Via())
	if err != nil {
		d.netLog.Warn("dispatcher cannot forward a response", "from", from.String(), "err", err)
		return
	}
	out := d.udpSock(s)
	if i, ok := d.roster.Load().byAddr[dest]; ok && d.pool(i) != nil {
		// A request of a backend over TCP or TLS: over the connection
		// it came on, else another of its pool.
		if ps, ok := d.poolConns.Load(conn); ok && conn != "" {
			out = ps.(*sock)
		} else if out = d.pool(i).sock(callID(res)); out == nil {
			d.netLog.Warn("dispatcher dropped a response: no connection to its backend is open", "backend", d.name(i), "call_id", callID(res))
			return
		}
	} else if t := res.Via().Transport; d.streams != nil && (strings.EqualFold(t, "TCP") || strings.EqualFold(t, "TLS")) {
		// Back over the connection the request came on.
		c := d.streams.byRemote(dest)
		if c == nil {
			d.netLog.Warn("dispatcher dropped a response: the phone's connection is closed", "to", dest.String(), "call_id", callID(res))
			return
		}
		if cs := res.CSeq(); cs != nil && cs.MethodName == sip.REGISTER && res.IsSuccess() {
			d.streams.registered(c, res, time.Now())
		}
		out = c.sock
	}
	d.send(out, res, dest)
}

// callID is msg's Call-ID, or "".
func callID(msg sip.Message) string {
	if h := msg.CallID(); h != nil {
		return h.Value()
	}
	return ""
}

// sane checks what the parser lets through but a next hop would refuse:
// a proxy must not pass on what it could not read back.
func sane(req *sip.Request, via *sip.ViaHeader) error {
	if req.SipVersion != "SIP/2.0" {
		return fmt.Errorf("version %q", req.SipVersion)
	}
	if !isToken(string(req.Method)) {
		return fmt.Errorf("method %q is not a token", req.Method)
	}
	for _, u := range []struct {
		what string
		uri  sip.Uri
	}{{"Request-URI", req.Recipient}, {"From", req.From().Address}, {"To", req.To().Address}} {
		if err := saneURI(u.uri); err != nil {
			return fmt.Errorf("%s: %w", u.what, err)
		}
	}
	if via.ProtocolName != "SIP" || via.ProtocolVersion != "2.0" || !isToken(via.Transport) || via.Host == "" {
		return fmt.Errorf("malformed Via %q", via.Value())
	}
	return nil
}

func saneURI(u sip.Uri) error {
	switch strings.ToLower(u.Scheme) {
	case "sip", "sips":
		if u.Host == "" {
			return fmt.Errorf("SIP URI without host")
		}
	case "tel":
	default:
		return fmt.Errorf("URI scheme %q", u.Scheme)
	}
	return nil
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-.!%*_+`'~", c) >= 0) {
			return false
		}
	}
	return true
}
