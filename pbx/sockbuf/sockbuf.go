// Package sockbuf sizes the kernel buffers of the SIP sockets, which
// sipgo never enlarges: bursts of REGISTERs (every phone re-registering
// after a failover) would otherwise be dropped by the kernel.
package sockbuf

import (
	"net"

	"golang.org/x/sys/unix"
)

// SIP is what a SIP UDP socket asks for each way: room for several
// thousand REGISTERs.
const SIP = 4 << 20

// Set sizes conn's kernel buffers. SetReadBuffer is silently capped at
// net.core.rmem_max (208 KiB on a stock kernel), so where the process may
// (root or CAP_NET_ADMIN) the cap is overridden with SO_RCVBUFFORCE and
// SO_SNDBUFFORCE; elsewhere the capped size is what it gets.
func Set(conn *net.UDPConn, size int) {
	_ = conn.SetReadBuffer(size)
	_ = conn.SetWriteBuffer(size)
	rc, err := conn.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size)
	})
}
