package dispatch

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Backends over TCP and TLS. The dispatcher keeps a small pool of
// connections open to each such backend (Config.BackendConns): it opens
// them at start, and again with backoff when one closes or cannot be
// opened. A request goes over the connection its Call-ID hashes to (the
// next open one when that one is not), so a dialog's requests keep their
// order; the backend answers over the same connection, and sends its own
// requests (a call to a phone, a BYE) over it too: the dispatcher names
// the connection in its Via and in the Record-Route entry towards the
// backend (its local address and port, with transport=tcp or tls), which
// the backend's stack finds among its open connections. Probes go over
// the pool as well. A backend none of whose connections is open gets no
// new requests.
//
// Each connection is a sock of its own (pool set): what the proxy writes
// to it goes to the connection, and what arrives on it is handled as from
// the backend.

// Defaults and bounds of the pools.
const (
	DefaultBackendConns = 2
	// poolParam names, in the dispatcher's Via of a request from a
	// backend, the pool connection it came on.
	poolParam       = "dpc"
	poolDialTimeout = 5 * time.Second
	poolBackoffMin  = 50 * time.Millisecond
	poolBackoffMax  = 5 * time.Second
	poolQueue       = 256
	// poolKeepAlive is how often each pool connection gets a double-CRLF
	// ping (RFC 5626 §3.5.1), so that a backend that closes idle
	// connections (kamailio after 2 minutes by default) keeps them,
	// and with them the registrations and dialogs that came over them.
	poolKeepAlive = 30 * time.Second
)

// errNoBackendConn: a backend over TCP or TLS has no open connection.
var errNoBackendConn = errors.New("no open connection to the backend")

// backendPool is the connections to one backend over TCP or TLS.
type backendPool struct {
	d         *Dispatcher
	i         int    // the backend
	tr        string // "TCP" or "TLS"
	slots     []poolSlot
	started   sync.Once
	keepAlive time.Duration // poolKeepAlive; tests shorten it
}

type poolSlot struct {
	mu  sync.Mutex
	cur *poolConn // nil: not open now
	// last is the local address of its last connection to last's
	// backend address (used by keep only): a new connection to the same
	// address is opened from it again.
	last, lastTo netip.AddrPort
}

// poolConn is one open connection of a pool.
type poolConn struct {
	*streamConn
}

// poolWriter is the packetConn of a pool connection's sock: whatever is
// written goes to the connection, whatever the address.
type poolWriter struct{ c *streamConn }

func (w poolWriter) ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, net.ErrClosed
}

func (w poolWriter) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	if err := w.c.send(bytes.Clone(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (w poolWriter) LocalAddr() net.Addr { return w.c.c.LocalAddr() }
func (w poolWriter) Close() error        { w.c.close(); return nil }

// streamTransport tells whether a backend transport is TCP or TLS.
func streamTransport(tr string) bool { return tr == "tcp" || tr == "tls" }

// pool returns backend i's pool, nil for a UDP backend.
func (d *Dispatcher) pool(i int) *backendPool {
	if i < 0 || i >= len(d.pools) {
		return nil
	}
	return d.pools[i].Load()
}

// newPool makes the pool of backend i over tr ("tcp" or "tls").
func (d *Dispatcher) newPool(i int, tr string) *backendPool {
	return &backendPool{d: d, i: i, tr: strings.ToUpper(tr), slots: make([]poolSlot, d.cfg.BackendConns), keepAlive: poolKeepAlive}
}

// start opens the pool's connections and keeps them open until ctx ends.
func (p *backendPool) start(ctx context.Context, wg *sync.WaitGroup) {
	p.started.Do(func() {
		for k := range p.slots {
			wg.Go(func() { p.keep(ctx, &p.slots[k]) })
		}
	})
}

// keep opens slot's connection, serves it until it closes, and opens it
// again, with a backoff while opening fails.
func (p *backendPool) keep(ctx context.Context, slot *poolSlot) {
	backoff := poolBackoffMin
	for ctx.Err() == nil {
		c, err := p.dial(ctx, slot)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.d.netLog.Warn("dispatcher cannot connect to a backend", "backend", p.d.name(p.i), "transport", p.tr, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, poolBackoffMax)
			continue
		}
		opened := time.Now()
		slot.mu.Lock()
		slot.cur = c
		slot.mu.Unlock()
		p.d.poolConns.Store(c.id, c.sock)
		stop := context.AfterFunc(ctx, c.close)
		go c.writer()
		go p.ping(c)
		p.read(c)
		stop()
		c.close()
		p.d.poolConns.Delete(c.id)
		slot.mu.Lock()
		slot.cur = nil
		slot.mu.Unlock()
		if time.Since(opened) > poolBackoffMax {
			backoff = poolBackoffMin // it worked for a while: not a flapping peer
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, poolBackoffMax)
	}
}

// dial opens one connection of slot to the backend's address now. A slot
// that was connected to that address before connects from the same local
// address and port again: the backend knows the dispatcher by it (the
// source of the registrations that came over it, the Record-Route of
// their dialogs), so what it keeps across a restart of its own, or a
// broken connection, still reaches the phones. When that port cannot be
// had (taken meanwhile, or in TIME_WAIT after the dispatcher closed the
// connection), any port does.
func (p *backendPool) dial(ctx context.Context, slot *poolSlot) (*poolConn, error) {
	addr := p.d.addr(p.i)
	// SO_REUSEADDR on every connection: binding its port again later
	// needs it on both the old socket and the new.
	dl := net.Dialer{Timeout: poolDialTimeout, Control: reuseAddr}
	if p.d.cfg.ProbeFrom.IsValid() {
		dl.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(p.d.cfg.ProbeFrom, 0))
	}
	var raw net.Conn
	var err error
	if slot.last.IsValid() && slot.lastTo == addr {
		again := dl
		again.LocalAddr = net.TCPAddrFromAddrPort(slot.last)
		raw, err = again.DialContext(ctx, "tcp", addr.String())
		if errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EADDRNOTAVAIL) {
			p.d.netLog.Info("dispatcher connects to a backend from another port: its last one is taken", "backend", p.d.name(p.i), "port", slot.last.Port(), "err", err)
			raw, err = dl.DialContext(ctx, "tcp", addr.String())
		}
	} else {
		raw, err = dl.DialContext(ctx, "tcp", addr.String())
	}
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	if la, ok := raw.LocalAddr().(*net.TCPAddr); ok {
		slot.last, slot.lastTo = netip.AddrPortFrom(la.AddrPort().Addr().Unmap(), la.AddrPort().Port()), addr
	}
	if p.tr == "TLS" {
		tc := tls.Client(raw, p.d.backendTLS(p.i))
		hctx, cancel := context.WithTimeout(ctx, tlsHandshakeTime)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = raw.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		raw = tc
	}
	la, ok := raw.LocalAddr().(*net.TCPAddr)
	if !ok {
		_ = raw.Close()
		return nil, fmt.Errorf("connecting to %s: no TCP address", addr)
	}
	local := netip.AddrPortFrom(la.AddrPort().Addr().Unmap(), la.AddrPort().Port())
	sc := &streamConn{c: raw, remote: addr, id: newFlowID(), out: make(chan []byte, poolQueue), done: make(chan struct{})}
	s := &sock{conn: poolWriter{sc}, local: local.Addr(), port: int(local.Port()), transport: p.tr, pool: true, id: sc.id}
	s.host = local.Addr().String()
	if local.Addr().Is6() {
		s.host = "[" + s.host + "]"
	}
	s.via = "SIP/2.0/" + p.tr + " " + s.host + ":" + fmt.Sprint(s.port)
	sc.sock = s
	p.d.ownHosts.Store(strings.ToLower(s.host), true)
	return &poolConn{sc}, nil
}

// ping sends c a double-CRLF keep-alive every keepAlive until it closes.
func (p *backendPool) ping(c *poolConn) {
	tick := time.NewTicker(p.keepAlive)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
			if c.send([]byte("\r\n\r\n")) != nil {
				return
			}
		}
	}
}

// read hands each message arriving on c to the proxy, as from the
// backend, until c closes or breaks the framing.
func (p *backendPool) read(c *poolConn) {
	fr := newFramer()
	defer fr.close()
	buf := make([]byte, 4096)
	for {
		n, err := c.c.Read(buf)
		if n > 0 {
			msgs, _, ferr := fr.feed(buf[:n])
			for _, m := range msgs {
				p.d.handleMsg(c.sock, m, c.remote, nil)
			}
			if ferr != nil {
				p.d.netLog.Warn("dispatcher closed a connection to a backend that broke SIP framing", "backend", p.d.name(p.i), "err", ferr)
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				p.d.netLog.Info("dispatcher: a connection to a backend ended", "backend", p.d.name(p.i), "err", err)
			}
			return
		}
	}
}

// sock returns the sock of the open connection key hashes to, or of the
// next open one; nil when none is open.
func (p *backendPool) sock(key string) *sock {
	n := len(p.slots)
	k := 0
	if n > 1 && key != "" {
		h := fnv.New32a()
		h.Write([]byte(key))
		k = int(h.Sum32() % uint32(n))
	}
	for j := range n {
		sl := &p.slots[(k+j)%n]
		sl.mu.Lock()
		c := sl.cur
		sl.mu.Unlock()
		if c != nil {
			select {
			case <-c.done:
				continue
			default:
				return c.sock
			}
		}
	}
	return nil
}

// open counts the open connections.
func (p *backendPool) open() int {
	n := 0
	for k := range p.slots {
		sl := &p.slots[k]
		sl.mu.Lock()
		if sl.cur != nil {
			n++
		}
		sl.mu.Unlock()
	}
	return n
}

// reset closes every connection (the backend's address changed): they
// are opened again to the new one.
func (p *backendPool) reset() {
	for k := range p.slots {
		sl := &p.slots[k]
		sl.mu.Lock()
		c := sl.cur
		sl.mu.Unlock()
		if c != nil {
			// Outside the lock, which every request to the backend
			// takes: a TLS close may wait for its peer (see add).
			c.close()
		}
	}
}

// backendTLS is the client side of TLS to backend i: at least TLS 1.2,
// the certificate signed by Config.BackendCA (nil: the system's roots)
// and naming the backend's host (its address, or the DNS name it was
// found by, or for an SRV target the configured domain).
func (d *Dispatcher) backendTLS(i int) *tls.Config {
	r := d.roster.Load()
	hosts := []string{r.addrs[i].Addr().String()}
	if h := r.hosts[i]; h != "" {
		hosts = []string{h}
		if dom := r.domains[i]; dom != "" && dom != h {
			hosts = append(hosts, dom)
		}
	}
	roots := d.cfg.BackendCA
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: hosts[0],
		// The check below accepts the domain as well as the host.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyBackend(cs, roots, hosts)
		},
	}
}

// verifyBackend checks a backend's certificate chain against roots and
// its names against hosts (any one suffices).
func verifyBackend(cs tls.ConnectionState, roots *x509.CertPool, hosts []string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the backend sent no certificate")
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
		return fmt.Errorf("the backend's certificate: %w", err)
	}
	var errs []error
	for _, h := range hosts {
		err := leaf.VerifyHostname(h)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("the backend's certificate: %w", errors.Join(errs...))
}

// reuseAddr lets a connection bind the local port of one that closed.
func reuseAddr(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
