package b2bua

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Reliable provisional responses (RFC 3262) are ended on each leg on its
// own. Towards a device we ring, the INVITE says Supported: 100rel and
// every reliable 180/183 the device sends is answered with PRACK by the
// fork. Towards the caller, provisional responses are sent reliably only
// when its INVITE requires 100rel (Supported alone gets the usual
// unreliable ones, which RFC 3262 allows): each carries Require: 100rel
// and an RSeq of ours, is repeated until the caller's PRACK arrives, and
// the 200 waits for the last one to be acknowledged. It is repeated over
// TCP and TLS too: RFC 3262 §3 makes no exception for them, as for a 2xx
// (RFC 3261 §13.3.1.4), since a proxy between may go on over UDP.

// hasOption reports whether an option tag is listed in the header name
// (Require, Supported) of msg.
func hasOption(msg sip.Message, name, tag string) bool {
	for _, h := range msg.GetHeaders(name) {
		for t := range strings.SplitSeq(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(t), tag) {
				return true
			}
		}
	}
	return false
}

// rseqOf returns the RSeq of a reliable provisional response.
func rseqOf(res *sip.Response) (uint32, bool) {
	if !hasOption(res, "Require", "100rel") {
		return 0, false
	}
	h := res.GetHeader("RSeq")
	if h == nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
	if err != nil || n == 0 {
		return 0, false
	}
	return uint32(n), true
}

// rack is a parsed RAck header: "response-num CSeq-num Method".
type rack struct {
	rseq, cseq uint32
	method     string
}

func parseRAck(v string) (rack, error) {
	f := strings.Fields(v)
	if len(f) != 3 {
		return rack{}, fmt.Errorf("RAck %q: want response number, CSeq number and method", v)
	}
	r, err1 := strconv.ParseUint(f[0], 10, 32)
	c, err2 := strconv.ParseUint(f[1], 10, 32)
	if err1 != nil || err2 != nil || r == 0 {
		return rack{}, fmt.Errorf("RAck %q: bad number", v)
	}
	return rack{rseq: uint32(r), cseq: uint32(c), method: strings.ToUpper(f[2])}, nil
}

// reliable sends the caller's provisional responses reliably. Only one is
// outstanding at a time (RFC 3262 §3); a newer one waits for its PRACK,
// replacing any older one still waiting.
type reliable struct {
	c        *call
	tx       sip.ServerTransaction
	inviteCS uint32

	mu      sync.Mutex
	rseq    uint32
	unacked *sip.Response
	acked   chan struct{} // closed when unacked is acknowledged or given up
	queued  *sip.Response
}

func newReliable(c *call, tx sip.ServerTransaction, req *sip.Request) *reliable {
	return &reliable{
		c: c, tx: tx, inviteCS: req.CSeq().SeqNo,
		// RFC 3262 §3: the first RSeq is random, below 2**31.
		rseq: rand.Uint32N(1 << 30),
	}
}

// send sends res reliably, or queues it behind the outstanding one.
func (r *reliable) send(res *sip.Response) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.unacked != nil {
		r.queued = res
		return
	}
	r.start(res)
}

// start sends res with the next RSeq; callers hold mu.
func (r *reliable) start(res *sip.Response) {
	r.rseq++
	res.AppendHeader(sip.NewHeader("Require", "100rel"))
	res.AppendHeader(sip.NewHeader("RSeq", strconv.FormatUint(uint64(r.rseq), 10)))
	r.unacked, r.acked = res, make(chan struct{})
	b := r.c.b
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		r.retransmit(res, r.acked)
	}()
}

// retransmit sends res until acked closes, T1 doubling up to T2, for at
// most 64×T1; then it gives up on it and sends what is queued.
func (r *reliable) retransmit(res *sip.Response, acked chan struct{}) {
	if err := r.tx.Respond(res); err != nil {
		r.c.b.log.Debug("sending a reliable provisional response", "call", r.c.st.ID, "err", err)
	}
	deadline := time.NewTimer(64 * sip.T1)
	defer deadline.Stop()
	interval := sip.T1
	again := time.NewTimer(interval)
	defer again.Stop()
	for {
		select {
		case <-acked:
			return
		case <-r.tx.Done():
			r.giveUp(res)
			return
		case <-deadline.C:
			r.c.b.log.Info("the caller never acknowledged a reliable provisional response", "call", r.c.st.ID, "code", res.StatusCode)
			r.giveUp(res)
			return
		case <-again.C:
			if err := r.tx.Respond(res); err != nil {
				r.c.b.log.Debug("repeating a reliable provisional response", "call", r.c.st.ID, "err", err)
			}
			interval = min(2*interval, sip.T2)
			again.Reset(interval)
		}
	}
}

// giveUp stops waiting for res's PRACK.
func (r *reliable) giveUp(res *sip.Response) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.unacked == res {
		r.next()
	}
}

// next closes the outstanding response and starts the queued one; callers
// hold mu.
func (r *reliable) next() {
	close(r.acked)
	r.unacked = nil
	if q := r.queued; q != nil {
		r.queued = nil
		r.start(q)
	}
}

// prack acknowledges the outstanding response when ra names it.
func (r *reliable) prack(ra rack) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ra.method != string(sip.INVITE) || ra.cseq != r.inviteCS || ra.rseq != r.rseq {
		return false
	}
	if r.unacked != nil {
		r.next()
	}
	return true // also a retransmitted PRACK of the last one
}

// settle drops what is queued and waits until the outstanding response is
// acknowledged or given up, so that the final response follows it (RFC
// 3262 §3: a 2xx must not overtake a reliable provisional with SDP).
func (r *reliable) settle(ctx context.Context) {
	r.mu.Lock()
	r.queued = nil
	var ch chan struct{}
	if r.unacked != nil {
		ch = r.acked
	}
	r.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

// servePrack takes the caller's PRACK of a reliable provisional response.
func (b *B2BUA) servePrack(req *sip.Request, tx sip.ServerTransaction) {
	c, side, ok := b.inDialog(req, tx)
	if !ok {
		return
	}
	h := req.GetHeader("RAck")
	if h == nil {
		respond(tx, req, 400, "Bad Request", b.log)
		return
	}
	ra, err := parseRAck(h.Value())
	if err != nil {
		b.log.Info("PRACK refused", "call", c.st.ID, "err", err)
		respond(tx, req, 400, "Bad Request", b.log)
		return
	}
	c.mu.Lock()
	rel := c.rel
	c.mu.Unlock()
	if side != LegA || rel == nil || !rel.prack(ra) {
		respond(tx, req, 481, "Call/Transaction Does Not Exist", b.log)
		return
	}
	respond(tx, req, 200, "OK", b.log)
}

// prackFork answers a device's reliable provisional response with PRACK
// in the early dialog it creates; it reports false for a repeat of one
// already acknowledged, which is not passed on. Only the fork's run
// goroutine calls it.
func (f *fork) prackFork(res *sip.Response) bool {
	rseq, ok := rseqOf(res)
	if !ok {
		return true
	}
	tag := ""
	if to := res.To(); to != nil {
		tag, _ = to.Params.Get("tag")
	}
	if f.racked == nil {
		f.racked = map[string]uint32{}
	}
	if last, seen := f.racked[tag]; seen && rseq <= last {
		return false
	}
	f.racked[tag] = rseq
	cs := uint32(1)
	if c := res.CSeq(); c != nil {
		cs = c.SeqNo
	}
	d := f.d
	d.RouteSet = append([]string(nil), f.d.RouteSet...)
	d.confirm(res)
	// Above the INVITE's CSeq, which a challenge may have raised.
	f.d.LocalSeq = max(f.d.LocalSeq, cs) + 1
	req, err := d.buildRequest(sip.PRACK, f.d.LocalSeq, f.owner.contact(d.Transport))
	if err != nil {
		f.owner.log.Info("building PRACK", "err", err)
		return true
	}
	req.AppendHeader(sip.NewHeader("RAck", fmt.Sprintf("%d %d INVITE", rseq, cs)))
	b := f.owner
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 64*sip.T1)
		defer cancel()
		res, err := b.do(ctx, req)
		switch {
		case err != nil:
			b.log.Info("PRACK to a ringing device", "err", err)
		case !res.IsSuccess():
			b.log.Info("PRACK refused by a ringing device", "code", res.StatusCode)
		}
	}()
	return true
}
