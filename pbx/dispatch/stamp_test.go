package dispatch

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// stampReceives asks the kernel to stamp each datagram conn receives
// with the time it was queued (SO_TIMESTAMPNS). On loopback a datagram
// is queued inside the sender's sendto, so the stamps of two sockets
// order the sends that reached them, however late their readers wake.
func stampReceives(t *testing.T, conn *net.UDPConn) {
	t.Helper()
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	}); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatalf("SO_TIMESTAMPNS: %v", serr)
	}
}

// awaitQueueStamps waits until the kernel stamps datagrams when they are
// queued: it turns that on a moment after the first socket asks, and
// until then stamps a datagram when it is read. conn (stamping, with no
// other reader) sends itself a datagram and reads it 20 ms later: the
// stamp must be the earlier time.
func awaitQueueStamps(t *testing.T, conn *net.UDPConn) {
	t.Helper()
	self := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	buf := make([]byte, 64)
	for start := time.Now(); ; {
		if _, err := conn.WriteToUDPAddrPort([]byte("stamp"), self); err != nil {
			t.Fatal(err)
		}
		sent := time.Now()
		time.Sleep(20 * time.Millisecond)
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		_, _, at, err := readStamped(conn, buf)
		_ = conn.SetReadDeadline(time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		// Stamped when queued, inside the send: no later than sent. A
		// stamp at the read is 20 ms after it at least, however late
		// this goroutine runs.
		if !at.IsZero() && at.Before(sent.Add(10*time.Millisecond)) {
			return
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("the kernel does not stamp datagrams when queued (last stamp %v)", at)
		}
	}
}

// readStamped reads one datagram and the kernel's stamp of it (zero when
// the socket does not stamp).
func readStamped(conn *net.UDPConn, buf []byte) (int, netip.AddrPort, time.Time, error) {
	var oob [64]byte
	n, oobn, _, from, err := conn.ReadMsgUDPAddrPort(buf, oob[:])
	if err != nil {
		return 0, from, time.Time{}, err
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return n, from, time.Time{}, nil
	}
	for _, m := range msgs {
		if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			// struct timespec of a 64-bit Linux: seconds, nanoseconds.
			sec := int64(binary.NativeEndian.Uint64(m.Data[0:8]))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:16]))
			return n, from, time.Unix(sec, nsec), nil
		}
	}
	return n, from, time.Time{}, nil
}

// TestTryingBeforeInvite: the dispatcher's 100 Trying leaves before the
// INVITE goes on to the backend. Sent after it, a backend's quick 407
// could overtake the 100 on a busy box, and a caller (sipp among them)
// that gets 100 after the final answer takes it for a new answer and
// gives up the call.
func TestTryingBeforeInvite(t *testing.T) {
	be := newFakeBackend(t)
	be.silent.Store(true)
	stampReceives(t, be.conn)
	_, d := startDispatcher(t, Config{Algorithm: RoundRobin, ProbeInterval: time.Hour, TxTimeout: time.Hour}, be)
	p := newPhone(t)
	stampReceives(t, p.conn)
	awaitQueueStamps(t, p.conn)
	for i := range 20 {
		id := "order-" + string(rune('a'+i))
		p.send(d, p.request(d, &call{id: id}, sip.INVITE, id))
		buf := make([]byte, 65535)
		var tryingAt time.Time
		for tryingAt.IsZero() {
			_ = p.conn.SetReadDeadline(time.Now().Add(phoneWait))
			n, _, at, err := readStamped(p.conn, buf)
			if err != nil {
				t.Fatalf("%s: waiting for 100 Trying: %v", id, err)
			}
			m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
			if res, ok := m.(*sip.Response); err == nil && ok && res.StatusCode == 100 && res.CallID().Value() == id {
				tryingAt = at
			}
		}
		var inviteAt time.Time
		waitFor(t, "the INVITE "+id+" at the backend", func() bool {
			inviteAt = be.stamp("INVITE " + id)
			return !inviteAt.IsZero()
		})
		if tryingAt.IsZero() || inviteAt.IsZero() {
			t.Fatalf("%s: the kernel stamped no datagram (100 at %v, INVITE at %v)", id, tryingAt, inviteAt)
		}
		if tryingAt.After(inviteAt) {
			t.Fatalf("%s: the INVITE reached the backend %v before the caller had its 100 Trying", id, tryingAt.Sub(inviteAt))
		}
	}
}
