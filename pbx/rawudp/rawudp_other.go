//go:build !linux

package rawudp

import (
	"errors"
	"net"
)

// Conn is only available on Linux.
type Conn struct{ *net.UDPConn }

// New fails: raw UDP access is written for Linux only.
func New(c *net.UDPConn) (*Conn, error) {
	return nil, errors.New("raw UDP access is only written for Linux")
}
