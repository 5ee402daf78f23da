package dispatch

import (
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// How a request from a backend finds the connection of a phone that uses
// TCP or TLS (RFC 5626's flows, without its Contact parameters):
//
//   - inside a dialog, by the flow token: where a request changes
//     transport the dispatcher Record-Routes twice (RFC 5658), one entry
//     for each side, and the entry towards a phone's connection carries
//     ";dfl=TOKEN", the connection's random id. A backend's BYE comes
//     back with both entries as its Route; the token names the
//     connection.
//   - outside a dialog (a PBX calling a phone registered through the
//     dispatcher: it sends to the dispatcher, the REGISTER's source, with
//     the phone's Contact as Request-URI), by the Contact: a REGISTER that
//     came over a connection and was answered 2xx with its Contact binds
//     that Contact to the connection until the registration expires (and
//     keeps the connection open as long).
//   - else, a connection from the Request-URI's own address and port (a
//     phone that reuses its connection, RFC 5923).
//
// A request for a phone over TCP or TLS that has no connection any more
// gets one opened to its Contact (dial.go); when that fails, 480.

// flowParam names the flow token in the dispatcher's Record-Route entry.
const flowParam = "dfl"

// maxBoundPerConn bounds the Contacts one connection may register.
const maxBoundPerConn = 16

// errNoFlow: the phone's connection is gone.
var errNoFlow = errors.New("the phone's connection is closed")

// alias is a registered Contact bound to the connection it came on.
type alias struct {
	conn    *streamConn
	expires time.Time
	aor     string // aorKey of the registration
}

// aorKey names the address-of-record of a REGISTER (its To URI).
func aorKey(u sip.Uri) string {
	return u.User + "@" + strings.ToLower(u.Host)
}

// contactKey is the part of a Contact that identifies it: user, host and
// port (the default port filled in), lower case.
func contactKey(u sip.Uri) string {
	port := u.Port
	if port == 0 {
		port = 5060
		if strings.EqualFold(u.Scheme, "sips") {
			port = 5061
		} else if t, ok := u.UriParams.Get("transport"); ok && strings.EqualFold(t, "tls") {
			port = 5061
		}
	}
	return u.User + "@" + strings.ToLower(strings.Trim(u.Host, "[]")) + ":" + strconv.Itoa(port)
}

// offerContacts remembers the Contacts of a REGISTER that came on c, to bind
// them when the backend accepts it.
func (c *streamConn) offerContacts(req *sip.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range req.GetHeaders("Contact") {
		ch, ok := h.(*sip.ContactHeader)
		if !ok {
			continue
		}
		if ch.Address.Wildcard {
			if aor := aorKey(req.To().Address); len(c.wildcard) < maxBoundPerConn && !slices.Contains(c.wildcard, aor) {
				c.wildcard = append(c.wildcard, aor)
			}
			continue
		}
		k := contactKey(ch.Address)
		if len(c.offered) < maxBoundPerConn && !slices.Contains(c.offered, k) {
			c.offered = append(c.offered, k)
		}
	}
}

// registered takes a 2xx to a REGISTER going back to c: the Contacts it
// offered that the answer lists with an expiry are bound to c; the others
// it offered are unbound, and after a "Contact: *" every Contact of the
// answer's AOR bound to c that the answer does not list.
func (t *streamTable) registered(c *streamConn, res *sip.Response, now time.Time) {
	def := 3600
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil {
			def = n
		}
	}
	listed := map[string]int{}
	for _, h := range res.GetHeaders("Contact") {
		ch, ok := h.(*sip.ContactHeader)
		if !ok || ch.Address.Wildcard {
			continue
		}
		exp := def
		if v, ok := ch.Params.Get("expires"); ok {
			if n, err := strconv.Atoi(v); err == nil {
				exp = n
			}
		}
		listed[contactKey(ch.Address)] = exp
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID[c.id] != c {
		return // closed meanwhile
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var until time.Time
	aor := ""
	if to := res.To(); to != nil {
		aor = aorKey(to.Address)
	}
	if i := slices.Index(c.wildcard, aor); i >= 0 {
		c.wildcard = slices.Delete(c.wildcard, i, i+1)
		for _, k := range c.bound {
			if a := t.aliases[k]; a != nil && a.conn == c && a.aor == aor && listed[k] <= 0 {
				delete(t.aliases, k)
			}
		}
	}
	for _, k := range c.offered {
		exp, ok := listed[k]
		if ok && exp > 0 {
			if a := t.aliases[k]; a != nil && a.conn != c && a.aor != aor && now.Before(a.expires) {
				// Another connection holds this Contact for another
				// AOR: a phone that authenticated as one extension
				// must not take the calls to another phone's Contact.
				// The phone of the same AOR (reconnected) takes it
				// over, anyone once the binding has expired.
				continue
			}
			if !slices.Contains(c.bound, k) {
				if len(c.bound) >= maxBoundPerConn {
					continue // it could not be unbound when c closes
				}
				c.bound = append(c.bound, k)
			}
			t.aliases[k] = &alias{conn: c, expires: now.Add(time.Duration(exp) * time.Second), aor: aor}
			continue
		}
		if a := t.aliases[k]; a != nil && a.conn == c {
			delete(t.aliases, k)
		}
	}
	c.offered = c.offered[:0]
	c.bound = slices.DeleteFunc(c.bound, func(k string) bool {
		a := t.aliases[k]
		return a == nil || a.conn != c
	})
	for _, k := range c.bound {
		if a := t.aliases[k]; a != nil && a.conn == c && a.expires.After(until) {
			until = a.expires
		}
	}
	if until.IsZero() {
		c.registered.Store(0)
	} else {
		c.registered.Store(until.Add(registeredGrace).UnixNano())
	}
}

// byContact returns the connection a registered Contact is bound to, or nil.
func (t *streamTable) byContact(u sip.Uri, now time.Time) *streamConn {
	k := contactKey(u)
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.aliases[k]
	if a == nil {
		return nil
	}
	if now.After(a.expires) {
		delete(t.aliases, k)
		return nil
	}
	return a.conn
}

// streamURI tells whether u asks for a stream transport.
func streamURI(u sip.Uri) bool {
	if strings.EqualFold(u.Scheme, "sips") {
		return true
	}
	t, _ := u.UriParams.Get("transport")
	return strings.EqualFold(t, "tcp") || strings.EqualFold(t, "tls")
}

// toPhone is where a request towards a phone goes: the connection of the
// flow token (from the dispatcher's own Route entries), of its registered
// Contact, or from its Request-URI's address; else over UDP (s, the
// socket it came on) to its next hop. For a phone over TCP or TLS whose
// connection is gone, a connection is opened when dial (the request comes
// from a backend), else errNoFlow.
func (d *Dispatcher) toPhone(s *sock, req *sip.Request, token string, dial bool) (*sock, *streamConn, netip.AddrPort, error) {
	if d.streams != nil {
		if token != "" {
			if c := d.streams.byToken(token); c != nil {
				return c.sock, c, c.remote, nil
			}
		}
		if req.Route() == nil {
			if c := d.streams.byContact(req.Recipient, time.Now()); c != nil {
				return c.sock, c, c.remote, nil
			}
			if ap, err := ipPort(req.Recipient.Host, req.Recipient.Port); err == nil {
				if c := d.streams.byRemote(ap); c != nil {
					return c.sock, c, c.remote, nil
				}
			}
			if token != "" || streamURI(req.Recipient) {
				// No connection: open one to the phone (dial.go),
				// for a backend only: a phone must not make the
				// dispatcher connect anywhere.
				if ap, tr, ok := dialTarget(req, token); ok && dial {
					if c, err := d.dialPhone(s, req, ap, tr); err == nil {
						return c.sock, c, c.remote, nil
					}
				}
				return d.udpSock(s), nil, netip.AddrPort{}, errNoFlow
			}
		}
	}
	dest, err := nextHop(req)
	return d.udpSock(s), nil, dest, err
}

// udpSock is the UDP socket for a message that came on s: s itself when
// it is a UDP listener, else the first UDP listener.
func (d *Dispatcher) udpSock(s *sock) *sock {
	if s.streams == nil && !s.pool {
		return s
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, x := range d.socks {
		if x.streams == nil && !x.probeOnly {
			return x
		}
	}
	return s
}

// addRecordRoute Record-Routes req, which came on in and leaves on out,
// naming backend: one entry when both are the same socket, else two
// (RFC 5658), the one of the socket it leaves on on top. An entry of a
// connection to a phone carries its flow token.
func (d *Dispatcher) addRecordRoute(req *sip.Request, in, out *sock, inConn, outConn *streamConn, backend int) {
	req.PrependHeader(d.recordRouteFlow(in, backend, inConn))
	if out != nil && out != in {
		req.PrependHeader(d.recordRouteFlow(out, backend, outConn))
	}
}

// recordRouteFlow is the dispatcher's Record-Route entry on s naming
// backend, with c's flow token when c is not nil.
func (d *Dispatcher) recordRouteFlow(s *sock, backend int, c *streamConn) *sip.RecordRouteHeader {
	rr := d.recordRoute(s, backend)
	if s.transport != "" {
		rr.Address.UriParams = append(sip.HeaderParams{{K: "transport", V: strings.ToLower(s.transport)}}, rr.Address.UriParams...)
	}
	if c != nil {
		rr.Address.UriParams.Add(flowParam, c.id)
	}
	return rr
}
