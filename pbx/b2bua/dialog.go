package b2bua

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Dialog is one leg's SIP dialog as plain data (RFC 3261 §12), so that it
// can be stored and a call restored on the twin after a failover. URIs are
// kept in their string form.
type Dialog struct {
	CallID    string `json:"call_id"`
	LocalTag  string `json:"local_tag"`
	RemoteTag string `json:"remote_tag"`
	// LocalURI and RemoteURI are the From/To addresses of our side and of
	// the peer, with display names in LocalName and RemoteName.
	LocalURI   string `json:"local_uri"`
	LocalName  string `json:"local_name,omitempty"`
	RemoteURI  string `json:"remote_uri"`
	RemoteName string `json:"remote_name,omitempty"`
	// LocalSeq is the CSeq of the last request we sent; RemoteSeq of the
	// last request the peer sent.
	LocalSeq  uint32 `json:"local_seq"`
	RemoteSeq uint32 `json:"remote_seq"`
	// RemoteTarget is the peer's Contact URI (the Request-URI of our
	// in-dialog requests).
	RemoteTarget string `json:"remote_target"`
	// RouteSet is the route set, in the order Route headers are written.
	RouteSet []string `json:"route_set,omitempty"`
	// Transport is "UDP", "TCP" or "TLS".
	Transport string `json:"transport"`
	// Peer is the "ip:port" the peer's messages come from; our requests go
	// there, whatever its Contact says, so that phones behind NAT are
	// reached.
	Peer string `json:"peer"`
	// UAS is true when the peer sent the dialog-creating INVITE (the
	// caller's leg).
	UAS bool `json:"uas"`
}

var errNoDialog = errors.New("no matching dialog")

// matches reports whether an in-dialog request from the peer belongs to d.
func (d *Dialog) matches(req *sip.Request) bool {
	from, to := req.From(), req.To()
	if from == nil || to == nil {
		return false
	}
	ft, _ := from.Params.Get("tag")
	tt, _ := to.Params.Get("tag")
	return ft == d.RemoteTag && tt == d.LocalTag
}

// newRequest builds an in-dialog request (RFC 3261 §12.2.1.1) with the next
// local CSeq; via names our listener. Callers hold the call's lock.
func (d *Dialog) newRequest(method sip.RequestMethod, via sip.Uri) (*sip.Request, error) {
	d.LocalSeq++
	return d.buildRequest(method, d.LocalSeq, via)
}

func (d *Dialog) buildRequest(method sip.RequestMethod, seq uint32, via sip.Uri) (*sip.Request, error) {
	var target sip.Uri
	if err := sip.ParseUri(d.RemoteTarget, &target); err != nil {
		return nil, fmt.Errorf("parsing remote target %q: %w", d.RemoteTarget, err)
	}
	req := sip.NewRequest(method, target)
	tp := d.Transport
	if tp == "" {
		tp = "UDP"
	}
	req.AppendHeader(newVia(tp, via))
	for _, r := range d.RouteSet {
		var u sip.Uri
		if err := sip.ParseUri(r, &u); err != nil {
			return nil, fmt.Errorf("parsing route %q: %w", r, err)
		}
		req.AppendHeader(&sip.RouteHeader{Address: u})
	}
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	from := &sip.FromHeader{DisplayName: d.LocalName, Params: sip.NewParams()}
	if err := sip.ParseUri(d.LocalURI, &from.Address); err != nil {
		return nil, fmt.Errorf("parsing local URI %q: %w", d.LocalURI, err)
	}
	from.Params.Add("tag", d.LocalTag)
	req.AppendHeader(from)
	to := &sip.ToHeader{DisplayName: d.RemoteName, Params: sip.NewParams()}
	if err := sip.ParseUri(d.RemoteURI, &to.Address); err != nil {
		return nil, fmt.Errorf("parsing remote URI %q: %w", d.RemoteURI, err)
	}
	if d.RemoteTag != "" {
		to.Params.Add("tag", d.RemoteTag)
	}
	req.AppendHeader(to)
	cid := sip.CallIDHeader(d.CallID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
	if method == sip.INVITE || method == sip.UPDATE || method == sip.REFER || method == sip.NOTIFY {
		req.AppendHeader(&sip.ContactHeader{Address: via})
	}
	req.SetTransport(tp)
	req.SetDestination(d.Peer)
	req.SetBody(nil)
	return req, nil
}

// ack builds the ACK for a 2xx to the INVITE with CSeq seq (RFC 3261
// §13.2.2.4): a new transaction, same CSeq number.
func (d *Dialog) ack(seq uint32, via sip.Uri, body []byte) (*sip.Request, error) {
	req, err := d.buildRequest(sip.ACK, seq, via)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		req.SetBody(body)
	}
	return req, nil
}

// newVia is our Via for a request leaving the listener named by u.
func newVia(transport string, u sip.Uri) *sip.ViaHeader {
	v := &sip.ViaHeader{
		ProtocolName:    "SIP",
		ProtocolVersion: "2.0",
		Transport:       strings.ToUpper(transport),
		Host:            u.Host,
		Port:            u.Port,
		Params:          sip.NewParams(),
	}
	v.Params.Add("branch", sip.GenerateBranch())
	v.Params.Add("rport", "")
	return v
}

// cancelFor builds the CANCEL of a pending INVITE per RFC 3261 §9.1: the
// same Request-URI, top Via (branch), Route, Call-ID, From and To, and the
// CSeq number with method CANCEL.
func cancelFor(inv *sip.Request) *sip.Request {
	req := sip.NewRequest(sip.CANCEL, inv.Recipient)
	if v := inv.Via(); v != nil {
		req.AppendHeader(v.Clone())
	}
	for _, h := range inv.GetHeaders("Route") {
		req.AppendHeader(sip.HeaderClone(h))
	}
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	for _, name := range []string{"From", "To", "Call-ID"} {
		if h := inv.GetHeader(name); h != nil {
			req.AppendHeader(sip.HeaderClone(h))
		}
	}
	if cs := inv.CSeq(); cs != nil {
		req.AppendHeader(&sip.CSeqHeader{SeqNo: cs.SeqNo, MethodName: sip.CANCEL})
	}
	req.SetTransport(inv.Transport())
	req.SetDestination(inv.Destination())
	req.Laddr = inv.Laddr
	req.SetBody(nil)
	return req
}

// uasDialog is the dialog of the caller's leg, from its INVITE.
func uasDialog(req *sip.Request, localTag string) (Dialog, error) {
	from, to, cid, cs := req.From(), req.To(), req.CallID(), req.CSeq()
	if from == nil || to == nil || cid == nil || cs == nil {
		return Dialog{}, errors.New("missing From, To, Call-ID or CSeq")
	}
	d := Dialog{
		CallID:     cid.Value(),
		LocalTag:   localTag,
		LocalURI:   to.Address.String(),
		LocalName:  to.DisplayName,
		RemoteURI:  from.Address.String(),
		RemoteName: from.DisplayName,
		RemoteSeq:  cs.SeqNo,
		Transport:  strings.ToUpper(req.Transport()),
		Peer:       req.Source(),
		UAS:        true,
	}
	d.RemoteTag, _ = from.Params.Get("tag")
	if d.RemoteTag == "" {
		return Dialog{}, errors.New("no tag in From")
	}
	if c := req.Contact(); c != nil {
		d.RemoteTarget = c.Address.String()
	} else {
		return Dialog{}, errors.New("no Contact in the INVITE")
	}
	for _, h := range req.GetHeaders("Record-Route") {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			d.RouteSet = append(d.RouteSet, rr.Address.String())
		}
	}
	return d, nil
}

// confirm completes a UAC dialog from a 2xx (or early 1xx) response to our
// INVITE: remote tag, target and route set (Record-Route reversed).
func (d *Dialog) confirm(res *sip.Response) {
	if to := res.To(); to != nil {
		d.RemoteTag, _ = to.Params.Get("tag")
	}
	if c := res.Contact(); c != nil {
		d.RemoteTarget = c.Address.String()
	}
	rrs := res.GetHeaders("Record-Route")
	d.RouteSet = d.RouteSet[:0]
	for i := len(rrs) - 1; i >= 0; i-- {
		if rr, ok := rrs[i].(*sip.RecordRouteHeader); ok {
			d.RouteSet = append(d.RouteSet, rr.Address.String())
		}
	}
}

// laddr is the local address requests to the peer leave from: the UDP
// listener named by via, so that replies and NAT bindings stay on it. For
// TCP the connection the phone opened is reused by peer address instead.
func laddr(transport string, via sip.Uri) sip.Addr {
	if !strings.EqualFold(transport, "UDP") {
		return sip.Addr{}
	}
	ip := net.ParseIP(via.Host)
	if ip == nil || via.Port == 0 {
		return sip.Addr{}
	}
	return sip.Addr{IP: ip, Port: via.Port, Hostname: via.Host}
}
