package media

import (
	"fmt"
	"net"
	"sync"
)

// Lease is one RTP/RTCP port pair of the relay's range lent to a part of
// the PBX that ends media itself (the mailbox), so that every port the
// PBX puts in SDP lies inside sip.rtp_ports. The holder reads and writes
// RTP on RTP(); the RTCP socket is held so that no one else binds it.
type Lease struct {
	r    *Relay
	p    *pair
	once sync.Once
	err  error
}

// Lease takes the least recently used free pair of the range. The holder
// must Release it, on every path.
func (r *Relay) Lease() (*Lease, error) {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	p, err := r.alloc.take()
	if err != nil {
		return nil, fmt.Errorf("leasing an RTP port: %w", err)
	}
	return &Lease{r: r, p: p}, nil
}

// LeaseAt takes the pair of port exactly, as Lease does any: for a
// mailbox call carried on after a failover, whose caller goes on sending
// to the port the box that died had leased. It fails when port is not an
// RTP port of the range, is held (by a session or a lease) or cannot be
// bound.
func (r *Relay) LeaseAt(port int) (*Lease, error) {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	p, err := r.alloc.takePort(port)
	if err != nil {
		return nil, fmt.Errorf("leasing RTP port %d: %w", port, err)
	}
	return &Lease{r: r, p: p}, nil
}

// RTP is the socket bound to the even port.
func (l *Lease) RTP() *net.UDPConn { return l.p.rtp }

// Port is the RTP port (RTCP is the next one).
func (l *Lease) Port() int { return l.p.port }

// Release closes both sockets and gives the pair back to the range. It
// may be called more than once; only the first call acts.
func (l *Lease) Release() error {
	l.once.Do(func() {
		l.err = l.p.close()
		l.r.alloc.release(l.p.port)
	})
	return l.err
}

// Free is how many pairs of the range are neither in a session nor
// leased.
func (r *Relay) Free() int {
	r.alloc.mu.Lock()
	defer r.alloc.mu.Unlock()
	return len(r.alloc.free)
}
