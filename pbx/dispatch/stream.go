package dispatch

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// SIP over TCP and TLS towards phones. Each accepted connection is one
// flow: messages arriving on it are handled as datagrams from its remote
// address are, and whatever the dispatcher sends to that address over TCP
// or TLS (a response through the phone's Via, a request through a flow
// token or a registered Contact, see flow.go) is written to it. The
// backends are still spoken to over UDP.
//
// The table is bounded: at most MaxConns connections, MaxConnsPerSource
// from one IP address, each closed after IdleTimeout without a complete
// message or keep-alive ping (a connection that carries a registration
// stays open until the registration expires), each message at most
// maxStreamMessage bytes.

// Defaults of the stream limits.
const (
	DefaultMaxConns          = 4096
	DefaultMaxConnsPerSource = 128
	DefaultIdleTimeout       = 2 * time.Minute
	// maxStreamMessage bounds one message on a connection: a longer
	// one closes it (there is no boundary to resynchronise on).
	maxStreamMessage = 65535
	// streamQueue is how many messages wait to be written to one
	// connection; a phone that reads nothing gets its connection closed
	// when they are all taken, instead of holding a worker.
	streamQueue        = 64
	streamWriteTimeout = 10 * time.Second
	tlsHandshakeTime   = 10 * time.Second
	// messageTime bounds how long one message may take to arrive once
	// its first byte has: a peer trickling bytes holds its buffer (up to
	// maxStreamMessage) no longer than that.
	messageTime = 10 * time.Second
	// registeredGrace keeps a connection open a little past the expiry
	// of the registration it carries, for the refresh that is late.
	registeredGrace = 32 * time.Second
)

// StreamListener is a TCP or TLS listener for phones.
type StreamListener struct {
	Addr netip.AddrPort
	// TLS, when set, makes it a TLS listener with this server config.
	TLS *tls.Config
}

// streamTable holds the open connections of every stream listener.
type streamTable struct {
	max, perSource int
	idle           time.Duration
	msgTime        atomic.Int64 // messageTime; tests shorten it

	mu       sync.Mutex
	byAddr   map[netip.AddrPort]*streamConn
	byID     map[string]*streamConn
	perIP    map[netip.Addr]int
	aliases  map[string]*alias // registered Contact key -> its flow (flow.go)
	refusals atomic.Uint64     // connections refused by the limits
}

func newStreamTable(max, perSource int, idle time.Duration) *streamTable {
	t := &streamTable{max: max, perSource: perSource, idle: idle,
		byAddr: map[netip.AddrPort]*streamConn{}, byID: map[string]*streamConn{},
		perIP: map[netip.Addr]int{}, aliases: map[string]*alias{}}
	t.msgTime.Store(int64(messageTime))
	return t
}

// streamConn is one accepted connection.
type streamConn struct {
	// c is the connection; on one the dispatcher is opening to a phone
	// (dial.go) it is set, under cmu, before ready closes.
	c      net.Conn
	cmu    sync.Mutex
	ready  chan struct{} // nil: accepted, open from the start
	remote netip.AddrPort
	id     string // the flow token naming it in Record-Route
	sock   *sock  // its listener
	out    chan []byte
	done   chan struct{}
	once   sync.Once
	// lastMsg is when the last complete message arrived, registered until
	// when a registration it carries lasts (unix nanoseconds).
	lastMsg, registered atomic.Int64
	// offered are the Contacts of REGISTERs that came on it and were not
	// answered yet (flow.go); bound the aliases it has.
	// wildcard are the AORs of those with "Contact: *".
	mu       sync.Mutex
	offered  []string
	wildcard []string
	bound    []string
}

// add registers c unless a limit refuses it.
func (t *streamTable) add(c *streamConn) error {
	// A connection replaced is closed once the lock is released:
	// closing a TLS connection writes its close_notify, which waits
	// (up to 5 s) for a peer that reads nothing.
	var old *streamConn
	defer func() {
		if old != nil {
			old.close()
		}
	}()
	t.mu.Lock()
	defer t.mu.Unlock()
	ip := c.remote.Addr()
	switch {
	case len(t.byAddr) >= t.max:
		t.refusals.Add(1)
		return fmt.Errorf("%d connections open, the most allowed", len(t.byAddr))
	case t.perIP[ip] >= t.perSource:
		t.refusals.Add(1)
		return fmt.Errorf("%d connections open from %s, the most allowed from one address", t.perIP[ip], ip)
	}
	if old = t.byAddr[c.remote]; old != nil {
		// The same address and port again (a listener on another
		// address): the newer connection is the one to answer on.
		t.removeLocked(old)
	}
	t.byAddr[c.remote] = c
	t.byID[c.id] = c
	t.perIP[ip]++
	return nil
}

// remove forgets c and the registrations it carried.
func (t *streamTable) remove(c *streamConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.removeLocked(c)
}

func (t *streamTable) removeLocked(c *streamConn) {
	if t.byID[c.id] != c {
		return
	}
	delete(t.byID, c.id)
	if t.byAddr[c.remote] == c {
		delete(t.byAddr, c.remote)
	}
	ip := c.remote.Addr()
	if t.perIP[ip]--; t.perIP[ip] <= 0 {
		delete(t.perIP, ip)
	}
	c.mu.Lock()
	for _, k := range c.bound {
		if a := t.aliases[k]; a != nil && a.conn == c {
			delete(t.aliases, k)
		}
	}
	c.bound = nil
	c.mu.Unlock()
}

// byRemote returns the connection from addr, or nil.
func (t *streamTable) byRemote(addr netip.AddrPort) *streamConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byAddr[addr]
}

// byToken returns the connection a flow token names, or nil.
func (t *streamTable) byToken(id string) *streamConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byID[id]
}

// count is the number of open connections.
func (t *streamTable) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byAddr)
}

// send queues b for c; a full queue closes c.
func (c *streamConn) send(b []byte) error {
	select {
	case <-c.done:
		return net.ErrClosed
	default:
	}
	select {
	case c.out <- b:
		return nil
	default:
		c.abort()
		return errors.New("the connection does not take what is written to it: closed")
	}
}

// abort closes c without a goodbye, for a peer that does not read: a
// TLS close would write its close_notify and wait up to 5 s for a peer
// that takes nothing, here on the goroutine of whoever sent (a UDP
// reader, say); and the kernel drops what is still unsent (linger 0)
// instead of holding it for a peer that will not read it.
func (c *streamConn) abort() {
	c.cmu.Lock()
	raw := c.c
	if tc, ok := raw.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	if tcp, ok := raw.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	if raw != nil {
		_ = raw.Close()
	}
	c.cmu.Unlock()
	c.close()
}

func (c *streamConn) close() {
	c.once.Do(func() {
		close(c.done)
		c.cmu.Lock()
		if c.c != nil {
			_ = c.c.Close()
		}
		c.cmu.Unlock()
	})
}

// writer writes the queued messages until c closes (on a connection the
// dispatcher is opening, once it is open).
func (c *streamConn) writer() {
	if c.ready != nil {
		select {
		case <-c.done:
			return
		case <-c.ready:
		}
	}
	for {
		select {
		case <-c.done:
			return
		case b := <-c.out:
			_ = c.c.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
			if _, err := c.c.Write(b); err != nil {
				c.close()
				return
			}
		}
	}
}

// deadline is when c is closed if nothing more arrives.
func (c *streamConn) deadline(idle time.Duration) time.Time {
	return time.Unix(0, max(c.lastMsg.Load()+int64(idle), c.registered.Load()))
}

// streamOut is the packetConn of a stream listener's sock: writing to an
// address writes to the connection from there.
type streamOut struct {
	ln  net.Listener
	tab *streamTable
}

func (o *streamOut) ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, net.ErrClosed
}

func (o *streamOut) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	c := o.tab.byRemote(addr)
	if c == nil {
		return 0, fmt.Errorf("no connection from %s", addr)
	}
	if err := c.send(bytes.Clone(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (o *streamOut) LocalAddr() net.Addr { return o.ln.Addr() }
func (o *streamOut) Close() error        { return o.ln.Close() }

// listenStream opens a TCP or TLS listener.
func (d *Dispatcher) listenStream(l StreamListener) (*sock, error) {
	tr := "tcp"
	if l.TLS != nil {
		tr = "tls"
	}
	ln, err := net.Listen("tcp", l.Addr.String())
	if err != nil {
		return nil, fmt.Errorf("dispatcher listening on %s:%s: %w", tr, l.Addr, err)
	}
	la := ln.Addr().(*net.TCPAddr).AddrPort()
	host, err := d.advertised(la)
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("dispatcher listening on %s:%s: %w", tr, l.Addr, err)
	}
	s := &sock{conn: &streamOut{ln: ln, tab: d.streams}, local: la.Addr().Unmap(), host: host, port: int(la.Port()),
		transport: "TCP", streams: d.streams, tlsConf: l.TLS}
	if l.TLS != nil {
		s.transport = "TLS"
	}
	s.via = "SIP/2.0/" + s.transport + " " + s.host + ":" + strconv.Itoa(s.port)
	return s, nil
}

// serveStream accepts connections on s until its listener closes.
func (d *Dispatcher) serveStream(ctx context.Context, s *sock) error {
	ln := s.conn.(*streamOut).ln
	var wg sync.WaitGroup
	defer wg.Wait()
	backoff := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			// Out of descriptors or the like: wait a little, as
			// net/http does, rather than spin.
			d.netLog.Warn("dispatcher could not accept a connection", "listener", ln.Addr().String(), "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		wg.Go(func() { d.serveConn(ctx, s, c) })
	}
}

// newFlowID is a fresh, unguessable flow token.
func newFlowID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// serveConn reads one connection's messages until it closes, idles out or
// breaks the framing.
func (d *Dispatcher) serveConn(ctx context.Context, s *sock, raw net.Conn) {
	ra, ok := raw.RemoteAddr().(*net.TCPAddr)
	if !ok {
		_ = raw.Close()
		return
	}
	remote := netip.AddrPortFrom(ra.AddrPort().Addr().Unmap(), ra.AddrPort().Port())
	var tc *tls.Conn
	if s.tlsConf != nil {
		tc = tls.Server(raw, s.tlsConf)
		raw = tc
	}
	c := &streamConn{c: raw, remote: remote, id: newFlowID(), sock: s, out: make(chan []byte, streamQueue), done: make(chan struct{})}
	c.lastMsg.Store(time.Now().UnixNano())
	if err := d.streams.add(c); err != nil {
		d.netLog.Warn("dispatcher refused a connection", "from", remote.String(), "err", err)
		_ = raw.Close()
		return
	}
	defer func() {
		d.streams.remove(c)
		c.close()
	}()
	stop := context.AfterFunc(ctx, c.close)
	defer stop()
	if tc != nil {
		hctx, cancel := context.WithTimeout(ctx, tlsHandshakeTime)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			d.netLog.Warn("dispatcher: TLS handshake failed", "from", remote.String(), "err", err)
			return
		}
	}
	go c.writer()
	d.readStream(s, c)
}

// readStream frames the messages of c and hands each to the proxy.
func (d *Dispatcher) readStream(s *sock, c *streamConn) {
	fr := newFramer()
	defer fr.close()
	buf := make([]byte, 4096)
	var partSince time.Time // when the message now arriving began (zero: none)
	deadline := func() time.Time {
		dl := c.deadline(d.streams.idle)
		if mt := time.Duration(d.streams.msgTime.Load()); !partSince.IsZero() && partSince.Add(mt).Before(dl) {
			dl = partSince.Add(mt)
		}
		return dl
	}
	for {
		_ = c.c.SetReadDeadline(deadline())
		n, err := c.c.Read(buf)
		if n > 0 {
			msgs, pings, ferr := fr.feed(buf[:n])
			switch {
			case !fr.partial():
				partSince = time.Time{}
			case len(msgs) > 0 || partSince.IsZero():
				partSince = time.Now()
			}
			for range pings {
				// RFC 5626 §4.4.1: a double CRLF ping gets a CRLF pong,
				// and keeps the flow open as a message does.
				c.lastMsg.Store(time.Now().UnixNano())
				_ = c.send([]byte("\r\n"))
			}
			for _, m := range msgs {
				c.lastMsg.Store(time.Now().UnixNano())
				d.handleMsg(s, m, c.remote, c)
			}
			if ferr != nil {
				d.netLog.Warn("dispatcher closed a connection that broke SIP framing", "from", c.remote.String(), "err", ferr)
				return
			}
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && time.Now().Before(deadline()) {
				continue // a registration moved the deadline meanwhile
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !(errors.As(err, &ne) && ne.Timeout()) {
				d.netLog.Info("dispatcher: a connection ended", "from", c.remote.String(), "err", err)
			}
			return
		}
	}
}

// framer cuts a byte stream into SIP messages by their Content-Length
// (RFC 3261 §18.3), with sipgo's stream parser: partial reads are kept
// until the message is complete, pipelined messages come out one by one,
// CRLF keep-alives between messages are counted, and a message longer
// than maxStreamMessage (or one that does not parse) is an error after
// which the stream cannot be read on.
type framer struct {
	p      *sip.ParserStream
	atEdge bool // between messages: leading CRLFs are keep-alives
	crlf   int  // CRLF pairs seen at the edge so far
}

func newFramer() *framer {
	p := sip.NewParser()
	p.MaxMessageLength = maxStreamMessage
	return &framer{p: p.NewSIPStream(), atEdge: true}
}

func (f *framer) close() { f.p.Close() }

// partial tells whether part of a message has arrived and waits for the
// rest.
func (f *framer) partial() bool { return !f.atEdge || f.p.Buffer().Len() > 0 }

// feed takes the next bytes and returns the messages they completed and
// the keep-alive pings (double CRLF) among them.
func (f *framer) feed(b []byte) (msgs []sip.Message, pings int, err error) {
	_, _ = f.p.Write(b)
	buf := f.p.Buffer()
	for {
		if f.atEdge {
			for buf.Len() >= 2 && buf.Bytes()[0] == '\r' && buf.Bytes()[1] == '\n' {
				buf.Next(2)
				f.crlf++
				if f.crlf == 2 {
					pings++
					f.crlf = 0
				}
			}
			if buf.Len() == 0 || buf.Len() == 1 && buf.Bytes()[0] == '\r' {
				return msgs, pings, nil
			}
			f.atEdge, f.crlf = false, 0
		}
		m, _, perr := f.p.ParseNext()
		switch {
		case perr == nil:
			msgs = append(msgs, m)
			f.atEdge = true
			continue
		case errors.Is(perr, io.ErrUnexpectedEOF):
			return msgs, pings, nil
		case errors.Is(perr, sip.ErrMessageTooLarge):
			f.p.Discard(buf.Len())
			return msgs, pings, fmt.Errorf("a message longer than %d bytes", maxStreamMessage)
		default:
			f.p.Discard(buf.Len())
			return msgs, pings, fmt.Errorf("reading a message: %w", perr)
		}
	}
}
