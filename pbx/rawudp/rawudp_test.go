package rawudp

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/pbx/sockbuf"
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

func TestTruncatedReported(t *testing.T) {
	sock := listen(t, "udp4", "127.0.0.1")
	c, err := New(sock)
	if err != nil {
		t.Fatal(err)
	}
	peer := listen(t, "udp4", "127.0.0.1")
	for _, tc := range []struct {
		size      int
		truncated bool
	}{{4, false}, {5, true}, {3, false}} {
		if _, err := peer.WriteTo(bytes.Repeat([]byte("x"), tc.size), sock.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, src, truncated, err := c.ReadFromAddrPort(make([]byte, 4))
		if err != nil {
			t.Fatal(err)
		}
		if want := min(tc.size, 4); n != want || truncated != tc.truncated {
			t.Errorf("%d bytes into 4: n=%d truncated=%v, want n=%d truncated=%v", tc.size, n, truncated, want, tc.truncated)
		}
		if src != peer.LocalAddr().(*net.UDPAddr).AddrPort() {
			t.Errorf("source %v, want %v", src, peer.LocalAddr())
		}
	}
}

// TestNoAllocations: the media relay forwards every RTP packet through
// these two calls and allocates nothing per packet.
func TestNoAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items on purpose; allocations are counted without it")
	}
	a, err := New(listen(t, "udp4", "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(listen(t, "udp4", "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	to := b.LocalAddr().(*net.UDPAddr).AddrPort()
	pkt, buf := make([]byte, 172), make([]byte, 1500)
	b.SetReadDeadline(time.Now().Add(time.Minute))
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := a.WriteToAddrPort(pkt, to); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := b.ReadFromAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per packet, want 0", allocs)
	}
}

// TestConcurrentWriters: many goroutines write through one Conn at once
// (the SIP stack answers from many), each datagram arrives whole.
func TestConcurrentWriters(t *testing.T) {
	c, err := New(listen(t, "udp4", "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	sink := listen(t, "udp4", "127.0.0.1")
	sockbuf.Set(sink, sockbuf.SIP)
	const writers, each = 8, 50
	// The sink reads while the writers write: a full receive buffer
	// would drop datagrams, which is UDP, not a fault of the writers.
	got := make(chan error, 1)
	go func() {
		buf := make([]byte, 2000)
		for i := range writers * each {
			sink.SetReadDeadline(time.Now().Add(30 * time.Second))
			n, _, err := sink.ReadFrom(buf)
			if err != nil {
				got <- fmt.Errorf("datagram %d: %w", i, err)
				return
			}
			w := int(buf[0] - 'A')
			if w < 0 || w >= writers || n != 100+w || !bytes.Equal(buf[:n], bytes.Repeat(buf[:1], n)) {
				got <- fmt.Errorf("datagram %d mixed or cut: %d bytes starting %q", i, n, buf[0])
				return
			}
		}
		got <- nil
	}()
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			msg := bytes.Repeat([]byte{byte('A' + w)}, 100+w)
			for range each {
				if _, err := c.WriteTo(msg, sink.LocalAddr()); err != nil {
					errs <- err
					return
				}
				runtime.Gosched()
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// TestUDPConnMethods: the methods named as net.UDPConn's send and receive
// as net.UDPConn's do, so code written for one takes a Conn.
func TestUDPConnMethods(t *testing.T) {
	var _ interface {
		ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error)
		WriteToUDPAddrPort([]byte, netip.AddrPort) (int, error)
	} = (*Conn)(nil)
	a, err := New(listen(t, "udp4", "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	b := listen(t, "udp4", "127.0.0.1")
	if _, err := a.WriteToUDPAddrPort([]byte("ping"), b.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 16)
	n, _, err := b.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("got %q, %v", buf[:n], err)
	}
	if _, err := b.WriteToUDPAddrPort([]byte("pong"), a.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	a.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, src, err := a.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "pong" || src != b.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("got %q from %v, %v", buf[:n], src, err)
	}
}
