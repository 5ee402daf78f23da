package b2bua

import (
	"context"
	"errors"
	"log/slog"
	"sort"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/trunk"
)

// errPreempted ends the ringing of a call cleared to make room for an
// emergency call.
var errPreempted = errors.New("cleared to make room for an emergency call")

// preemptionReason is the Reason header of a call cleared for an
// emergency call: RFC 4411's towards a phone, Q.850 cause 8
// ("preemption") towards a trunk (the ISDN gateway clears the line's
// call with it).
func preemptionReason(toTrunk bool) sip.Header {
	if toTrunk {
		return sip.NewHeader("Reason", `Q.850;cause=8;text="preemption"`)
	}
	return sip.NewHeader("Reason", `preemption ;cause=1 ;text="UA preemption"`)
}

// cancelReason is the Reason header of the CANCELs that end a ringing
// phase for cause: the preemption Reason when the call was cleared for an
// emergency call, else none.
func cancelReason(cause error, toTrunk bool) sip.Header {
	if errors.Is(cause, errPreempted) {
		return preemptionReason(toTrunk)
	}
	return nil
}

// victims lists, best first, the calls that may be cleared so that an
// emergency call gets a channel of trunk name: the ordinary calls over
// that trunk, ringing ones first (the most recent first), then answered
// ones, the one answered last first. Emergency calls are never listed.
func victims(calls []CallState, name string) []int {
	var idx []int
	for i, st := range calls {
		if st.Emergency || st.State == StateEnded || !overTrunk(st, name) {
			continue
		}
		idx = append(idx, i)
	}
	sort.SliceStable(idx, func(i, j int) bool {
		a, b := calls[idx[i]], calls[idx[j]]
		ra, rb := a.State == StateRinging, b.State == StateRinging
		switch {
		case ra != rb:
			return ra
		case ra:
			return a.Start.After(b.Start)
		}
		return a.Answer.After(b.Answer)
	})
	return idx
}

// overTrunk tells whether a call holds a channel of trunk name: one of
// its legs runs over it, or it is ringing out over it.
func overTrunk(st CallState, name string) bool {
	for _, l := range st.Legs {
		if l != nil && l.Trunk == name {
			return true
		}
	}
	return st.State == StateRinging && st.Trunk == name
}

// preempt makes room on trunk t for an emergency call that found every
// channel in use: it clears an ordinary call over t and waits, at most
// PreemptWait, for its channel. True means the emergency call holds a
// channel of t (one Release is then due); false that no call could be
// cleared or the channel did not come free in time.
func (b *B2BUA) preempt(ctx context.Context, t *trunk.Trunk, log *slog.Logger) bool {
	b.mu.Lock()
	cs := make([]*call, 0, len(b.calls))
	for _, c := range b.calls {
		cs = append(cs, c)
	}
	b.mu.Unlock()
	states := make([]CallState, len(cs))
	for i, c := range cs {
		states[i] = c.state()
	}
	// Two emergency calls at once clear two calls: each claims its own.
	var v *call
	var st CallState
	for _, i := range victims(states, t.Name()) {
		if cs[i].claim() {
			v, st = cs[i], states[i]
			break
		}
	}
	if v == nil {
		log.Warn("every channel of the trunk carries an emergency call: none cleared")
		return false
	}
	wctx, cancel := context.WithTimeout(ctx, b.o.PreemptWait)
	defer cancel()
	cleared := false
	got := t.SeizeWait(wctx, func() {
		cleared = true
		log.Warn("clearing an ordinary call to make room for an emergency call",
			"cleared", st.ID, "caller", st.Caller, "callee", st.Callee, "state", st.State)
		go v.preempt()
	})
	if !cleared {
		v.unclaim() // a channel came free without it
	}
	if !got {
		if cleared && ctx.Err() == nil {
			log.Warn("the channel of the cleared call did not come free in time; going on without it", "wait", b.o.PreemptWait)
		}
		return false
	}
	if cleared {
		// The cleared call's BYE or CANCEL reaches the trunk before the
		// emergency call's INVITE.
		select {
		case <-v.done:
		case <-wctx.Done():
		}
	}
	return true
}

// preempt clears the call for an emergency call: a ringing call stops
// ringing (503 to its caller), an answered one gets BYE on both legs;
// both carry the preemption Reason and the CDR says ByPreemption.
func (c *call) preempt() {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	for side, l := range c.legs {
		if l != nil {
			c.byeReason[side] = preemptionReason(l.Trunk != "")
		}
	}
	rc, ringing := c.ringCancel, c.st.State == StateRinging
	c.mu.Unlock()
	// A ringing call, or the ringing of a transfer in progress, stops.
	if rc != nil {
		rc(errPreempted)
		if ringing {
			return
		}
	}
	c.end(cdr.Answered, 200, ByPreemption, LegA, LegB)
}

// claim marks the call as the one an emergency call clears; false when
// it ended or another emergency call claimed it.
func (c *call) claim() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || c.preempted {
		return false
	}
	c.preempted = true
	return true
}

// unclaim gives back a claim that was not needed.
func (c *call) unclaim() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.preempted = false
}
