package b2bua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/google/uuid"

	"github.com/twinpbx/twinpbx/pbx/dialplan"
	"github.com/twinpbx/twinpbx/pbx/resolve"
	"github.com/twinpbx/twinpbx/pbx/sipdo"
	"github.com/twinpbx/twinpbx/pbx/sipreason"
	"github.com/twinpbx/twinpbx/pbx/trunk"
)

// errNoAnswer marks a trunk target that sent nothing within TrunkAnswer.
var errNoAnswer = errors.New("the trunk target did not answer")

// fromTrunk tells whether an INVITE comes from one of the trunks, and
// returns the trunk's name and the called number.
func (b *B2BUA) fromTrunk(req *sip.Request) (name, called string, ok bool) {
	if b.o.Trunks == nil || b.o.Dialplan == nil {
		return "", "", false
	}
	t, called, ok := b.o.Trunks.Identify(req)
	if !ok {
		return "", "", false
	}
	return t.Name(), called, true
}

// outSpec is an outbound call to place over trunks.
type outSpec struct {
	dec        dialplan.Decision
	fromNumber string
	fromName   string
	offer      []byte
	early      func(*sip.Response)
	// tried, if set, is told each trunk as it is tried (or found busy).
	tried func(trunk string)
	log   *slog.Logger
}

// causeNoChannel is the Q.850 cause "no circuit/channel available": every
// channel of the trunks that could take a call is in use.
const causeNoChannel = 34

// reasonHeader is the Reason header (RFC 3326) that carries a Q.850
// cause to the caller; nil for none.
func reasonHeader(cause int) sip.Header {
	switch cause {
	case 0:
		return nil
	case causeNoChannel:
		return sip.NewHeader("Reason", `Q.850;cause=34;text="no circuit/channel available"`)
	}
	return sip.NewHeader("Reason", "Q.850;cause="+strconv.Itoa(cause))
}

// dialOut places the call over the decision's trunks in order. A trunk
// whose channels are all in use is skipped; otherwise it takes a channel
// for the attempt. Within a trunk the resolver walks the targets: no
// answer within TrunkAnswer, a transaction timeout, a transport error,
// 503 or 408 moves to the next target and marks the failed one dead (a
// 503 with Q.850 cause 34 is a full line, not a dead server: the next
// trunk is tried and the target stays). When every target of a trunk
// failed, or the trunk answered with a 5xx, the next trunk is tried; any
// other final answer (404, 486, 6xx) is the call's. The winner keeps its
// trunk's channel (ringResult.trunk names it); the caller releases it
// when the leg ends. When no trunk took the call the result is the last
// 5xx other than 503 a trunk answered, else 503 with cause 34 when a
// trunk was skipped for being full, else 502.
func (b *B2BUA) dialOut(ctx context.Context, s outSpec) ringResult {
	timer := time.NewTimer(b.o.RingTimeout)
	defer timer.Stop()
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-timer.C:
			cancel(errRingTimeout)
		case <-rctx.Done():
		}
	}()
	emergency := s.dec.Kind == dialplan.Emergency
	st := dialState{last: ringResult{code: 502, reason: "Bad Gateway"}}
	var full []*trunk.Trunk
	for _, name := range s.dec.Trunks {
		t, ok := b.o.Trunks.Trunk(name)
		if !ok {
			s.log.Warn("a route names a trunk that does not exist", "trunk", name)
			continue
		}
		log := s.log.With("trunk", name, "number", s.dec.Number)
		// The CDR names the trunk tried last, when none answers.
		st.tried = name
		if s.tried != nil {
			s.tried(name)
		}
		if !t.Seize(emergency) {
			log.Info("every channel of the trunk is in use; trying the next", "channels", t.Line().Channels, "emergency", emergency)
			st.busy = true
			full = append(full, t)
			continue
		}
		if res, done := b.overTrunk(ctx, rctx, t, s, emergency, &st, log); done {
			return res
		}
	}
	// An emergency call that found every channel in use clears an
	// ordinary call on one of those trunks and takes its channel.
	for _, t := range full {
		if !emergency {
			break
		}
		log := s.log.With("trunk", t.Name(), "number", s.dec.Number)
		if !b.preempt(rctx, t, log) {
			continue
		}
		st.tried = t.Name()
		if s.tried != nil {
			s.tried(t.Name())
		}
		if res, done := b.overTrunk(ctx, rctx, t, s, emergency, &st, log); done {
			return res
		}
	}
	last := st.last
	if st.busy && !st.serverError {
		last = ringResult{code: 503, reason: "Service Unavailable", q850: causeNoChannel}
	}
	last.trunk = st.tried
	return last
}

// dialState is what dialOut learnt from the trunks tried so far.
type dialState struct {
	// last is the answer the caller gets if no trunk takes the call.
	last ringResult
	// serverError: a trunk answered a 5xx other than 503; busy: a trunk
	// had no free channel.
	serverError, busy bool
	// tried names the trunk tried last.
	tried string
}

// overTrunk places the call over trunk t, whose channel the caller took.
// done reports that res is the call's outcome (answered, refused by the
// callee, or the ring ended); otherwise the channel is given back, st
// notes the failure and the next trunk may be tried.
func (b *B2BUA) overTrunk(ctx, rctx context.Context, t *trunk.Trunk, s outSpec, emergency bool, st *dialState, log *slog.Logger) (res ringResult, done bool) {
	name := t.Name()
	_, err := t.Do(rctx, func(target resolve.Target) (bool, error) {
		res = b.tryTarget(rctx, t, target, s, emergency, log)
		switch {
		case res.winner != nil:
			return false, nil
		case res.cause != nil:
			retry := errors.Is(res.cause, errNoAnswer) || resolve.Retryable(nil, res.cause)
			return retry && context.Cause(rctx) == nil, res.cause
		}
		err := fmt.Errorf("answered %d %s", res.code, res.reason)
		if res.q850 == causeNoChannel {
			return false, err
		}
		return res.code == 503 || res.code == 408, err
	})
	if res.winner != nil {
		res.trunk = name
		b.trunkLegs.Store(res.winner.d.CallID, name)
		log.Info("trunk answered", "target", res.winner.d.Peer, "emergency", emergency)
		return res, true
	}
	t.Release()
	if cause := context.Cause(rctx); cause != nil {
		return ringResult{cause: cause, trunk: name}, true
	}
	if ctx.Err() != nil {
		return ringResult{cause: context.Cause(ctx), trunk: name}, true
	}
	if res.code != 0 && res.code != 408 && res.code/100 != 5 {
		log.Info("trunk refused the call", "code", res.code)
		res.trunk = name
		return res, true
	}
	if res.q850 == causeNoChannel {
		log.Info("the trunk's line has no free channel; trying the next", "code", res.code)
		st.busy = true
		return ringResult{}, false
	}
	log.Warn("trunk failed; trying the next", "err", err, "emergency", emergency)
	if res.code >= 500 && res.code < 600 && res.code != 503 {
		st.last = ringResult{code: res.code, reason: res.reason}
		st.serverError = true
	}
	return ringResult{}, false
}

// tryTarget sends the INVITE to one target of a trunk and waits for its
// final answer, answering one digest challenge with the trunk's
// credentials. A 2xx is acknowledged and returned as the winner.
func (b *B2BUA) tryTarget(ctx context.Context, t *trunk.Trunk, target resolve.Target, s outSpec, emergency bool, log *slog.Logger) ringResult {
	f, err := b.trunkFork(t, target, s, emergency)
	if err != nil {
		log.Warn("cannot send to a trunk target", "target", target.String(), "err", err)
		return ringResult{cause: fmt.Errorf("%w: %w", sip.ErrTransactionTransport, err)}
	}
	for round := 0; ; round++ {
		r, challenge := b.awaitTrunk(ctx, f, s)
		if challenge == nil {
			return r
		}
		if round > 0 {
			return ringResult{code: 403, reason: "Forbidden"}
		}
		if err := t.Authorize(f.inv, challenge); err != nil {
			log.Warn("answering the trunk's challenge", "err", err)
			return ringResult{code: 403, reason: "Forbidden"}
		}
		trunk.Resend(f.inv)
		f.d.LocalSeq = f.inv.CSeq().SeqNo
		if err := b.prepare(f.inv); err != nil {
			return ringResult{cause: err}
		}
		tx, err := b.o.Client.TransactionRequest(context.Background(), f.inv, sipdo.Unchanged)
		if err != nil {
			return ringResult{cause: fmt.Errorf("%w: %w", sip.ErrTransactionTransport, err)}
		}
		f.mu.Lock()
		f.tx, f.provisional, f.final, f.cancelWant, f.cancelSent = tx, false, false, false, false
		f.mu.Unlock()
	}
}

// trunkFork builds and sends the INVITE to a trunk target.
func (b *B2BUA) trunkFork(t *trunk.Trunk, target resolve.Target, s outSpec, emergency bool) (*fork, error) {
	tp := strings.ToUpper(target.Transport)
	if tp == "" {
		tp = "UDP"
	}
	us := b.contact(tp)
	id, err := uuid.NewRandom()
	if err != nil {
		return nil, fmt.Errorf("making a Call-ID: %w", err)
	}
	dom := t.Domain()
	f := &fork{owner: b, d: Dialog{
		CallID:       id.String(),
		LocalTag:     sip.GenerateTagN(16),
		LocalURI:     (&sip.Uri{Scheme: "sip", User: t.CallerID(s.fromNumber), Host: dom}).String(),
		LocalName:    s.fromName,
		RemoteURI:    (&sip.Uri{Scheme: "sip", User: s.dec.Number, Host: dom}).String(),
		RemoteTarget: (&sip.Uri{Scheme: "sip", User: s.dec.Number, Host: dom}).String(),
		Transport:    tp,
		Peer:         target.Addr(),
		LocalSeq:     1,
	}}
	inv, err := f.d.buildRequest(sip.INVITE, 1, us)
	if err != nil {
		return nil, err
	}
	inv.AppendHeader(sip.NewHeader("Allow", allow))
	inv.AppendHeader(sip.NewHeader("Supported", "100rel"))
	if emergency {
		inv.AppendHeader(sip.NewHeader("Priority", "emergency"))
	}
	inv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	inv.SetBody(s.offer)
	if err := b.prepare(inv); err != nil {
		return nil, fmt.Errorf("sending INVITE to %s: %w", target, err)
	}
	f.inv = inv
	tx, err := b.o.Client.TransactionRequest(context.Background(), inv, sipdo.Unchanged)
	if err != nil {
		return nil, fmt.Errorf("sending INVITE to %s: %w", target, err)
	}
	f.tx = tx
	return f, nil
}

// awaitTrunk waits for a trunk fork's final answer. It returns the
// challenge when the answer is a 401 or 407; a target that sends nothing
// within TrunkAnswer is abandoned as a timeout. When ctx ends the fork is
// cancelled and its late answers are dealt with in the background.
func (b *B2BUA) awaitTrunk(ctx context.Context, f *fork, s outSpec) (ringResult, *sip.Response) {
	events := make(chan forkEvent, 8)
	go f.run(events)
	silent := time.NewTimer(b.o.TrunkAnswer)
	defer silent.Stop()
	heard := false
	for {
		select {
		case ev := <-events:
			if ev.res == nil {
				return ringResult{cause: sip.ErrTransactionTimeout}, nil
			}
			heard = true
			code := ev.res.StatusCode
			switch {
			case code < 200:
				if (code == 180 || code == 183) && s.early != nil {
					s.early(ev.res)
				}
			case code < 300:
				f.d.confirm(ev.res)
				b.ackFork(f, ev.res)
				return ringResult{winner: f, answer: ev.res}, nil
			case code == 401 || code == 407:
				return ringResult{}, ev.res
			default:
				return ringResult{code: code, reason: ev.res.Reason, q850: sipreason.Q850(ev.res)}, nil
			}
		case <-silent.C:
			if !heard {
				f.tx.Terminate()
				b.drain(events, 1)
				return ringResult{cause: fmt.Errorf("%w within %s", errNoAnswer, b.o.TrunkAnswer)}, nil
			}
		case <-ctx.Done():
			b.cancelFork(f, cancelReason(context.Cause(ctx), true))
			b.drain(events, 1)
			return ringResult{cause: context.Cause(ctx)}, nil
		}
	}
}
