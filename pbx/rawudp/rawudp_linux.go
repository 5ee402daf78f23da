package rawudp

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Conn is a net.PacketConn over a *net.UDPConn whose reads and writes use
// raw system calls (see the package comment). Everything else (Close,
// deadlines, LocalAddr, SyscallConn for socket options) is the UDPConn's
// own. Reads and writes may run from any number of goroutines at once.
type Conn struct {
	*net.UDPConn
	rc syscall.RawConn
	v6 bool // an AF_INET6 socket: IPv4 peers are sent to as mapped addresses
}

// New wraps c. It fails when the socket gives no raw access or is of
// neither IP family.
func New(c *net.UDPConn) (*Conn, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("raw access to the UDP socket: %w", err)
	}
	var domain int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil {
		return nil, fmt.Errorf("reading the UDP socket's family: %w", err)
	}
	if serr != nil {
		return nil, fmt.Errorf("reading the UDP socket's family: %w", serr)
	}
	if domain != unix.AF_INET && domain != unix.AF_INET6 {
		return nil, fmt.Errorf("UDP socket of family %d", domain)
	}
	return &Conn{UDPConn: c, rc: rc, v6: domain == unix.AF_INET6}, nil
}

// op is the state of one read or write. RawConn takes a function value;
// a closure made per call would be allocated per packet, so ops and their
// two bound methods are made once and pooled.
type op struct {
	buf   []byte
	sa    unix.RawSockaddrAny
	salen uint32
	n     int // bytes moved; for a read, the datagram's full length
	errno syscall.Errno
	read  func(uintptr) bool
	write func(uintptr) bool
}

var ops = sync.Pool{New: func() any {
	o := new(op)
	o.read, o.write = o.doRead, o.doWrite
	return o
}}

func getOp(b []byte) *op {
	o := ops.Get().(*op)
	o.buf, o.n, o.errno = b, 0, 0
	return o
}

func putOp(o *op) {
	o.buf = nil // keep no caller's buffer alive
	ops.Put(o)
}

// doRead makes one recvfrom; false means nothing is queued, wait in the
// poller. MSG_TRUNC makes the kernel return the datagram's full length.
func (o *op) doRead(fd uintptr) bool {
	o.salen = uint32(unsafe.Sizeof(o.sa))
	return o.call(unix.SYS_RECVFROM, fd, unix.MSG_TRUNC,
		uintptr(unsafe.Pointer(&o.sa)), uintptr(unsafe.Pointer(&o.salen)))
}

// doWrite makes one sendto to o.sa; false means the socket buffer is
// full, wait in the poller.
func (o *op) doWrite(fd uintptr) bool {
	return o.call(unix.SYS_SENDTO, fd, 0, uintptr(unsafe.Pointer(&o.sa)), uintptr(o.salen))
}

// call makes recvfrom or sendto on o.buf (o is pooled on the heap, so the
// addresses passed stay valid) and records its outcome; false on EAGAIN.
func (o *op) call(trap, fd, flags, sa, salen uintptr) bool {
	var p unsafe.Pointer
	if len(o.buf) > 0 {
		p = unsafe.Pointer(&o.buf[0])
	}
	for {
		r, _, e := unix.RawSyscall6(trap, fd, uintptr(p), uintptr(len(o.buf)), flags, sa, salen)
		switch e {
		case 0:
			o.n = int(r)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			o.errno = e
			return true
		}
	}
}

// ReadFromAddrPort reads one datagram into b, waiting in the network
// poller when none is queued. A datagram longer than b is cut to len(b)
// and reported as truncated. IPv4 sources on a dual-stack socket come as
// plain IPv4 addresses. It allocates nothing.
func (c *Conn) ReadFromAddrPort(b []byte) (n int, src netip.AddrPort, truncated bool, err error) {
	o := getOp(b)
	defer putOp(o)
	if err := c.rc.Read(o.read); err != nil {
		return 0, netip.AddrPort{}, false, c.opError("read", err)
	}
	if o.errno != 0 {
		return 0, netip.AddrPort{}, false, c.opError("read", o.errno)
	}
	src, ok := addrPort(&o.sa)
	if !ok {
		return 0, netip.AddrPort{}, false, c.opError("read", fmt.Errorf("datagram from an address of family %d", o.sa.Addr.Family))
	}
	n = o.n
	if n > len(b) {
		n, truncated = len(b), true
	}
	return n, src, truncated, nil
}

// ReadFrom is ReadFromAddrPort for net.PacketConn; like net.UDPConn's,
// it truncates silently.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, src, _, err := c.ReadFromAddrPort(b)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(src), nil
}

// ReadFromUDPAddrPort is ReadFromAddrPort with net.UDPConn's signature
// (truncation silent), so code written for a *net.UDPConn takes a Conn.
func (c *Conn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, src, _, err := c.ReadFromAddrPort(b)
	return n, src, err
}

// WriteToUDPAddrPort is WriteToAddrPort with net.UDPConn's name.
func (c *Conn) WriteToUDPAddrPort(b []byte, dst netip.AddrPort) (int, error) {
	return c.WriteToAddrPort(b, dst)
}

// WriteToAddrPort sends one datagram to dst. A full socket buffer waits
// in the network poller. It allocates nothing.
func (c *Conn) WriteToAddrPort(b []byte, dst netip.AddrPort) (int, error) {
	o := getOp(b)
	defer putOp(o)
	if err := c.sockaddr(o, dst); err != nil {
		return 0, c.opError("write", err)
	}
	if err := c.rc.Write(o.write); err != nil {
		return 0, c.opError("write", err)
	}
	if o.errno != 0 {
		return 0, c.opError("write", o.errno)
	}
	return o.n, nil
}

// WriteTo is WriteToAddrPort for net.PacketConn: addr must be a
// *net.UDPAddr, as for net.UDPConn.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok || ua == nil {
		return 0, c.opError("write", syscall.EINVAL)
	}
	return c.WriteToAddrPort(b, ua.AddrPort())
}

func (c *Conn) opError(op string, err error) error {
	if _, ok := err.(*net.OpError); ok {
		return err
	}
	return &net.OpError{Op: op, Net: "udp", Source: c.LocalAddr(), Err: err}
}

// addrPort decodes the kernel's sockaddr of a received datagram.
func addrPort(sa *unix.RawSockaddrAny) (netip.AddrPort, bool) {
	switch sa.Addr.Family {
	case unix.AF_INET:
		in := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(in.Addr), port(&in.Port)), true
	case unix.AF_INET6:
		in := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		a := netip.AddrFrom16(in.Addr).Unmap()
		if in.Scope_id != 0 && a.Is6() {
			a = a.WithZone(zoneName(in.Scope_id))
		}
		return netip.AddrPortFrom(a, port(&in.Port)), true
	}
	return netip.AddrPort{}, false
}

// sockaddr encodes dst into o for the socket's family: an IPv4 address
// towards an IPv6 socket is sent as an IPv4-mapped one, as the net
// package does.
func (c *Conn) sockaddr(o *op, dst netip.AddrPort) error {
	if !dst.IsValid() {
		return syscall.EINVAL
	}
	a := dst.Addr()
	if !c.v6 {
		a = a.Unmap()
		if !a.Is4() {
			return syscall.EAFNOSUPPORT
		}
		in := (*unix.RawSockaddrInet4)(unsafe.Pointer(&o.sa))
		*in = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		setPort(&in.Port, dst.Port())
		o.salen = uint32(unsafe.Sizeof(*in))
		return nil
	}
	in := (*unix.RawSockaddrInet6)(unsafe.Pointer(&o.sa))
	*in = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
	setPort(&in.Port, dst.Port())
	if z := a.Zone(); z != "" {
		in.Scope_id = zones.index(z)
	}
	o.salen = uint32(unsafe.Sizeof(*in))
	return nil
}

func zoneName(index uint32) string { return zones.name(index) }

// zones caches the names and indexes of the interfaces a link-local
// peer's zone names: asking the kernel (a netlink round trip, with
// allocations) on every datagram would undo what the raw calls save.
// An entry is asked again after zoneTTL, so a renamed or re-created
// interface is seen within that time, as the net package does.
var zones = &zoneCache{byIndex: map[uint32]zoneEntry{}, byName: map[string]zoneEntry{}}

const zoneTTL = time.Minute

type zoneEntry struct {
	name  string
	index uint32
	at    time.Time
}

type zoneCache struct {
	mu      sync.RWMutex
	byIndex map[uint32]zoneEntry
	byName  map[string]zoneEntry
}

// name is the interface name of index (its number when there is none).
func (z *zoneCache) name(index uint32) string {
	z.mu.RLock()
	e, ok := z.byIndex[index]
	z.mu.RUnlock()
	if ok && time.Since(e.at) < zoneTTL {
		return e.name
	}
	ifi, err := net.InterfaceByIndex(int(index))
	if err != nil {
		return fmt.Sprint(index)
	}
	z.put(ifi)
	return ifi.Name
}

// index is the interface index of name (0 when there is none).
func (z *zoneCache) index(name string) uint32 {
	z.mu.RLock()
	e, ok := z.byName[name]
	z.mu.RUnlock()
	if ok && time.Since(e.at) < zoneTTL {
		return e.index
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return 0
	}
	z.put(ifi)
	return uint32(ifi.Index)
}

func (z *zoneCache) put(ifi *net.Interface) {
	e := zoneEntry{name: ifi.Name, index: uint32(ifi.Index), at: time.Now()}
	z.mu.Lock()
	defer z.mu.Unlock()
	if len(z.byIndex) > 1024 { // bounded, whatever a peer's datagrams name
		clear(z.byIndex)
		clear(z.byName)
	}
	z.byIndex[e.index] = e
	z.byName[e.name] = e
}

// The port fields of the kernel's sockaddrs hold the port in network byte
// order whatever the host's.
func port(field *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(field))
	return uint16(b[0])<<8 | uint16(b[1])
}

func setPort(field *uint16, p uint16) {
	b := (*[2]byte)(unsafe.Pointer(field))
	b[0], b[1] = byte(p>>8), byte(p)
}
