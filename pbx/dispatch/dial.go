package dispatch

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Connections the dispatcher opens to phones. A request for a phone over
// TCP or TLS (its Request-URI says transport=tcp, transport=tls or sips,
// or its dialog's flow token names a connection that closed) that has no
// open connection gets one: the dispatcher connects to the Request-URI's
// address and port (the phone's Contact), from its tcp or tls listener's
// side, and sends the request over it once it is open; the phone's
// answers come back over it. The connection counts against the limits as
// an accepted one and closes when idle the same way. When it cannot be
// opened (a phone behind NAT, one that is off) the request is answered
// 480 as before. Only addresses are connected to, no names; a TLS phone's
// certificate must be signed by Config.BackendCA or the system's roots
// and name its address, which few phones' do. This is RFC 3261's own
// connection handling, not RFC 5626's outbound.

// phoneDialTimeout bounds opening a connection to a phone (and its TLS
// handshake): a phone on the LAN connects within milliseconds, and the
// backend waits for an answer meanwhile.
const phoneDialTimeout = 3 * time.Second

// dialTarget is where toPhone may open a connection for req: the
// Request-URI's address and port, over TCP or TLS (the URI's transport,
// else tls for sips, else tcp when a closed flow's token named one).
// ok is false when the URI names no address or no stream transport.
func dialTarget(req *sip.Request, token string) (addr netip.AddrPort, tr string, ok bool) {
	u := req.Recipient
	t, _ := u.UriParams.Get("transport")
	switch {
	case strings.EqualFold(t, "tls") || strings.EqualFold(u.Scheme, "sips"):
		tr = "TLS"
	case strings.EqualFold(t, "tcp"):
		tr = "TCP"
	case token != "" && t == "":
		tr = "TCP"
	default:
		return netip.AddrPort{}, "", false
	}
	port := u.Port
	if port == 0 && tr == "TLS" {
		port = 5061
	}
	ap, err := ipPort(u.Host, port)
	if err != nil || !ap.Addr().IsValid() || ap.Addr().IsUnspecified() {
		return netip.AddrPort{}, "", false
	}
	return ap, tr, true
}

// dialPhone starts opening a connection to target over tr ("TCP" or
// "TLS") and returns it at once: what is written to it waits until it is
// open. in is the socket req came on: when the connection cannot be
// opened, req (as it is now, before the dispatcher's Via) gets 480 there.
func (d *Dispatcher) dialPhone(in *sock, req *sip.Request, target netip.AddrPort, tr string) (*streamConn, error) {
	rs := d.run.Load()
	if d.streams == nil || rs == nil {
		return nil, errNoFlow
	}
	var ls *sock
	d.mu.Lock()
	for _, x := range d.socks {
		if x.streams != nil && x.transport == tr {
			ls = x
			break
		}
	}
	d.mu.Unlock()
	if ls == nil {
		return nil, fmt.Errorf("no %s listener to connect to the phone from: %w", tr, errNoFlow)
	}
	c := &streamConn{remote: target, id: newFlowID(), sock: ls, out: make(chan []byte, streamQueue),
		done: make(chan struct{}), ready: make(chan struct{})}
	c.lastMsg.Store(time.Now().UnixNano())
	if err := d.streams.add(c); err != nil {
		return nil, fmt.Errorf("connecting to the phone at %s: %w (%w)", target, err, errNoFlow)
	}
	orig := req.Clone()
	rs.wg.Go(func() {
		defer func() {
			d.streams.remove(c)
			c.close()
		}()
		conn, err := d.connectPhone(rs.ctx, c, target, tr)
		if err != nil {
			d.netLog.Info("dispatcher cannot connect to a phone", "to", target.String(), "transport", tr, "err", err)
			if !orig.IsAck() {
				d.reply(in, orig, sip.StatusTemporarilyUnavailable, "No Connection To The Phone")
			}
			return
		}
		c.cmu.Lock()
		c.c = conn
		c.cmu.Unlock()
		select {
		case <-c.done:
			// Closed while it was opening (shut down, replaced).
			_ = conn.Close()
			return
		default:
		}
		close(c.ready)
		d.log.Info("dispatcher opened a connection to a phone", "to", target.String(), "transport", tr, "call_id", callID(orig))
		stop := context.AfterFunc(rs.ctx, c.close)
		defer stop()
		go c.writer()
		d.readStream(ls, c)
	})
	return c, nil
}

// connectPhone opens the connection itself.
func (d *Dispatcher) connectPhone(ctx context.Context, c *streamConn, target netip.AddrPort, tr string) (net.Conn, error) {
	dl := net.Dialer{Timeout: phoneDialTimeout}
	if a := c.sock.local; a.IsValid() && !a.IsUnspecified() {
		dl.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0))
	}
	conn, err := dl.DialContext(ctx, "tcp", target.String())
	if err != nil {
		return nil, err
	}
	if tr != "TLS" {
		return conn, nil
	}
	tc := tls.Client(conn, &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: d.cfg.BackendCA, ServerName: target.Addr().String()})
	_ = tc.SetDeadline(time.Now().Add(phoneDialTimeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}
