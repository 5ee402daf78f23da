package rawudp

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Conn is a net.PacketConn over a *net.UDPConn whose ReadFrom and WriteTo
// use raw system calls (see the package comment). Everything else
// (Close, deadlines, LocalAddr, SyscallConn for socket options) is the
// UDPConn's own.
type Conn struct {
	*net.UDPConn
	rc syscall.RawConn
	v6 bool // an AF_INET6 socket (IPv4 peers then appear as mapped addresses)
}

// New wraps c. It fails only when the socket gives no RawConn.
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

// ReadFrom reads one datagram, waiting in the network poller when none
// is queued. As with net.UDPConn, a datagram longer than b is truncated.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	var (
		n     int
		sa    unix.RawSockaddrAny
		errno syscall.Errno
	)
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			salen := uint32(unsafe.Sizeof(sa))
			r, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(p), uintptr(len(b)), 0,
				uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&salen)))
			switch e {
			case 0:
				n, errno = int(r), 0
				return true
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // wait in the poller
			default:
				errno = e
				return true
			}
		}
	})
	if err != nil {
		return 0, nil, c.opError("read", err)
	}
	if errno != 0 {
		return 0, nil, c.opError("read", errno)
	}
	ap, ok := addrPort(&sa)
	if !ok {
		return 0, nil, c.opError("read", fmt.Errorf("datagram from an address of family %d", sa.Addr.Family))
	}
	return n, net.UDPAddrFromAddrPort(ap), nil
}

// WriteTo sends one datagram to addr, which must be a *net.UDPAddr (as
// for net.UDPConn). A full socket buffer waits in the network poller.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok || ua == nil {
		return 0, c.opError("write", syscall.EINVAL)
	}
	sa, salen, err := c.sockaddr(ua.AddrPort())
	if err != nil {
		return 0, c.opError("write", err)
	}
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	var (
		n     int
		errno syscall.Errno
	)
	err = c.rc.Write(func(fd uintptr) bool {
		for {
			r, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(p), uintptr(len(b)), 0,
				uintptr(sa), uintptr(salen))
			switch e {
			case 0:
				n, errno = int(r), 0
				return true
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			default:
				errno = e
				return true
			}
		}
	})
	if err != nil {
		return 0, c.opError("write", err)
	}
	if errno != 0 {
		return 0, c.opError("write", errno)
	}
	return n, nil
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

// sockaddr encodes a destination for the socket's family: an IPv4
// address towards an IPv6 socket is sent as an IPv4-mapped one, as the
// net package does.
func (c *Conn) sockaddr(ap netip.AddrPort) (unsafe.Pointer, uint32, error) {
	if !ap.IsValid() {
		return nil, 0, syscall.EINVAL
	}
	a := ap.Addr()
	if !c.v6 {
		a = a.Unmap()
		if !a.Is4() {
			return nil, 0, syscall.EAFNOSUPPORT
		}
		sa := &unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		setPort(&sa.Port, ap.Port())
		return unsafe.Pointer(sa), uint32(unsafe.Sizeof(*sa)), nil
	}
	sa := &unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
	setPort(&sa.Port, ap.Port())
	if z := a.Zone(); z != "" {
		if ifi, err := net.InterfaceByName(z); err == nil {
			sa.Scope_id = uint32(ifi.Index)
		}
	}
	return unsafe.Pointer(sa), uint32(unsafe.Sizeof(*sa)), nil
}

func zoneName(index uint32) string {
	if ifi, err := net.InterfaceByIndex(int(index)); err == nil {
		return ifi.Name
	}
	return fmt.Sprint(index)
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
