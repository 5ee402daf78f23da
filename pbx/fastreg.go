package pbx

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

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
}

// branchKey names a REGISTER transaction: its Via branch from one source.
type branchKey struct {
	branch, source string
}

func newRegisterConn(c net.PacketConn, handle func(*sip.Request, sip.ServerTransaction), wire *wireRegistrar, w *workers) *registerConn {
	return &registerConn{PacketConn: c, parser: sip.NewParser(), handle: handle, wire: wire, workers: w,
		inProgress: map[branchKey]struct{}{}}
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
		if c.wire != nil && c.serveWire(string(b[:n]), addr) {
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

// serveWire serves msg from addr if regwire reads it, and reports whether
// it did (or dropped it: a standby answers nothing, a retransmission is
// answered by the first copy's handler).
func (c *registerConn) serveWire(msg string, addr net.Addr) bool {
	w := c.wire
	r := wireRequests.Get().(*regwire.Request)
	if !w.parser.Parse(msg, r) {
		wireRequests.Put(r)
		return false
	}
	if w.serving != nil && !w.serving() {
		wireRequests.Put(r)
		return true
	}
	src := addr.String()
	if len(r.Authorization) == 0 {
		// Challenged (or refused) from memory: here, without waking a
		// worker.
		w.serve(c.PacketConn, addr, src, r)
		wireRequests.Put(r)
		return true
	}
	key := branchKey{branch: r.Branch, source: src}
	if !c.begin(key) {
		wireRequests.Put(r)
		return true
	}
	c.workers.submit(func() {
		defer c.end(key)
		w.serve(c.PacketConn, addr, src, r)
		wireRequests.Put(r)
	})
	return true
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
	// from source (a binding's Source) (Registrar.ServeWire).
	register func(r *regwire.Request, user, source string) (int, string, []regwire.Header)
	// registered is told of each REGISTER answered 2xx (the mailbox's
	// unsolicited NOTIFY).
	registered func(box, callID string, cseq uint32)
	log        *slog.Logger
	tags       tagSource
	served     atomic.Uint64 // REGISTERs answered
}

// serve answers r from src ("host:port") through conn.
func (w *wireRegistrar) serve(conn net.PacketConn, addr net.Addr, src string, r *regwire.Request) {
	host := src
	if h, _, err := net.SplitHostPort(src); err == nil {
		host = h
	}
	v := w.auth.Verify(auth.Request{
		Method: "REGISTER", Recipient: &r.Recipient, RecipientText: r.RecipientText, Credentials: r.Authorization,
		Host: host, Source: src,
	}, false)
	var code int
	var reason string
	var hdrs []regwire.Header
	if v.OK {
		code, reason, hdrs = w.register(r, v.User, "udp:"+src)
	} else {
		code, reason = v.Code, v.Reason
		for _, c := range v.Challenges {
			hdrs = append(hdrs, regwire.Header{Name: v.ChallengeHeader, Value: c})
		}
	}
	buf := wireBufs.Get().(*[]byte)
	defer wireBufs.Put(buf)
	*buf = regwire.AppendResponse((*buf)[:0], r, src, code, reason, w.tags.next(), hdrs)
	if len(*buf) > sip.UDPMTUSize-200 {
		w.log.Debug("sending REGISTER response", "err", sip.ErrUDPMTUCongestion, "source", src)
	} else if _, err := conn.WriteTo(*buf, addr); err != nil {
		w.log.Debug("sending REGISTER response", "err", err, "source", src)
	}
	w.served.Add(1)
	if code >= 200 && code < 300 && w.registered != nil {
		w.registered(r.ToUser, r.CallID, r.Seq)
	}
}

// tagSource makes To tags: a random prefix per process and a counter,
// unique without reading the system's random source per answer.
type tagSource struct {
	once   sync.Once
	prefix string
	n      atomic.Uint64
}

func (t *tagSource) next() string {
	t.once.Do(func() {
		var b [6]byte
		_, _ = rand.Read(b[:])
		t.prefix = hex.EncodeToString(b[:])
	})
	return t.prefix + strconv.FormatUint(t.n.Add(1), 16)
}

var wireBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

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
