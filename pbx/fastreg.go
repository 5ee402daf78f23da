package pbx

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/auth"
	"github.com/twinpbx/twinpbx/pbx/regwire"
)

// registerConn sits between a UDP socket and sipgo's UDP transport and
// takes REGISTER requests out of the stream: they are read here and
// handed to the registrar on a worker, and the answer is written straight
// to the socket. Everything else reaches sipgo unchanged.
//
// Why: a REGISTER needs nothing of sipgo's transaction layer. The
// registrar ends its server transaction right after the final answer
// (see Registrar.ServeRegister), so the layer only cost work: a goroutine
// per request, a transaction with its state machine and timers, a map
// entry, and a second hand-over to our worker. What it did give, absorbing
// a retransmission while the first copy is still being handled, is kept
// here with a set of the branches in progress.
//
// A REGISTER in the plain form phones send is read by regwire and answered
// without sipgo's message model (wireRegistrar); any other is parsed by
// sipgo's parser and served through the guarded registrar handler. A
// REGISTER sipgo's parser refuses is passed on to sipgo, which logs it and
// answers 400 through the bad-request limiter, as for any other request.
type registerConn struct {
	net.PacketConn
	parser *sip.Parser
	// handle is the guarded registrar handler (serving gate and mandatory
	// headers first, as for requests that come through sipgo).
	handle  func(*sip.Request, sip.ServerTransaction)
	wire    *wireRegistrar // nil: every REGISTER goes through sipgo's parser
	workers *workers

	mu         sync.Mutex
	inProgress map[branchKey]struct{}
	// peers is used by the reading goroutine alone.
	peers peerCache
}

// branchKey names a REGISTER transaction: its Via branch from one source.
type branchKey struct {
	branch, source string
}

func newRegisterConn(c net.PacketConn, handle func(*sip.Request, sip.ServerTransaction), wire *wireRegistrar, w *workers) *registerConn {
	return &registerConn{PacketConn: c, parser: sip.NewParser(), handle: handle, wire: wire, workers: w,
		inProgress: map[branchKey]struct{}{}, peers: peerCache{m: map[netip.AddrPort]*peer{}}}
}

var registerPrefix = []byte("REGISTER ")

// ReadFrom returns the next datagram that is not a REGISTER this
// connection handles itself. sipgo calls it from one goroutine per socket.
func (c *registerConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil || !bytes.HasPrefix(b[:n], registerPrefix) {
			return n, addr, err
		}
		if c.wire != nil && c.serveWire(b[:n], addr) {
			continue
		}
		msg, perr := c.parser.ParseSIP(b[:n])
		req, ok := msg.(*sip.Request)
		if perr != nil || !ok {
			return n, addr, nil
		}
		req.SetTransport("UDP")
		req.SetSource(addr.String())
		tx := &statelessTx{conn: c.PacketConn, to: addr}
		if req.GetHeader("Authorization") == nil {
			// Answered with a challenge (or refused) from memory: here,
			// without waking a worker.
			c.handle(req, tx)
			continue
		}
		key := branchKey{source: req.Source()}
		if via := req.Via(); via != nil {
			key.branch, _ = via.Params.Get("branch")
		}
		if !c.begin(key) {
			continue // a retransmission of a REGISTER being handled: its answer is coming
		}
		c.workers.submit(func() {
			defer c.end(key)
			c.handle(req, tx)
		})
	}
}

// serveWire serves the datagram b from addr if regwire reads it, and
// reports whether it did (or dropped it: a standby answers nothing, a
// retransmission is answered by the first copy's handler). b is the
// caller's read buffer: the request is read from a pooled copy of it,
// which goes back to the pool, zeroed, once the request is answered.
// Nothing that outlives a request keeps a piece of it (bindings and the
// mailbox's unsolicited NOTIFY take copies, the nonce-count table keeps
// no text: TestWireRegisterKeepsNoDatagram).
func (c *registerConn) serveWire(b []byte, addr net.Addr) bool {
	w := c.wire
	d := getDatagram(b)
	r := wireRequests.Get().(*regwire.Request)
	if !w.parser.Parse(unsafe.String(unsafe.SliceData(*d), len(*d)), r) {
		release(r, d)
		return false
	}
	if w.serving != nil && !w.serving() {
		release(r, d)
		return true
	}
	src := c.peers.get(addr)
	if len(r.Authorization) == 0 {
		// Challenged (or refused) from memory: here, without waking a
		// worker.
		w.serve(c.PacketConn, addr, src, r)
		release(r, d)
		return true
	}
	key := branchKey{branch: r.Branch, source: src.addr}
	if !c.begin(key) {
		release(r, d)
		return true
	}
	c.workers.submit(func() {
		defer release(r, d)
		defer c.end(key)
		w.serve(c.PacketConn, addr, src, r)
	})
	return true
}

// datagrams holds the copies of datagrams being read by regwire. A copy
// longer than maxPooledDatagram is left to the garbage collector.
var datagrams = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

const maxPooledDatagram = 8192

func getDatagram(b []byte) *[]byte {
	d := datagrams.Get().(*[]byte)
	*d = append((*d)[:0], b...)
	return d
}

// release puts a served request and its datagram back. The datagram is
// zeroed first, so that a piece of it kept by mistake reads as NULs at
// once instead of as the next request some day.
func release(r *regwire.Request, d *[]byte) {
	wireRequests.Put(r)
	clear(*d)
	if cap(*d) <= maxPooledDatagram {
		datagrams.Put(d)
	}
}

var wireRequests = sync.Pool{New: func() any { return new(regwire.Request) }}

// wireRegistrar answers the REGISTERs regwire reads as the guarded
// registrar handler (guard, then serveRegister) answers the same requests
// parsed by sipgo: the same checks in the same order, the same answers,
// the same bindings, the same unsolicited MWI.
type wireRegistrar struct {
	parser  regwire.Parser
	serving func() bool
	auth    *auth.Digest
	// register serves a REGISTER whose credentials are good, for user,
	// from source (a binding's Source), appending the answer's headers to
	// hdrs (Registrar.ServeWire).
	register func(r *regwire.Request, user, source string, hdrs []regwire.Header) (int, string, []regwire.Header)
	// registered is told of each REGISTER answered 2xx (the mailbox's
	// unsolicited NOTIFY).
	registered func(box, callID string, cseq uint32)
	log        *slog.Logger
	tags       tagSource
	served     atomic.Uint64 // REGISTERs answered
}

// serve answers r from src through conn.
func (w *wireRegistrar) serve(conn net.PacketConn, addr net.Addr, src *peer, r *regwire.Request) {
	v := w.auth.Verify(auth.Request{
		Method: "REGISTER", Recipient: &r.Recipient, RecipientText: r.RecipientText, Credentials: r.Authorization,
		Host: src.host, Source: src.addr,
	}, false)
	a := answers.Get().(*answer)
	defer a.put()
	var code int
	var reason string
	if v.OK {
		code, reason, a.hdrs = w.register(r, v.User, src.source, a.hdrs[:0])
	} else {
		code, reason = v.Code, v.Reason
		for _, c := range v.Challenges {
			a.hdrs = append(a.hdrs, regwire.Header{Name: v.ChallengeHeader, Value: c})
		}
	}
	var tag [32]byte
	a.buf = regwire.AppendResponse(a.buf[:0], r, src.addr, code, reason, w.tags.append(tag[:0]), a.hdrs)
	// Counted before it is sent: a phone that has its answer finds it
	// counted.
	w.served.Add(1)
	if len(a.buf) > sip.UDPMTUSize-200 {
		w.log.Debug("sending REGISTER response", "err", sip.ErrUDPMTUCongestion, "source", src.addr)
	} else if _, err := conn.WriteTo(a.buf, addr); err != nil {
		w.log.Debug("sending REGISTER response", "err", err, "source", src.addr)
	}
	if code >= 200 && code < 300 && w.registered != nil {
		w.registered(r.ToUser, r.CallID, r.Seq)
	}
}

// answer is the room an answer is written in, reused.
type answer struct {
	hdrs []regwire.Header
	buf  []byte
}

var answers = sync.Pool{New: func() any { return &answer{buf: make([]byte, 0, 1024)} }}

// put returns a to the pool, keeping no header value alive.
func (a *answer) put() {
	clear(a.hdrs)
	a.hdrs = a.hdrs[:0]
	answers.Put(a)
}

// peer is where a request came from, in the forms serving it needs.
type peer struct {
	addr   string // "host:port", as net.Addr.String writes it
	host   string
	source string // a binding's Source: "udp:host:port"
}

func newPeer(addr string) *peer {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	return &peer{addr: addr, host: host, source: "udp:" + addr}
}

// peerCache keeps the peers of recent sources, so that a phone's every
// REGISTER does not format its address again. Not safe for concurrent
// use.
type peerCache struct {
	m map[netip.AddrPort]*peer
}

// maxPeers bounds peerCache: a site's phones fit many times over; when it
// is full (a scan from many ports) it starts again empty.
const maxPeers = 4096

func (c *peerCache) get(addr net.Addr) *peer {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return newPeer(addr.String())
	}
	k := ua.AddrPort()
	if p := c.m[k]; p != nil {
		return p
	}
	if len(c.m) >= maxPeers {
		clear(c.m)
	}
	p := newPeer(addr.String())
	c.m[k] = p
	return p
}

// tagSource makes To tags: a random prefix per process and a counter,
// unique without reading the system's random source per answer.
type tagSource struct {
	once   sync.Once
	prefix string
	n      atomic.Uint64
}

// append appends the next tag to b.
func (t *tagSource) append(b []byte) []byte {
	t.once.Do(func() {
		var b [6]byte
		_, _ = rand.Read(b[:])
		t.prefix = hex.EncodeToString(b[:])
	})
	return strconv.AppendUint(append(b, t.prefix...), t.n.Add(1), 16)
}

func (c *registerConn) begin(k branchKey) bool {
	if k.branch == "" {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, busy := c.inProgress[k]; busy {
		return false
	}
	c.inProgress[k] = struct{}{}
	return true
}

func (c *registerConn) end(k branchKey) {
	if k.branch == "" {
		return
	}
	c.mu.Lock()
	delete(c.inProgress, k)
	c.mu.Unlock()
}

// statelessTx answers a request handled outside sipgo's transaction
// layer: Respond writes the response to the request's source, and there is
// nothing to terminate or wait for.
type statelessTx struct {
	conn net.PacketConn
	to   net.Addr
}

var _ sip.ServerTransaction = (*statelessTx)(nil)

var responseBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (t *statelessTx) Respond(res *sip.Response) error {
	buf := responseBufs.Get().(*bytes.Buffer)
	defer responseBufs.Put(buf)
	buf.Reset()
	res.StringWrite(buf)
	if buf.Len() > sip.UDPMTUSize-200 {
		return sip.ErrUDPMTUCongestion
	}
	_, err := t.conn.WriteTo(buf.Bytes(), t.to)
	return err
}

func (t *statelessTx) Terminate()                         {}
func (t *statelessTx) OnTerminate(sip.FnTxTerminate) bool { return false }
func (t *statelessTx) Done() <-chan struct{}              { return closedChan }
func (t *statelessTx) Err() error                         { return nil }
func (t *statelessTx) Acks() <-chan *sip.Request          { return nil }
func (t *statelessTx) OnCancel(sip.FnTxCancel) bool       { return false }

var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()
