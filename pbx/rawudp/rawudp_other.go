//go:build !linux

package rawudp

import (
	"net"
	"net/netip"
	"syscall"
)

// Conn is, outside Linux, the plain socket with the same methods.
type Conn struct{ *net.UDPConn }

// New wraps c.
func New(c *net.UDPConn) (*Conn, error) { return &Conn{c}, nil }

// ReadFromAddrPort reads one datagram, reporting whether it was cut.
func (c *Conn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, bool, error) {
	n, _, flags, src, err := c.ReadMsgUDPAddrPort(b, nil)
	return n, netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), flags&syscall.MSG_TRUNC != 0, err
}

// WriteToAddrPort sends one datagram to dst.
func (c *Conn) WriteToAddrPort(b []byte, dst netip.AddrPort) (int, error) {
	return c.WriteToUDPAddrPort(b, dst)
}
