// Package phoneflow decides where a request to a phone goes when the
// phone talks SIP over TCP or TLS and its connection is closed; the
// B2BUA's requests and the mailbox's unsolicited NOTIFYs go the same way.
//
// A binding's Source (and a dialog's Peer) is the connection the phone's
// requests came over: RFC 3261 §18.2.2 answers over it, and RFC 5923 /
// RFC 5626 send the phone's incoming requests over it too, which is what
// reaches a phone behind NAT. The PBX does that while the connection is
// open. It is not always: after a failover every connection of the dead
// box is gone (the new active never had one), and a phone may close its
// connection between its registrations. The SIP stack, given the Source,
// would then connect to the Source's address and port, the ephemeral port
// the phone connected from, where nothing listens.
//
// So a request to a phone over TCP or TLS whose connection is closed goes
// where RFC 3261 §18.1.1 and RFC 3263 send any request: to the phone's
// Contact (the Request-URI; inside a dialog with a route set, the first
// Route), over a new connection the PBX opens. The transport is the URI's
// transport parameter; without one, TLS for a sips: URI, else the
// transport the phone registered over (a phone that registered over TCP
// listens on TCP, whatever RFC 3263's default for a bare address). Only IP
// addresses are connected to; a URI with a host name keeps the old
// destination. A phone behind NAT whose Contact cannot be reached stays
// unreachable until it registers again: RFC 5626 outbound, which lets the
// phone open the flow again itself, is not done.
package phoneflow

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// ConnectTimeout bounds opening a new connection to a phone (and a TLS
// handshake): a phone on the LAN answers within milliseconds, and the
// call waits meanwhile.
const ConnectTimeout = 3 * time.Second

// stream reports whether transport is a connection-oriented one.
func stream(transport string) bool {
	return strings.EqualFold(transport, "TCP") || strings.EqualFold(transport, "TLS")
}

// target is where req, a request to a phone over TCP or TLS whose
// connection is closed, goes instead: the transport and address of its
// next hop's URI (see the package comment). ok is false when req is not over TCP or TLS,
// names no usable IP address and port, or would go where it goes already.
func target(req *sip.Request) (transport string, dest netip.AddrPort, ok bool) {
	if req == nil || !stream(req.Transport()) {
		return "", netip.AddrPort{}, false
	}
	u := req.Recipient
	if r := req.Route(); r != nil {
		u = r.Address
	}
	transport, dest, ok = Listening(u, req.Transport())
	if !ok {
		return "", netip.AddrPort{}, false
	}
	if strings.EqualFold(transport, req.Transport()) && dest.String() == req.Destination() {
		return "", netip.AddrPort{}, false
	}
	return transport, dest, true
}

// Listening is where a phone listens by its Contact URI u: the URI's
// transport parameter, TLS for sips:, else fallback (in upper case); the
// URI's port or the transport's default. ok is false for a transport other
// than UDP, TCP or TLS, or a URI that names no usable IP address and port
// (phones' Contacts are addresses, not host names).
func Listening(u sip.Uri, fallback string) (transport string, dest netip.AddrPort, ok bool) {
	transport = strings.ToUpper(fallback)
	if t, has := u.UriParams.Get("transport"); has && t != "" {
		transport = strings.ToUpper(t)
	} else if strings.EqualFold(u.Scheme, "sips") {
		transport = "TLS"
	}
	if transport != "UDP" && transport != "TCP" && transport != "TLS" {
		return "", netip.AddrPort{}, false
	}
	ip, err := netip.ParseAddr(strings.Trim(u.Host, "[]"))
	if err != nil || ip.IsUnspecified() || ip.Zone() != "" {
		return "", netip.AddrPort{}, false
	}
	port := u.Port
	if port == 0 {
		port = 5060
		if transport == "TLS" {
			port = 5061
		}
	}
	if port < 0 || port > 65535 {
		return "", netip.AddrPort{}, false
	}
	return transport, netip.AddrPortFrom(ip.Unmap(), uint16(port)), true
}

// Redirector points requests to phones at their Contacts when their
// connections are closed.
type Redirector struct {
	Client *sipgo.Client
	// Contact is our Contact URI for a transport ("udp", "tcp", "tls"):
	// the Via of a request that changes transport is set from it.
	Contact func(transport string) sip.Uri
	// ConnectTLS, if set, opens a TLS connection for the SIP stack to a
	// phone (one that does not check the phone's certificate: the phone
	// proved itself by digest when it registered).
	ConnectTLS func(ctx context.Context, phone netip.AddrPort) error
	Logger     *slog.Logger
}

// open reports whether the SIP stack holds an open connection over
// transport to dest ("ip:port").
func (r *Redirector) open(transport, dest string) bool {
	pool := r.Client.TransportLayer().Pool(transport)
	if pool == nil {
		return false
	}
	c := pool.Get(dest)
	if c == nil {
		return false
	}
	_, _ = c.TryClose() // Get counted a reference
	return true
}

// Redirect points req, a request to a phone, at the phone's Contact when
// it would go over TCP or TLS and its connection is closed (see the
// package comment). It reports whether req was changed, and an error when
// a TLS connection to the phone could not be opened (the stack's own
// attempt would fail the same way, only later).
func (r *Redirector) Redirect(req *sip.Request) (bool, error) {
	if !stream(req.Transport()) || r.open(req.Transport(), req.Destination()) {
		return false, nil
	}
	tr, dest, ok := target(req)
	if !ok {
		return false, nil
	}
	if r.Logger != nil {
		r.Logger.Info("the phone's connection is closed: sending to its Contact over a new connection",
			"method", req.Method, "closed", strings.ToLower(req.Transport())+":"+req.Destination(),
			"to", strings.ToLower(tr)+":"+dest.String())
	}
	if !strings.EqualFold(tr, req.Transport()) {
		if v := req.Via(); v != nil {
			us := r.Contact(strings.ToLower(tr))
			v.Transport, v.Host, v.Port = tr, us.Host, us.Port
		}
	}
	req.SetTransport(tr)
	req.SetDestination(dest.String())
	if tr == "TLS" && r.ConnectTLS != nil && !r.open(tr, dest.String()) {
		ctx, cancel := context.WithTimeout(context.Background(), ConnectTimeout)
		defer cancel()
		if err := r.ConnectTLS(ctx, dest); err != nil {
			return true, err
		}
	}
	return true, nil
}
