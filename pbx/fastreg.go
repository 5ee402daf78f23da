package pbx

import (
	"bytes"
	"net"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// registerConn sits between a UDP socket and sipgo's UDP transport and
// takes REGISTER requests out of the stream: they are parsed here and
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
// A REGISTER this parser refuses is passed on to sipgo, which logs it and
// answers 400 through the bad-request limiter, as for any other request.
type registerConn struct {
	net.PacketConn
	parser *sip.Parser
	// handle is the guarded registrar handler (serving gate and mandatory
	// headers first, as for requests that come through sipgo).
	handle  func(*sip.Request, sip.ServerTransaction)
	workers *workers

	mu         sync.Mutex
	inProgress map[branchKey]struct{}
}

// branchKey names a REGISTER transaction: its Via branch from one source.
type branchKey struct {
	branch, source string
}

func newRegisterConn(c net.PacketConn, handle func(*sip.Request, sip.ServerTransaction), w *workers) *registerConn {
	return &registerConn{PacketConn: c, parser: sip.NewParser(), handle: handle, workers: w,
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
