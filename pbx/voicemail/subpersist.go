package voicemail

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"
)

// SubscriptionStore keeps the message-summary subscriptions durably;
// *store.Store implements it (its bucket replicates to the twin). A Store
// that also implements it gets its subscriptions carried across a
// failover.
type SubscriptionStore interface {
	PutMWISubscription(id string, state []byte) error
	DeleteMWISubscription(id string) error
	MWISubscriptions() (map[string][]byte, error)
}

// SeqMargin is added to a subscription's CSeq when the twin takes it
// over: the box that died may have sent NOTIFYs after its last save. A
// subscription is saved again before it has sent half as many.
const SeqMargin = 100

// savedSubVersion is the savedSub.Version this package writes and reads.
const savedSubVersion = 1

// savedSub is the stored state of one subscription.
type savedSub struct {
	Version int    `json:"version"`
	Box     string `json:"box"`
	savedDialog
	Expires time.Time `json:"expires"`
}

// savedDialog is the stored state of a dialog the mailbox holds as UAS
// (a subscription, a mailbox call) and our Contact in it.
type savedDialog struct {
	CallID       string   `json:"call_id"`
	LocalTag     string   `json:"local_tag"`
	LocalURI     string   `json:"local_uri"`
	RemoteTag    string   `json:"remote_tag"`
	RemoteURI    string   `json:"remote_uri"`
	RemoteTarget string   `json:"remote_target"`
	Routes       []string `json:"routes,omitempty"`
	Transport    string   `json:"transport"`
	Peer         string   `json:"peer"`
	Us           string   `json:"us"`
	Seq          uint32   `json:"seq"`
}

// saveDialog is the stored state of d with our Contact us.
func saveDialog(d *dialog, us sip.Uri) savedDialog {
	d.mu.Lock()
	seq := d.seq
	d.mu.Unlock()
	v := savedDialog{
		CallID: d.callID, LocalTag: d.localTag, LocalURI: d.localURI.String(), RemoteTag: d.remoteTag,
		RemoteURI: d.remoteURI.String(), RemoteTarget: d.remoteTarget.String(), Transport: d.transport,
		Peer: d.peer, Us: us.String(), Seq: seq,
	}
	for _, r := range d.routes {
		v.Routes = append(v.Routes, r.String())
	}
	return v
}

// dialog reads back a stored dialog and our Contact; its CSeq is raised
// by SeqMargin.
func (v savedDialog) dialog() (*dialog, sip.Uri, error) {
	var us sip.Uri
	switch {
	case v.CallID == "" || v.LocalTag == "" || v.RemoteTag == "":
		return nil, us, errors.New("Call-ID or tags missing")
	case v.Transport != "UDP" && v.Transport != "TCP" && v.Transport != "TLS":
		return nil, us, fmt.Errorf("transport %q", v.Transport)
	case v.Peer == "":
		return nil, us, errors.New("no peer")
	}
	d := &dialog{callID: v.CallID, localTag: v.LocalTag, remoteTag: v.RemoteTag, transport: v.Transport, peer: v.Peer,
		seq: v.Seq + SeqMargin}
	for _, u := range []struct {
		s   string
		dst *sip.Uri
	}{{v.LocalURI, &d.localURI}, {v.RemoteURI, &d.remoteURI}, {v.RemoteTarget, &d.remoteTarget}, {v.Us, &us}} {
		if err := parseStoredURI(u.s, u.dst); err != nil {
			return nil, us, err
		}
	}
	for _, r := range v.Routes {
		var u sip.Uri
		if err := parseStoredURI(r, &u); err != nil {
			return nil, us, fmt.Errorf("route: %w", err)
		}
		d.routes = append(d.routes, u)
	}
	return d, us, nil
}

// encodeSub is the stored state of sub with its CSeq now.
func encodeSub(sub *subscription, expires time.Time) ([]byte, uint32, error) {
	v := savedSub{Version: savedSubVersion, Box: sub.box, savedDialog: saveDialog(sub.d, sub.us), Expires: expires.UTC()}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, 0, fmt.Errorf("encoding subscription %s: %w", sub.d.callID, err)
	}
	return b, v.Seq, nil
}

// decodeSub reads a stored subscription; its CSeq is raised by
// SeqMargin.
func decodeSub(b []byte) (*subscription, error) {
	var v savedSub
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("reading a stored subscription: %w", err)
	}
	switch {
	case v.Version != savedSubVersion:
		return nil, fmt.Errorf("stored subscription %q: version %d, want %d", v.CallID, v.Version, savedSubVersion)
	case v.Box == "":
		return nil, fmt.Errorf("stored subscription %q: mailbox missing", v.CallID)
	}
	d, us, err := v.dialog()
	if err != nil {
		return nil, fmt.Errorf("stored subscription %q: %w", v.CallID, err)
	}
	return &subscription{d: d, box: v.Box, us: us, expires: v.Expires, savedSeq: d.seq}, nil
}

// parseStoredURI reads a SIP URI of a stored subscription: it must name
// a host and read back as it is written, or the next save would store
// what cannot be read.
func parseStoredURI(s string, u *sip.Uri) error {
	if err := sip.ParseUri(s, u); err != nil {
		return fmt.Errorf("URI %q: %w", s, err)
	}
	if u.Host == "" || (u.Scheme != "sip" && u.Scheme != "sips") {
		return fmt.Errorf("URI %q: not a SIP URI with a host", s)
	}
	var again sip.Uri
	if err := sip.ParseUri(u.String(), &again); err != nil || again.String() != u.String() {
		return fmt.Errorf("URI %q does not read back as written", s)
	}
	return nil
}

// saveSub stores sub's state (when the store keeps subscriptions).
func (s *Service) saveSub(sub *subscription) {
	ss, ok := s.o.Store.(SubscriptionStore)
	if !ok {
		return
	}
	s.mu.Lock()
	expires := sub.expires
	s.mu.Unlock()
	b, seq, err := encodeSub(sub, expires)
	if err == nil {
		s.storeWrite(func() { err = ss.PutMWISubscription(sub.d.callID, b) })
	}
	if err != nil {
		s.log.Error("saving a message-summary subscription", "mailbox", sub.box, "err", err)
		return
	}
	s.mu.Lock()
	sub.savedSeq = max(sub.savedSeq, seq)
	s.mu.Unlock()
}

// deleteSubs removes ended subscriptions from the store.
func (s *Service) deleteSubs(ids []string) {
	ss, ok := s.o.Store.(SubscriptionStore)
	if !ok {
		return
	}
	s.storeWrite(func() {
		for _, id := range ids {
			if err := ss.DeleteMWISubscription(id); err != nil {
				s.log.Error("deleting a message-summary subscription", "err", err)
			}
		}
	})
}

// restoreSubs replaces the subscriptions held in memory with the stored
// ones (the twin's, or this box's before a restart), CSeqs raised and
// saved again; expired and unreadable ones are deleted.
func (s *Service) restoreSubs() {
	ss, ok := s.o.Store.(SubscriptionStore)
	if !ok {
		return
	}
	stored, err := ss.MWISubscriptions()
	if err != nil {
		s.log.Error("reading the message-summary subscriptions", "err", err)
		return
	}
	now := s.o.Now()
	var gone []string
	var live []*subscription
	for id, b := range stored {
		sub, err := decodeSub(b)
		switch {
		case err != nil:
			s.log.Warn("a stored message-summary subscription cannot be read: dropped", "id", id, "err", err)
			gone = append(gone, id)
		case sub.d.callID != id:
			s.log.Warn("a stored message-summary subscription is filed under another id: dropped", "id", id, "call_id", sub.d.callID)
			gone = append(gone, id)
		case !now.Before(sub.expires):
			gone = append(gone, id)
		default:
			live = append(live, sub)
		}
	}
	s.mu.Lock()
	clear(s.subs)
	for _, sub := range live {
		if len(s.subs) < MaxSubscriptions {
			s.subs[sub.d.callID] = sub
		}
	}
	s.mu.Unlock()
	s.deleteSubs(gone)
	for _, sub := range live {
		s.saveSub(sub) // the raised CSeq: a second failover raises from it
	}
	if len(live) > 0 {
		s.log.Info("message-summary subscriptions restored", "count", len(live), "dropped", len(gone))
	}
}

// ensureRestored restores the stored subscriptions and what phones were
// told by unsolicited MWI once, before the first SUBSCRIBE, registration
// or change a box serves after it started (a single box restarting); a
// twin that takes over does it in TakeOver.
func (s *Service) ensureRestored() {
	s.restoreMu.Lock()
	defer s.restoreMu.Unlock()
	if !s.restored {
		s.restored = true
		s.restoreSubs()
		s.restoreTold()
	}
}
