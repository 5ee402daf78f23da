package dispatch

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestStreamBadPeersLeakNothing: peers that send garbage, trickle a
// message, send nothing, or send requests without ever reading the
// answers each get their connection closed by the dispatcher, and once
// they are all gone the dispatchers hold no goroutine more than before
// they came. The peer that never reads is closed for filling its queue,
// not for idling: its dispatcher's idle time is longer than the test.
func TestStreamBadPeersLeakNothing(t *testing.T) {
	start := func(idle time.Duration) (*Dispatcher, string) {
		t.Helper()
		cfg := streamConfig()
		cfg.IdleTimeout = idle
		d, addrs := startDispatcherAll(t, cfg, newFakeBackend(t))
		d.streams.msgTime.Store(int64(500 * time.Millisecond))
		// Every listener serves (its workers started) before the count.
		u, err := net.Dial("udp", addrs[0])
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		ph := &tcpPhone{t: t, conn: u, addr: u.LocalAddr().(*net.UDPAddr).AddrPort()}
		if _, err := u.Write([]byte(strings.ReplaceAll(ph.request("OPTIONS", "sip:"+addrs[0], "warm", 1, "", nil), "/TCP", "/UDP"))); err != nil {
			t.Fatal(err)
		}
		_ = u.SetReadDeadline(time.Now().Add(phoneWait))
		if _, err := u.Read(make([]byte, 4096)); err != nil {
			t.Fatalf("OPTIONS over UDP: %v", err)
		}
		return d, strings.TrimPrefix(addrs[1], "tcp:")
	}
	long, longAt := start(time.Hour)
	short, shortAt := start(500 * time.Millisecond)
	before := runtime.NumGoroutine()

	// Each peer is a bare connection: the test reads nothing on it but
	// the end, so the peer that never reads really reads nothing.
	dial := func(at string) *net.TCPConn {
		t.Helper()
		c, err := net.DialTimeout("tcp", at, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c.(*net.TCPConn)
	}
	garbage, trickle, deaf, silent := dial(longAt), dial(longAt), dial(longAt), dial(shortAt)
	if _, err := garbage.Write([]byte("\x16\x03\x01 not SIP at all\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := trickle.Write([]byte(framedInvite[:25])); err != nil {
		t.Fatal(err)
	}
	// The deaf peer sends OPTIONS for the dispatcher until the test
	// ends it, and reads none of the answers.
	_ = deaf.SetReadBuffer(1024)
	ph := &tcpPhone{t: t, conn: deaf, addr: deaf.LocalAddr().(*net.TCPAddr).AddrPort()}
	opts := []byte(strings.Repeat(ph.request("OPTIONS", "sip:"+longAt, "deaf", 1, "", nil), 64))
	flood := make(chan struct{})
	go func() {
		defer close(flood)
		for {
			if _, err := deaf.Write(opts); err != nil {
				return
			}
		}
	}()

	for _, p := range []struct {
		name string
		c    *net.TCPConn
	}{{"garbage", garbage}, {"trickle", trickle}, {"silent", silent}} {
		_ = p.c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := p.c.Read(make([]byte, 16)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s peer: read %v, want the connection closed", p.name, err)
		}
	}
	// Closed, the deaf peer's connection may still linger in the
	// kernel (its unread answers) and take its writes a while: the
	// dispatcher's table tells.
	waitFor(t, "every connection forgotten", func() bool { return long.streams.count()+short.streams.count() == 0 })
	for _, c := range []net.Conn{garbage, trickle, deaf, silent} {
		_ = c.Close()
	}
	<-flood
	waitFor(t, "the dispatchers' goroutines for them ended", func() bool { return runtime.NumGoroutine() <= before })
}

// slowCloser is a connection whose Close waits until release is closed,
// as closing a TLS connection does for a peer that reads nothing.
type slowCloser struct {
	net.Conn
	closing, release chan struct{}
	freed            sync.Once
}

// newSlowCloser is a slowCloser released when the test ends at the
// latest.
func newSlowCloser(t *testing.T) *slowCloser {
	c := &slowCloser{closing: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(c.free)
	return c
}

func (c *slowCloser) Close() error {
	close(c.closing)
	<-c.release
	return nil
}

// free lets Close return.
func (c *slowCloser) free() { c.freed.Do(func() { close(c.release) }) }

// TestStreamReplacedClosedOutsideLock: a connection from the address and
// port of one already open replaces it; closing the old one, however
// long it takes, does not hold up the table.
func TestStreamReplacedClosedOutsideLock(t *testing.T) {
	tab := newStreamTable(10, 10, time.Minute)
	remote := netip.MustParseAddrPort("192.0.2.1:4000")
	slow := newSlowCloser(t)
	old := &streamConn{c: slow, remote: remote, id: "old", done: make(chan struct{})}
	if err := tab.add(old); err != nil {
		t.Fatal(err)
	}
	added := make(chan error, 1)
	fresh := &streamConn{remote: remote, id: "new", done: make(chan struct{})}
	go func() { added <- tab.add(fresh) }()
	<-slow.closing
	found := make(chan *streamConn, 1)
	go func() { found <- tab.byRemote(remote) }()
	select {
	case c := <-found:
		if c != fresh {
			t.Errorf("the table names %v, want the new connection", c)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the table is held while the old connection closes")
	}
	slow.free()
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	if tab.byToken("old") != nil || tab.count() != 1 {
		t.Errorf("after the replacement: old token known %v, %d connections", tab.byToken("old") != nil, tab.count())
	}
}

// TestPoolResetClosesOutsideLock: closing a backend's connections when
// its address changes, however long that takes, does not hold up the
// requests that look for an open one.
func TestPoolResetClosesOutsideLock(t *testing.T) {
	slow := newSlowCloser(t)
	p := &backendPool{slots: make([]poolSlot, 1)}
	p.slots[0].cur = &poolConn{&streamConn{c: slow, id: "pc", done: make(chan struct{})}}
	reset := make(chan struct{})
	go func() { defer close(reset); p.reset() }()
	<-slow.closing
	looked := make(chan *sock, 1)
	go func() { looked <- p.sock("call") }()
	select {
	case s := <-looked:
		if s != nil {
			t.Errorf("a closing connection is offered: %v", s)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the pool is held while its connection closes")
	}
	slow.free()
	<-reset
}

// TestStreamFullQueueAborts: a connection whose queue is full is
// aborted, not closed politely: the peer sees a reset (the kernel drops
// what was unsent instead of holding it for a peer that reads nothing),
// and no TLS goodbye is written on the sender's goroutine.
func TestStreamFullQueueAborts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	ours, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := &streamConn{c: ours, out: make(chan []byte, 1), done: make(chan struct{})}
	if err := c.send([]byte("first")); err != nil {
		t.Fatal(err)
	}
	if err := c.send([]byte("second")); err == nil {
		t.Fatal("a send to a full queue succeeded")
	}
	select {
	case <-c.done:
	default:
		t.Fatal("the connection is not closed after its queue filled")
	}
	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = peer.Read(make([]byte, 16))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the peer read %v, want a reset", err)
	}
}
