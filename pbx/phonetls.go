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

	"github.com/twinpbx/twinpbx/pbx/handoff"
	"github.com/twinpbx/twinpbx/pbx/tlscert"
)

// Connections over TLS to phones. A phone registered over TLS is called
// over its own connection while it is open; when it is gone (after a
// failover, or closed by the phone) calls and the mailbox send to the
// phone's Contact over a new connection (package phoneflow), which this
// opens: the SIP
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
	h     *handoff.Listener // nil while not running
	locks map[netip.AddrPort]*addrLock
}

func newPhoneTLS(tl *sip.TransportLayer, peers *tlscert.Peers, log *slog.Logger) *phoneTLS {
	conf := peers.ClientConfig()
	// Not checked, on purpose (see above): the stack's fallback check is
	// for providers.
	conf.InsecureSkipVerify, conf.VerifyConnection = true, nil
	return &phoneTLS{log: log, conf: conf, tl: tl, locks: map[netip.AddrPort]*addrLock{}}
}

// start hands connections over until the returned stop is called. addr
// is the tls listener's: the stack records its port as a listener's.
func (c *phoneTLS) start(addr net.Addr) (stop func()) {
	h := handoff.New(addr)
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

// addrLock is the lock of one address being connected to; users counts
// those holding or waiting for it (under phoneTLS.mu).
type addrLock struct {
	sync.Mutex
	users int
}

// lock serialises connecting to one address. The table holds only
// addresses being connected to: the last user out forgets its lock.
func (c *phoneTLS) lock(a netip.AddrPort) func() {
	c.mu.Lock()
	l := c.locks[a]
	if l == nil {
		l = &addrLock{}
		c.locks[a] = l
	}
	l.users++
	c.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		c.mu.Lock()
		if l.users--; l.users == 0 {
			delete(c.locks, a)
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
	if err := h.Give(ctx, conn); err != nil {
		_ = conn.Close()
		return fmt.Errorf("handing the TLS connection to the phone at %s over: %w", dest, err)
	}
	return nil
}
