package pbx

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/tlscert"
)

// Connections over TLS to phones. A phone registered over TLS is called
// over its own connection while it is open; when it is gone (after a
// failover, or closed by the phone) the B2BUA sends to the phone's Contact
// over a new connection (b2bua's reconnect.go), which this opens: the SIP
// stack would check the phone's certificate as a provider's (a configured
// trunk's authority and names), which no phone passes.
//
// The PBX is the TLS client here, and a phone's certificate is NOT
// checked: phones on a LAN present self-signed certificates, for no name
// the PBX could expect (the Contact is an address the phone chose), and
// the phone has proven who it is by digest when it registered. The
// connection keeps the call's signalling (and its SDES keys) from anyone
// who only listens; someone who can take over the phone's address on the
// LAN could take its calls, as over UDP or TCP. The PBX presents its own
// certificate if the phone asks for one.

// phoneTLS opens TLS connections to phones and hands them to the SIP
// stack, which then sends over them as over any connection it accepted.
// The hand-over runs while Run runs (start).
type phoneTLS struct {
	log  *slog.Logger
	conf *tls.Config
	tl   *sip.TransportLayer

	mu    sync.Mutex
	h     *handoff // nil while not running
	locks map[netip.AddrPort]*sync.Mutex
}

func newPhoneTLS(tl *sip.TransportLayer, peers *tlscert.Peers, log *slog.Logger) *phoneTLS {
	conf := peers.ClientConfig()
	// Not checked, on purpose (see above): the stack's fallback check is
	// for providers.
	conf.InsecureSkipVerify, conf.VerifyConnection = true, nil
	return &phoneTLS{log: log, conf: conf, tl: tl, locks: map[netip.AddrPort]*sync.Mutex{}}
}

// start hands connections over until the returned stop is called. addr
// is the tls listener's: the stack records its port as a listener's.
func (c *phoneTLS) start(addr net.Addr) (stop func()) {
	h := newHandoff(addr)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.tl.ServeTLS(h); !errors.Is(err, net.ErrClosed) {
			c.log.Warn("handing TLS connections to phones to the SIP stack", "err", err)
		}
	}()
	c.mu.Lock()
	c.h = h
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		c.h = nil
		c.mu.Unlock()
		_ = h.Close()
		<-done
	}
}

// lock serialises connecting to one address.
func (c *phoneTLS) lock(a netip.AddrPort) func() {
	c.mu.Lock()
	l, ok := c.locks[a]
	if !ok {
		l = &sync.Mutex{}
		c.locks[a] = l
	}
	c.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		c.mu.Lock()
		if c.locks[a] == l && l.TryLock() {
			// Nobody waits for it: forget it, so that the table holds
			// only addresses being connected to.
			delete(c.locks, a)
			l.Unlock()
		}
		c.mu.Unlock()
	}
}

// connect makes sure the stack has a TLS connection to the phone at dest,
// opening one within ctx when it has none.
func (c *phoneTLS) connect(ctx context.Context, dest netip.AddrPort) error {
	c.mu.Lock()
	h := c.h
	c.mu.Unlock()
	if h == nil {
		return errors.New("TLS to a phone: the PBX is not running")
	}
	defer c.lock(dest)()
	pool := c.tl.Pool("tls")
	if pool == nil {
		return errors.New("TLS to a phone: the SIP stack has no TLS transport")
	}
	if have := pool.Get(dest.String()); have != nil {
		_, _ = have.TryClose() // Get counted a reference
		return nil
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", dest.String())
	if err != nil {
		return fmt.Errorf("connecting to the phone at %s: %w", dest, err)
	}
	conn := tls.Client(raw, c.conf)
	if err := conn.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return fmt.Errorf("TLS handshake with the phone at %s: %w", dest, err)
	}
	if cs := conn.ConnectionState(); len(cs.PeerCertificates) > 0 {
		c.log.Debug("TLS to a phone: its certificate is not checked", "phone", dest.String(),
			"subject", cs.PeerCertificates[0].Subject.String(), "sha256", tlscert.Fingerprint(cs.PeerCertificates[0].Raw))
	}
	if err := h.give(ctx, conn); err != nil {
		_ = conn.Close()
		return fmt.Errorf("handing the TLS connection to the phone at %s over: %w", dest, err)
	}
	return nil
}

// handoff is a net.Listener whose Accept returns the connections given to
// it, so that the SIP stack serves connections the PBX opened itself.
type handoff struct {
	addr  net.Addr
	conns chan given
	done  chan struct{}
	once  sync.Once
	// taken is closed when the stack asks for the next connection, that
	// is once it has taken in the last one (only Accept uses it).
	taken chan struct{}
}

type given struct {
	c     net.Conn
	taken chan struct{}
}

func newHandoff(addr net.Addr) *handoff {
	return &handoff{addr: addr, conns: make(chan given), done: make(chan struct{})}
}

// give hands c to the stack and returns once the stack has taken it in
// (its pool holds it).
func (h *handoff) give(ctx context.Context, c net.Conn) error {
	g := given{c: c, taken: make(chan struct{})}
	select {
	case h.conns <- g:
	case <-h.done:
		return net.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-g.taken:
	case <-h.done: // the stack owns it now
	case <-ctx.Done():
	}
	return nil
}

// Accept is called by one goroutine, the stack's.
func (h *handoff) Accept() (net.Conn, error) {
	if h.taken != nil {
		close(h.taken)
		h.taken = nil
	}
	select {
	case g := <-h.conns:
		h.taken = g.taken
		return g.c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

func (h *handoff) Close() error {
	h.once.Do(func() { close(h.done) })
	return nil
}

func (h *handoff) Addr() net.Addr { return h.addr }
