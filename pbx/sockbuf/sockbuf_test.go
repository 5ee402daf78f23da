package sockbuf

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSocketBuffersBeyondTheKernelCap: as root, the SIP socket gets the
// buffers it asks for even above net.core.rmem_max/wmem_max.
func TestSocketBuffersBeyondTheKernelCap(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root may exceed the kernel's buffer cap")
	}
	size := 2 * max(sysctl(t, "net/core/rmem_max"), sysctl(t, "net/core/wmem_max"))
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	Set(conn, size)
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for _, opt := range []struct {
		name string
		opt  int
	}{{"SO_RCVBUF", unix.SO_RCVBUF}, {"SO_SNDBUF", unix.SO_SNDBUF}} {
		var got int
		var gerr error
		if err := rc.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, opt.opt) }); err != nil {
			t.Fatal(err)
		}
		if gerr != nil {
			t.Fatal(gerr)
		}
		if got < 2*size { // the kernel doubles what is set, for its overhead
			t.Errorf("%s is %d bytes, asked for %d (so want twice that)", opt.name, got, size)
		}
	}
}

func sysctl(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		t.Skip(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
