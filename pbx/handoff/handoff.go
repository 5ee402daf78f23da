// Package handoff lets the PBX hand connections it opened itself to the
// SIP stack: a Listener whose Accept returns the connections given to it,
// so that the stack (sipgo's ServeTLS or ServeTCP on it) serves them as if
// it had accepted them, keeps them in its pool under the peer's address
// and sends its requests to that peer over them. The PBX opens such
// connections where the stack's own dialling would not do: with a check
// of the server's certificate the stack does not know (a phone's).
package handoff

import (
	"context"
	"net"
	"sync"
)

// Listener is a net.Listener fed by Give. Accept is called by one
// goroutine, the stack's; Give by any number.
type Listener struct {
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

// New returns a Listener that names addr as its address: the stack
// records its port as a listener's, so name the listener of the same
// transport.
func New(addr net.Addr) *Listener {
	return &Listener{addr: addr, conns: make(chan given), done: make(chan struct{})}
}

// Give hands c to the stack and returns once the stack has taken it in
// (asked for the next connection, so its pool holds c). It fails, and c
// stays the caller's, when the Listener is closed or ctx ends before the
// stack took c.
func (l *Listener) Give(ctx context.Context, c net.Conn) error {
	g := given{c: c, taken: make(chan struct{})}
	select {
	case l.conns <- g:
	case <-l.done:
		return net.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-g.taken:
	case <-l.done: // the stack owns it now
	case <-ctx.Done():
	}
	return nil
}

// Accept returns the next connection given, or net.ErrClosed once the
// Listener is closed.
func (l *Listener) Accept() (net.Conn, error) {
	if l.taken != nil {
		close(l.taken)
		l.taken = nil
	}
	select {
	case g := <-l.conns:
		l.taken = g.taken
		return g.c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close makes Accept and Give return net.ErrClosed.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr is the address given to New.
func (l *Listener) Addr() net.Addr { return l.addr }
