package media

import (
	"errors"
	"fmt"
	"time"

	"github.com/twinpbx/twinpbx/pbx/sdp"
)

// Join makes one session, named id, out of two: the pair of s1 facing leg
// l1 becomes the new session's leg A, the pair of s2 facing leg l2 its leg
// B, each with what its session knew of the leg (addresses, latches, the
// o= line presented to it). The phones on those legs keep the ports they
// send to, so a PBX can connect them (an attended transfer) without new
// SDP. The two other pairs are closed and their ports returned; s1 and s2
// stop forwarding and are closed. id may be s1's or s2's id. On error the
// sessions are left as they were.
func (r *Relay) Join(id string, s1 *Session, l1 Leg, s2 *Session, l2 Leg) (*Session, error) {
	if !l1.valid() || !l2.valid() || s1 == nil || s2 == nil || s1 == s2 || s1.r != r || s2.r != r {
		return nil, fmt.Errorf("joining media sessions into %q: need two sessions of this relay and a leg of each", id)
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	if cur, dup := r.sessions[id]; dup && cur != s1 && cur != s2 {
		r.mu.Unlock()
		return nil, fmt.Errorf("media: session %q already open", id)
	}
	r.mu.Unlock()
	for _, s := range []*Session{s1, s2} {
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return nil, fmt.Errorf("joining media sessions into %q: session %q is closed", id, s.id)
		}
	}
	s1.sdpMu.Lock()
	s2.sdpMu.Lock()
	a, b := s1.detach(), s2.detach()
	s2.sdpMu.Unlock()
	s1.sdpMu.Unlock()

	s := &Session{r: r, id: id, socks: [2]*pair{s1.socks[l1], s2.socks[l2]}}
	s.legs[A], s.origins[A] = keepLeg(a.legs[l1]), a.origins[l1]
	s.legs[B], s.origins[B] = keepLeg(b.legs[l2]), b.origins[l2]
	var errs []error
	for _, p := range []*pair{s1.socks[l1.other()], s2.socks[l2.other()]} {
		errs = append(errs, p.close())
		r.alloc.release(p.port)
	}
	for _, p := range s.socks {
		for _, c := range []interface{ SetReadDeadline(time.Time) error }{p.rtp, p.rtcp} {
			errs = append(errs, c.SetReadDeadline(time.Time{}))
		}
	}
	r.mu.Lock()
	for _, old := range []*Session{s1, s2} {
		if r.sessions[old.id] == old {
			delete(r.sessions, old.id)
		}
	}
	r.mu.Unlock()
	if err := r.reserve(id); err != nil {
		s.Close()
		return nil, err
	}
	if err := r.start(s); err != nil {
		return nil, err
	}
	r.log.Info("media sessions joined", "id", id, "from", s1.id, "and", s2.id, "port_a", s.socks[A].port, "port_b", s.socks[B].port)
	if err := errors.Join(errs...); err != nil {
		return s, fmt.Errorf("joining media sessions into %q: %w", id, err)
	}
	return s, nil
}

// keepLeg carries a leg's addresses and latches into a joined session;
// its counters start again.
func keepLeg(ls legState) legState {
	ls.packets, ls.bytes, ls.dropped = 0, 0, 0
	return ls
}

// detached is what a session knew when it stopped forwarding.
type detached struct {
	legs    [2]legState
	origins [2]sdp.Origin
}

// detach stops the session's forwarding without closing its sockets: the
// reads are woken by a deadline in the past. The session counts as closed
// afterwards; its sockets belong to the caller. Callers hold sdpMu.
func (s *Session) detach() detached {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	past := time.Unix(1, 0)
	for _, p := range s.socks {
		_ = p.rtp.SetReadDeadline(past)
		_ = p.rtcp.SetReadDeadline(past)
	}
	s.wg.Wait()
	s.closeOnce.Do(func() {}) // Close must not close the sockets now
	s.mu.Lock()
	defer s.mu.Unlock()
	return detached{legs: s.legs, origins: s.origins}
}

// Join is r.Join(id, s, l, with, wl) on the relay that opened s.
func (s *Session) Join(id string, l Leg, with *Session, wl Leg) (*Session, error) {
	if with == nil || with.r != s.r {
		return nil, fmt.Errorf("joining media sessions into %q: the sessions belong to different relays", id)
	}
	return s.r.Join(id, s, l, with, wl)
}
