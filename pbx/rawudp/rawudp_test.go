package rawudp

import (
	"bytes"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

func listen(t *testing.T, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, &net.UDPAddr{IP: net.ParseIP(addr)})
	if err != nil {
		t.Skipf("no %s socket on %s here: %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestExchange sends datagrams both ways between a Conn and a plain
// socket, for each family and for IPv4 peers of a dual-stack socket, and
// checks payloads and the addresses each side reports.
func TestExchange(t *testing.T) {
	tests := []struct {
		name              string
		network, bind     string // the raw socket
		peerNet, peerBind string // the plain peer
	}{
		{"ipv4", "udp4", "127.0.0.1", "udp4", "127.0.0.1"},
		{"ipv6", "udp6", "::1", "udp6", "::1"},
		{"ipv4 peer of a dual-stack socket", "udp", "::", "udp4", "127.0.0.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sock := listen(t, tc.network, tc.bind)
			c, err := New(sock)
			if err != nil {
				t.Fatal(err)
			}
			peer := listen(t, tc.peerNet, tc.peerBind)
			port := sock.LocalAddr().(*net.UDPAddr).Port
			to := &net.UDPAddr{IP: net.ParseIP(tc.peerBind), Port: port}
			for i, size := range []int{1, 512, 1400, 8000} {
				msg := bytes.Repeat([]byte{byte('a' + i)}, size)
				if _, err := peer.WriteTo(msg, to); err != nil {
					t.Fatal(err)
				}
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 9000)
				n, from, err := c.ReadFrom(buf)
				if err != nil {
					t.Fatalf("read %d: %v", i, err)
				}
				if !bytes.Equal(buf[:n], msg) {
					t.Fatalf("read %d: %d bytes, want %d", i, n, size)
				}
				if got, want := from.String(), peer.LocalAddr().String(); got != want {
					t.Fatalf("source %s, want %s", got, want)
				}
				reply := append([]byte("re:"), msg...)
				if n, err := c.WriteTo(reply, from); err != nil || n != len(reply) {
					t.Fatalf("write %d: %d, %v", i, n, err)
				}
				peer.SetReadDeadline(time.Now().Add(10 * time.Second))
				n, back, err := peer.ReadFrom(buf)
				if err != nil {
					t.Fatalf("reply %d: %v", i, err)
				}
				if !bytes.Equal(buf[:n], reply) {
					t.Fatalf("reply %d: %d bytes, want %d", i, n, len(reply))
				}
				if back.(*net.UDPAddr).Port != port {
					t.Fatalf("reply from port %d, want %d", back.(*net.UDPAddr).Port, port)
				}
			}
		})
	}
}

func TestTruncatesLikeNet(t *testing.T) {
	sock := listen(t, "udp4", "127.0.0.1")
	c, err := New(sock)
	if err != nil {
		t.Fatal(err)
	}
	peer := listen(t, "udp4", "127.0.0.1")
	if _, err := peer.WriteTo([]byte("0123456789"), sock.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4)
	n, _, err := c.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "0123" {
		t.Fatalf("got %q, %v; want the first 4 bytes", buf[:n], err)
	}
}

func TestDeadlineAndClose(t *testing.T) {
	sock := listen(t, "udp4", "127.0.0.1")
	c, err := New(sock)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, _, err = c.ReadFrom(make([]byte, 10))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	c.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, _, err := c.ReadFrom(make([]byte, 10))
		done <- err
	}()
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read on a closed socket: %v, want net.ErrClosed", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not end a waiting read")
	}
	if _, err := c.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a closed socket: %v, want net.ErrClosed", err)
	}
}

func TestWriteToBadAddresses(t *testing.T) {
	sock := listen(t, "udp4", "127.0.0.1")
	c, err := New(sock)
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range []net.Addr{
		nil,
		&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060},
		&net.UDPAddr{IP: net.ParseIP("::1"), Port: 5060}, // IPv6 from an IPv4 socket
		&net.UDPAddr{},
	} {
		if _, err := c.WriteTo([]byte("x"), to); err == nil {
			t.Errorf("write to %v: no error", to)
		}
	}
}
