package voicemail

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ToldStore keeps what each contact was told by unsolicited MWI;
// *store.Store implements it (its bucket replicates to the twin). With
// it the twin that takes over neither repeats a NOTIFY at a registration
// refresh nor forgets a lamp it must put out. It is written once per
// NOTIFY answered (a change, a new registration while messages wait),
// never for a refresh.
type ToldStore interface {
	PutMWITold(key string, state []byte) error
	DeleteMWITold(key string) error
	MWITold() (map[string][]byte, error)
}

// savedTold is the stored state of what a contact was told.
type savedTold struct {
	CallID string    `json:"call_id"`
	New    int       `json:"new"`
	Old    int       `json:"old"`
	At     time.Time `json:"at"`
}

func encodeTold(t told) ([]byte, error) {
	b, err := json.Marshal(savedTold{CallID: t.callID, New: t.new, Old: t.old, At: t.at.UTC()})
	if err != nil {
		return nil, fmt.Errorf("encoding what a contact was told: %w", err)
	}
	return b, nil
}

// decodeTold reads back what a contact was told, stored under key.
func decodeTold(key string, b []byte) (box, contact string, t told, err error) {
	box, contact, ok := strings.Cut(key, "\x00")
	if !ok || box == "" || contact == "" {
		return "", "", told{}, fmt.Errorf("stored MWI state under %q: not mailbox NUL contact", key)
	}
	var v savedTold
	if err := json.Unmarshal(b, &v); err != nil {
		return "", "", told{}, fmt.Errorf("stored MWI state of %q: %w", contact, err)
	}
	if v.New < 0 || v.Old < 0 {
		return "", "", told{}, errors.New("stored MWI state: negative counts")
	}
	return box, contact, told{callID: v.CallID, new: v.New, old: v.Old, at: v.At}, nil
}

// storeWrite runs write unless the box handed over (Abandon): a NOTIFY
// or SUBSCRIBE in flight then must not write the store its twin writes.
// Abandon waits for a write under way.
func (s *Service) storeWrite(write func()) {
	s.writeMu.RLock()
	defer s.writeMu.RUnlock()
	if !s.handedOver {
		write()
	}
}

// saveTold stores what contact of box was told (when the store keeps
// it).
func (s *Service) saveTold(box, contact string, t told) {
	ts, ok := s.o.Store.(ToldStore)
	if !ok {
		return
	}
	s.storeWrite(func() { s.putTold(ts, box, contact, t) })
}

func (s *Service) putTold(ts ToldStore, box, contact string, t told) {
	b, err := encodeTold(t)
	if err == nil {
		err = ts.PutMWITold(toldKey(box, contact), b)
	}
	if err != nil {
		s.log.Error("saving what a phone was told of its mailbox", "mailbox", box, "contact", contact, "err", err)
	}
}

// forgetTold removes what contacts were told from the store.
func (s *Service) forgetTold(keys []string) {
	ts, ok := s.o.Store.(ToldStore)
	if !ok {
		return
	}
	s.storeWrite(func() {
		for _, k := range keys {
			if err := ts.DeleteMWITold(k); err != nil {
				s.log.Error("forgetting what a phone was told of its mailbox", "err", err)
			}
		}
	})
}

// restoreTold replaces what contacts were told, held in memory, with
// the stored state (the twin's, or this box's before a restart);
// unreadable records are deleted.
func (s *Service) restoreTold() {
	ts, ok := s.o.Store.(ToldStore)
	if !ok {
		return
	}
	stored, err := ts.MWITold()
	if err != nil {
		s.log.Error("reading what phones were told of their mailboxes", "err", err)
		return
	}
	var bad []string
	s.mu.Lock()
	clear(s.told)
	for k, b := range stored {
		box, contact, t, err := decodeTold(k, b)
		if err != nil {
			s.log.Warn("stored MWI state cannot be read: dropped", "err", err)
			bad = append(bad, k)
			continue
		}
		s.setToldLocked(box, contact, t)
	}
	s.mu.Unlock()
	s.forgetTold(bad)
}
