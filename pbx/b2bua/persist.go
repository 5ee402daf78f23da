package b2bua

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/media"
)

// CallStore keeps the answered calls durably, so that the twin can carry
// them on after a failover. On a twin pair it is the replicated store.
type CallStore interface {
	// SaveCall stores (or replaces) the state of call id.
	SaveCall(id string, state []byte) error
	// DeleteCall removes call id; removing a call not stored is fine.
	DeleteCall(id string) error
	// LoadCalls returns every stored call state by id.
	LoadCalls() (map[string][]byte, error)
}

// SavedCallVersion is the SavedCall.Version this package writes and reads.
const SavedCallVersion = 1

// SeqMargin is added to both legs' local CSeq when a call is restored: the
// box that died may have sent in-dialog requests (INFO, NOTIFY) after its
// last save, and a phone refuses a CSeq it has already seen.
const SeqMargin = 100

// SavedCall is the record of one answered call: its dialogs and the state
// of its media session. It encodes as JSON.
type SavedCall struct {
	Version int                `json:"version"`
	Call    CallState          `json:"call"`
	Media   media.SessionState `json:"media"`
}

// Marshal encodes the record.
func (s SavedCall) Marshal() ([]byte, error) {
	data, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encoding saved call %q: %w", s.Call.ID, err)
	}
	return data, nil
}

// ParseSavedCall decodes a record and checks that it describes an answered
// call that can be carried on. When the JSON decodes but the record is not
// usable, the decoded record is returned with the error, so that its CDR
// can still be written.
func ParseSavedCall(data []byte) (SavedCall, error) {
	var s SavedCall
	if err := json.Unmarshal(data, &s); err != nil {
		return SavedCall{}, fmt.Errorf("decoding saved call: %w", err)
	}
	if err := s.check(); err != nil {
		return s, fmt.Errorf("saved call %q: %w", s.Call.ID, err)
	}
	return s, nil
}

func (s *SavedCall) check() error {
	c := &s.Call
	switch {
	case s.Version != SavedCallVersion:
		return fmt.Errorf("version %d, want %d", s.Version, SavedCallVersion)
	case c.ID == "":
		return errors.New("no call id")
	case s.Media.ID != c.ID:
		return fmt.Errorf("media session %q belongs to another call", s.Media.ID)
	case c.State != StateAnswered && c.State != StateTransferring:
		return fmt.Errorf("state %q is not an answered call", c.State)
	case c.Start.IsZero() || c.Answer.IsZero():
		return errors.New("no start or answer time")
	case c.Attempt < 1 || c.Attempts < c.Attempt:
		return fmt.Errorf("attempt %d of %d", c.Attempt, c.Attempts)
	}
	for side, l := range c.Legs {
		if l == nil {
			return fmt.Errorf("leg %v missing", Leg(side))
		}
		if err := l.Dialog.check(); err != nil {
			return fmt.Errorf("leg %v: %w", Leg(side), err)
		}
	}
	if c.Legs[LegA].Dialog.CallID == c.Legs[LegB].Dialog.CallID {
		return errors.New("both legs have the same Call-ID")
	}
	return nil
}

// check tells whether in-dialog requests can be built from d and matched
// against it.
func (d *Dialog) check() error {
	switch {
	case d.CallID == "" || d.LocalTag == "" || d.RemoteTag == "":
		return errors.New("dialog without Call-ID or tags")
	case d.Transport != "UDP" && d.Transport != "TCP" && d.Transport != "TLS":
		return fmt.Errorf("transport %q", d.Transport)
	}
	if _, _, err := net.SplitHostPort(d.Peer); err != nil {
		return fmt.Errorf("peer %q: %w", d.Peer, err)
	}
	for _, s := range append([]string{d.LocalURI, d.RemoteURI, d.RemoteTarget}, d.RouteSet...) {
		var u sip.Uri
		if err := sip.ParseUri(s, &u); err != nil {
			return fmt.Errorf("URI %q: %w", s, err)
		}
		if u.Host == "" {
			return fmt.Errorf("URI %q: no host", s)
		}
	}
	return nil
}

// persist saves the call for the twin. The call carries on when the store
// refuses: the failure is logged.
func (c *call) persist() {
	store := c.b.o.Calls
	if store == nil {
		return
	}
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	c.mu.Lock()
	if c.ended || c.media == nil || c.st.State == StateRinging {
		c.mu.Unlock()
		return
	}
	st := c.stateLocked()
	m := c.media
	c.mu.Unlock()
	// A transfer in progress is not carried over; the twin restores the
	// call as it was before the REFER.
	st.State = StateAnswered
	data, err := SavedCall{Version: SavedCallVersion, Call: st, Media: m.State()}.Marshal()
	if err == nil {
		err = store.SaveCall(st.ID, data)
	}
	if err != nil {
		c.b.log.Warn("saving a call for failover", "call", st.ID, "err", err)
		return
	}
	c.saved = true
}

// unpersist deletes the saved record of an ended call; callers have set
// ended, so no later persist writes it again.
func (c *call) unpersist() {
	store := c.b.o.Calls
	if store == nil {
		return
	}
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	if !c.saved {
		return
	}
	c.saved = false
	if err := store.DeleteCall(c.st.ID); err != nil {
		c.b.log.Warn("deleting the saved state of an ended call", "call", c.st.ID, "err", err)
	}
}

// Restore carries on the answered calls saved in Options.Calls, typically
// on the twin that has just taken over: each call's media session is
// reopened on its ports, its dialogs are registered so that in-dialog
// requests from both phones match, and its CDR is written when it ends.
// Records that cannot be restored (bad data, ports taken) are deleted and
// their CDR written (ANSWERED, hangup by system, ending now). Calls already
// running here are left alone. It returns how many calls were restored.
func (b *B2BUA) Restore(ctx context.Context) (int, error) {
	if b.o.Calls == nil {
		return 0, nil
	}
	recs, err := b.o.Calls.LoadCalls()
	if err != nil {
		return 0, fmt.Errorf("loading saved calls: %w", err)
	}
	ids := make([]string, 0, len(recs))
	for id := range recs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var restored []*call
	defer func() {
		// Save the raised CSeqs, so that a second failover raises from
		// there; in the background, for the box to serve at once.
		if len(restored) == 0 {
			return
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			for _, c := range restored {
				c.persist()
			}
		}()
	}()
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return len(restored), fmt.Errorf("restoring saved calls: %w", err)
		}
		if c := b.restoreOne(id, recs[id]); c != nil {
			restored = append(restored, c)
		}
	}
	return len(restored), nil
}

// restoreOne restores one saved call; nil when it did not.
func (b *B2BUA) restoreOne(id string, data []byte) *call {
	s, err := ParseSavedCall(data)
	if err == nil && s.Call.ID != id {
		err = fmt.Errorf("saved call %q stored under id %q", s.Call.ID, id)
	}
	if err != nil {
		b.log.Error("dropping a saved call that cannot be restored", "id", id, "err", err)
		b.dropSaved(id, s.Call)
		return nil
	}
	if b.running(s.Call) {
		b.log.Info("saved call is already running here", "call", id)
		return nil
	}
	m, err := b.o.Media.Restore(s.Media)
	if err != nil {
		b.log.Error("dropping a saved call: its media cannot be restored", "call", id, "err", err)
		b.dropSaved(id, s.Call)
		return nil
	}
	c := &call{
		b:     b,
		done:  make(chan struct{}),
		acks:  map[ackKey]chan struct{}{},
		st:    s.Call,
		media: m,
		saved: true,
	}
	c.st.State = StateAnswered
	c.st.Legs = [2]*LegState{}
	for side, l := range s.Call.Legs {
		l.Dialog.LocalSeq += SeqMargin
		c.legs[side] = l
	}

	b.mu.Lock()
	if b.runningLocked(s.Call) {
		b.mu.Unlock()
		if err := m.Close(); err != nil {
			b.log.Warn("closing media session", "call", id, "err", err)
		}
		return nil
	}
	b.calls[id] = c
	for _, l := range c.legs {
		b.legs[l.Dialog.CallID] = c
		if l.Number != "" && l.Trunk == "" {
			b.active[l.Number]++
		}
		if l.Trunk != "" {
			b.trunkLegs.Store(l.Dialog.CallID, l.Trunk)
			// The call runs over the trunk: it counts, whatever the limit.
			b.holdChannel(l.Trunk)
		}
	}
	c.registered = true
	b.mu.Unlock()

	b.log.Info("call restored", "call", id, "caller", s.Call.Caller, "callee", s.Call.Callee,
		"port_a", s.Media.Legs[LegA].Port, "port_b", s.Media.Legs[LegB].Port)
	if ma, ok := m.(mediaActivity); ok && b.o.RestoredIdle > 0 {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			c.endIfSilent(ma, b.o.RestoredIdle)
		}()
	}
	return c
}

// mediaActivity is a media session that counts packets; *media.Session
// is one.
type mediaActivity interface {
	Stats() media.Stats
}

// endIfSilent ends a restored call when no media packet came from either
// phone within idle: its phones hung up while no box answered, and a call
// nobody ends would keep both extensions busy.
func (c *call) endIfSilent(m mediaActivity, idle time.Duration) {
	t := time.NewTimer(idle)
	defer t.Stop()
	select {
	case <-c.done:
		return
	case <-t.C:
	}
	st := m.Stats()
	if !st.Legs[LegA].LastPacket.IsZero() || !st.Legs[LegB].LastPacket.IsZero() {
		return
	}
	c.b.log.Warn("no media on a restored call; hanging up", "call", c.st.ID, "after", idle)
	c.end(cdr.Answered, 200, BySystem, LegA, LegB)
}

// running reports whether the call or one of its legs is known here.
func (b *B2BUA) running(st CallState) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.runningLocked(st)
}

func (b *B2BUA) runningLocked(st CallState) bool {
	if b.calls[st.ID] != nil {
		return true
	}
	for _, l := range st.Legs {
		if l != nil && b.legs[l.Dialog.CallID] != nil {
			return true
		}
	}
	return false
}

// dropSaved deletes a saved call that cannot be carried on and, when enough
// of it was read, writes its CDR: it ends now, hung up by the system.
func (b *B2BUA) dropSaved(id string, st CallState) {
	if err := b.o.Calls.DeleteCall(id); err != nil {
		b.log.Warn("deleting a saved call", "id", id, "err", err)
	}
	if st.ID == "" || st.Start.IsZero() {
		return
	}
	c := &call{b: b, st: st}
	if c.st.Attempt < 1 {
		c.st.Attempt = 1
	}
	b.writeCDR(c.record(cdr.Answered, 200, BySystem))
}

// Abandon forgets every call without a word to the phones: no BYE, no CDR,
// and the saved records stay, for the twin to carry the answered calls on.
// Media sessions are closed; ringing calls are cancelled (the caller gets
// 503 if the SIP stack still runs). It is for a box that hands its calls
// over or is being torn down as if it had crashed; stop serving SIP before
// calling it. It returns how many answered calls were left.
func (b *B2BUA) Abandon() int {
	b.mu.Lock()
	cs := make([]*call, 0, len(b.calls))
	for _, c := range b.calls {
		cs = append(cs, c)
	}
	clear(b.calls)
	clear(b.legs)
	clear(b.active)
	b.mu.Unlock()
	b.trunkLegs.Clear()
	if b.o.Trunks != nil {
		b.o.Trunks.ReleaseAll()
	}
	n := 0
	for _, c := range cs {
		c.mu.Lock()
		if c.ended {
			c.mu.Unlock()
			continue
		}
		if c.st.State != StateRinging {
			n++
		}
		c.ended = true
		c.st.State = StateEnded
		rc, m := c.ringCancel, c.media
		c.mu.Unlock()
		if rc != nil {
			rc(errShutdown)
		}
		if m != nil {
			if err := m.Close(); err != nil {
				b.log.Warn("closing media session", "call", c.st.ID, "err", err)
			}
		}
		close(c.done)
	}
	if len(cs) > 0 {
		b.log.Info("calls abandoned for the twin", "answered", n, "all", len(cs))
	}
	return n
}
