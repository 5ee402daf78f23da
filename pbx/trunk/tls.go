package trunk

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/handoff"
	"github.com/twinpbx/twinpbx/pbx/resolve"
	"github.com/twinpbx/twinpbx/pbx/tlscert"
)

// tlsPeer is how the certificate of a trunk's servers is checked: by an
// authority of the system or of tls_ca, or not at all with
// tls_insecure; and for which names. RFC 5922 §4 makes the SIP domain
// the identity a server must prove, not a host DNS gave on the way
// (SRV targets and addresses come from unsecured DNS): the names are
// the trunk's configured host and its domain, and the host (or else
// the domain) is sent in SNI. A host that is an IP address sends no SNI
// and must be named in the certificate as an address. Every sip trunk
// has a peer, since a trunk without a forced transport is sent over TLS
// when its NAPTR records say so.
func tlsPeer(l config.TrunkLine, host string) (*tlscert.Peer, error) {
	p := &tlscert.Peer{Name: "trunk " + l.Name, ServerName: host, Insecure: l.TLSInsecure}
	for _, h := range []string{host, l.Domain} {
		if h != "" && (len(p.Hosts) == 0 || p.Hosts[0] != h) {
			p.Hosts = append(p.Hosts, h)
		}
	}
	if _, err := netip.ParseAddr(host); err == nil && l.Domain != "" {
		p.ServerName = l.Domain
	}
	if l.TLSCA != "" {
		roots, err := tlscert.LoadCA(l.TLSCA)
		if err != nil {
			return nil, err
		}
		p.Roots = roots
	}
	return p, nil
}

// tlsConnectTimeout bounds a TLS connection and handshake to a trunk's
// server.
const tlsConnectTimeout = 10 * time.Second

// connector opens the TLS connections to the trunks' servers itself, so
// that each carries its trunk's SNI and is checked by its trunk's peer
// alone, and hands them to the SIP stack, which then sends over them
// (the stack reuses a connection to the same address and port). The
// stack takes them through a listener (pbx/handoff) it serves as if they
// were accepted.
type connector struct {
	h  *handoff.Listener
	tl *sip.TransportLayer

	mu    sync.Mutex
	dests map[netip.AddrPort]*dest
}

// dest is what the connector knows of one server address.
type dest struct {
	mu sync.Mutex // serialises connecting to the address
	// conn is the last connection there that a trunk's check passed,
	// and trunks the trunks whose check it passed: a connection is
	// checked once per trunk, not at every request sent over it.
	conn   *tls.Conn
	trunks []string
}

// lock returns the address's dest, locked.
func (c *connector) lock(a netip.AddrPort) *dest {
	c.mu.Lock()
	d, ok := c.dests[a]
	if !ok {
		d = &dest{}
		c.dests[a] = d
	}
	c.mu.Unlock()
	d.mu.Lock()
	return d
}

// passed reports whether conn passed the check of trunk; d.mu is held.
func (d *dest) passed(conn *tls.Conn, trunk string) bool {
	return d.conn == conn && slices.Contains(d.trunks, trunk)
}

// pass records that conn passed the check of trunk; d.mu is held.
func (d *dest) pass(conn *tls.Conn, trunk string) {
	if d.conn != conn {
		d.conn, d.trunks = conn, nil
	}
	d.trunks = append(d.trunks, trunk)
}

// running marks the manager as running until the returned function is
// called: connect may then start handing connections to the SIP stack
// (the first time a trunk needs TLS), which stops with it.
func (m *Manager) running(ctx context.Context) func() {
	m.mu.Lock()
	m.runCtx = ctx
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		m.runCtx = nil
		stop := m.stopConn
		m.stopConn = nil
		m.mu.Unlock()
		if stop != nil {
			stop()
		}
	}
}

// connector returns the running connector, starting it if need be; nil
// when the manager is not running. The caller holds m.mu.
func (m *Manager) connectorLocked() *connector {
	if m.conn != nil || m.runCtx == nil || m.runCtx.Err() != nil {
		return m.conn
	}
	m.conn, m.stopConn = m.serveTLS(m.runCtx, m.o.Contact(resolve.TLS).Port)
	return m.conn
}

// serveTLS starts handing the connections connect opens to the SIP
// stack, until ctx ends or stop is called. port is our TLS contact's
// (the stack records a listener's port).
func (m *Manager) serveTLS(ctx context.Context, port int) (c *connector, stop func()) {
	c = &connector{
		h:     handoff.New(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}),
		tl:    m.o.Client.TransportLayer(),
		dests: map[netip.AddrPort]*dest{},
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.tl.ServeTLS(c.h); !errors.Is(err, net.ErrClosed) {
			m.log.Warn("handing TLS connections to the SIP stack", "err", err)
		}
	}()
	unhook := context.AfterFunc(ctx, func() { _ = c.h.Close() })
	return c, func() {
		unhook()
		_ = c.h.Close()
		<-done
		m.mu.Lock()
		if m.conn == c {
			m.conn = nil
		}
		m.mu.Unlock()
	}
}

// Connect is connect for a request the B2BUA sends in a call over the
// trunk called name, to dest ("ip:port") over transport: a TLS
// connection the provider closed is opened again with the trunk's SNI
// and check before the stack would open one by itself. Other transports
// and names that are no trunk are left alone.
func (m *Manager) Connect(ctx context.Context, name, transport, dest string) error {
	if !strings.EqualFold(transport, resolve.TLS) {
		return nil
	}
	t, ok := m.Trunk(name)
	if !ok {
		return nil
	}
	a, err := netip.ParseAddrPort(dest)
	if err != nil {
		return fmt.Errorf("trunk %s: TLS to %q: %w", name, dest, err)
	}
	return m.connect(ctx, t, resolve.Target{Transport: resolve.TLS, IP: a.Addr(), Port: a.Port()})
}

// connect makes sure the SIP stack has a TLS connection to target for
// trunk t, dialling it with the trunk's SNI and check when there is
// none. Other transports, and a manager that is not running, are left
// to the stack.
func (m *Manager) connect(ctx context.Context, t *Trunk, target resolve.Target) error {
	if target.Transport != resolve.TLS || m.o.TLS == nil || t.line.Type != config.LineSIP {
		return nil
	}
	m.mu.Lock()
	c := m.connectorLocked()
	m.mu.Unlock()
	if c == nil {
		return nil
	}
	addr := target.AddrPort()
	d := c.lock(addr)
	defer d.mu.Unlock()
	pool := c.tl.Pool("tls")
	if pool == nil {
		return errors.New("the SIP stack has no TLS transport")
	}
	if have := pool.Get(addr.String()); have != nil {
		defer func() { _, _ = have.TryClose() }() // Get counted a reference
		// Opened for another trunk at the same address, or by the
		// stack on its own: used only if it passes this trunk's check.
		if tc, ok := tlsConn(have); ok && !d.passed(tc, t.tls.Name) {
			if err := m.o.TLS.Check(t.tls.Name, tc.ConnectionState()); err != nil {
				return fmt.Errorf("trunk %s: the TLS connection to %s: %w", t.line.Name, addr, err)
			}
			d.pass(tc, t.tls.Name)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, tlsConnectTimeout)
	defer cancel()
	conn, err := m.o.TLS.Dial(ctx, t.tls.Name, addr)
	if err != nil {
		return fmt.Errorf("trunk %s: %w", t.line.Name, err)
	}
	if err := c.h.Give(ctx, conn); err != nil {
		_ = conn.Close()
		return fmt.Errorf("trunk %s: handing the TLS connection to %s over: %w", t.line.Name, addr, err)
	}
	d.pass(conn, t.tls.Name)
	return nil
}

// tlsConn finds the TLS connection under one of the SIP stack's.
func tlsConn(c sip.Connection) (*tls.Conn, bool) {
	if tc, ok := c.(*sip.TCPConnection); ok {
		t, ok := tc.Conn.(*tls.Conn)
		return t, ok
	}
	return nil, false
}
