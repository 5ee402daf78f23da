package media

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/twinpbx/twinpbx/pbx/rawudp"
)

// ErrNoPorts is returned (wrapped) when every port pair of the range is
// taken or cannot be bound.
var ErrNoPorts = errors.New("media: no free RTP port pair")

// pair is one RTP socket on an even port and its RTCP socket on the next,
// each also wrapped for the relay's raw reads and writes.
type pair struct {
	port            int
	rtp, rtcp       *net.UDPConn
	rawRTP, rawRTCP *rawudp.Conn
}

// conn is the socket the relay forwards through.
func (p *pair) conn(rtcp bool) *rawudp.Conn {
	if rtcp {
		return p.rawRTCP
	}
	return p.rawRTP
}

func (p *pair) close() error {
	return errors.Join(p.rtp.Close(), p.rtcp.Close())
}

// socketBuffer is the kernel buffer asked for each direction of a socket:
// a burst after a scheduling hiccup must not be dropped by the kernel.
const socketBuffer = 1 << 20

// bindPair binds RTP on addr:port and RTCP on addr:port+1. It binds
// without checking that addr is present on the box: with
// net.ipv4.ip_nonlocal_bind=1 a standby binds the virtual IP early.
func bindPair(addr netip.Addr, port int) (*pair, error) {
	network := "udp4"
	if addr.Is6() {
		network = "udp6"
	}
	listen := func(p int) (*net.UDPConn, error) {
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, uint16(p))))
		if err != nil {
			return nil, err
		}
		// Best effort: the kernel caps the size at net.core.rmem_max.
		_ = c.SetReadBuffer(socketBuffer)
		_ = c.SetWriteBuffer(socketBuffer)
		return c, nil
	}
	rtp, err := listen(port)
	if err != nil {
		return nil, fmt.Errorf("binding RTP port %d: %w", port, err)
	}
	rtcp, err := listen(port + 1)
	if err != nil {
		rtp.Close()
		return nil, fmt.Errorf("binding RTCP port %d: %w", port+1, err)
	}
	rawRTP, err := rawudp.New(rtp)
	if err == nil {
		var rawRTCP *rawudp.Conn
		if rawRTCP, err = rawudp.New(rtcp); err == nil {
			return &pair{port: port, rtp: rtp, rtcp: rtcp, rawRTP: rawRTP, rawRTCP: rawRTCP}, nil
		}
	}
	rtp.Close()
	rtcp.Close()
	return nil, fmt.Errorf("RTP port pair %d: %w", port, err)
}

// allocator hands out the even ports of [low, high] (each with the odd
// port above it). Free ports wait in a queue: a released port goes to the
// back, so the port used least recently comes out first and a late packet
// of an ended call is unlikely to reach the next one.
type allocator struct {
	bind func(port int) (*pair, error)

	mu   sync.Mutex
	free []int        // front is handed out next
	used map[int]bool // ports held by sessions
}

func newAllocator(low, high int, bind func(int) (*pair, error)) *allocator {
	a := &allocator{bind: bind, used: map[int]bool{}}
	for p := low + low%2; p+1 <= high; p += 2 {
		a.free = append(a.free, p)
	}
	return a
}

// pairs returns how many pairs the range holds.
func (a *allocator) pairs() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.free) + len(a.used)
}

// take binds the least recently used free pair. A pair that cannot be
// bound (another program holds it) is skipped and moved to the back.
func (a *allocator) take() (*pair, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var lastErr error
	for range len(a.free) {
		port := a.free[0]
		a.free = a.free[1:]
		p, err := a.bind(port)
		if err == nil {
			a.used[port] = true
			return p, nil
		}
		lastErr = err
		a.free = append(a.free, port)
	}
	if lastErr != nil {
		return nil, fmt.Errorf("%w (%d pairs in use, the others cannot be bound: %w)", ErrNoPorts, len(a.used), lastErr)
	}
	return nil, fmt.Errorf("%w (all %d pairs in use)", ErrNoPorts, len(a.used))
}

// takePort binds exactly port, for a session restored after a failover.
func (a *allocator) takePort(port int) (*pair, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	i := slices.Index(a.free, port)
	if i < 0 {
		if a.used[port] {
			return nil, fmt.Errorf("media: port %d is in use by another session", port)
		}
		return nil, fmt.Errorf("media: port %d is not an RTP port of the relay's range", port)
	}
	p, err := a.bind(port)
	if err != nil {
		return nil, err
	}
	a.free = slices.Delete(a.free, i, i+1)
	a.used[port] = true
	return p, nil
}

// release returns port to the back of the queue.
func (a *allocator) release(port int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.used[port] {
		return
	}
	delete(a.used, port)
	a.free = append(a.free, port)
}
