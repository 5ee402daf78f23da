package voicemail

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/location"
	"github.com/twinpbx/twinpbx/pbx/sipdo"
)

// Unsolicited MWI: many desk phones light their message lamp from a
// message-summary NOTIFY without ever subscribing. Each registered
// contact of a mailbox's extension that holds no subscription is sent
// one, out of any dialog, when the mailbox's counts change and when it
// registers while messages wait (voicemail.unsolicited_mwi).

// told is what a contact was last told, so that a registration refresh
// does not repeat it.
type told struct {
	callID   string // of the REGISTER that made the binding
	new, old int
	at       time.Time
}

// litKept is how long a contact that is no longer registered is
// remembered as told that messages wait, so that it hears they are gone
// when it comes back.
const litKept = 24 * time.Hour

func toldKey(box, contact string) string { return box + "\x00" + contact }

// toldLocked is what contact of box was last told; s.mu is held.
func (s *Service) toldLocked(box, contact string) (told, bool) {
	t, ok := s.told[box][contact]
	return t, ok
}

// setToldLocked records what contact of box was told; s.mu is held.
func (s *Service) setToldLocked(box, contact string, t told) {
	m := s.told[box]
	if m == nil {
		m = map[string]told{}
		s.told[strings.Clone(box)] = m // box may be a piece of a whole request
	}
	m[contact] = t
}

// Registered is called after a REGISTER was accepted (only then: the
// caller checks the answer was a 2xx): each binding the request made or
// refreshed for an extension with a mailbox gets a NOTIFY when messages
// wait and the contact was not told so since it registered (a new
// registration, a restart of the phone with a new Call-ID, or counts it
// has not heard), unless it subscribed; a contact told that messages
// waited is told when none does any more. The counts are kept in memory
// (Mailboxes.Summary): it reads a mailbox's records only when they are
// older than summaryMaxAge.
func (s *Service) Registered(req *sip.Request) {
	to, cid, cseq := req.To(), req.CallID(), req.CSeq()
	if to == nil || cid == nil || cseq == nil {
		return
	}
	s.RegisteredBy(to.Address.User, cid.Value(), cseq.SeqNo)
}

// RegisteredBy is Registered for the REGISTER of mailbox box with callID
// and cseq, read by whichever parser. box and callID may be pieces of a
// datagram that is reused once it returns: what outlives the call keeps
// copies.
func (s *Service) RegisteredBy(box, callID string, cseq uint32) {
	s.ensureFinished()
	s.ensureRestored()
	if s.o.Contacts == nil || !s.o.Config().Unsolicited() {
		return
	}
	e, known := s.o.Directory.Extension(box)
	if !known || !s.o.Config().Mailbox(e) {
		return
	}
	sum, err := s.boxes.Summary(box)
	if err != nil {
		s.log.Error("reading a mailbox for an unsolicited NOTIFY", "mailbox", box, "err", err)
		return
	}
	s.mu.Lock()
	lit := false
	for _, t := range s.told[box] {
		lit = lit || t.new > 0
	}
	s.mu.Unlock()
	if sum.New == 0 && !lit {
		return // nothing waits and no lamp is lit: the common case
	}
	bs := s.o.Contacts(box)
	s.pruneTold(box, bs)
	for _, b := range bs {
		if b.CallID != callID || b.CSeq != cseq || b.Holder != "" {
			continue // not made by this REGISTER
		}
		s.mu.Lock()
		last, ok := s.toldLocked(box, b.Contact)
		s.mu.Unlock()
		if sum.New == 0 && !(ok && last.new > 0) {
			continue // nothing waits and this lamp is off
		}
		if ok && last.callID == b.CallID && last.new == sum.New && last.old == sum.Old {
			continue // a refresh: already told
		}
		s.sendUnsolicited(box, b)
	}
}

// unsolicitedChanged tells the contacts of box that hold no subscription
// its new counts.
func (s *Service) unsolicitedChanged(box string) {
	if s.o.Contacts == nil || !s.o.Config().Unsolicited() {
		return
	}
	bs := s.o.Contacts(box)
	s.pruneTold(box, bs)
	for _, b := range bs {
		if b.Holder == "" {
			s.sendUnsolicited(box, b)
		}
	}
}

// subscribedLocked reports whether the contact of binding b holds a
// message-summary subscription to box: its SUBSCRIBE came from the
// binding's source or named the binding's contact. s.mu is held.
func (s *Service) subscribedLocked(box string, b location.Binding) bool {
	tp, peer, err := location.ParseSource(b.Source)
	for _, sub := range s.subs {
		if sub.box != box {
			continue
		}
		if err == nil && sub.d.peer == peer && strings.EqualFold(sub.d.transport, tp) {
			return true
		}
		if sub.d.remoteTarget.String() == b.Contact {
			return true
		}
	}
	return false
}

// sendUnsolicited sends the NOTIFY to b in the background, unless it
// subscribed or the service is stopping.
func (s *Service) sendUnsolicited(box string, b location.Binding) {
	box = strings.Clone(box) // used after RegisteredBy returns
	s.background(func() bool { return s.subscribedLocked(box, b) }, func() {
		if err := s.notifyUnsolicited(box, b); err != nil {
			s.log.Info("unsolicited NOTIFY of message-summary", "mailbox", box, "contact", b.Contact, "err", err)
		}
	})
}

// notifyUnsolicited sends one out-of-dialog NOTIFY with the mailbox's
// counts to b and records what b was told.
func (s *Service) notifyUnsolicited(box string, b location.Binding) error {
	tp, peer, err := location.ParseSource(b.Source)
	if err != nil {
		return err
	}
	var target sip.Uri
	if err := sip.ParseUri(b.Contact, &target); err != nil {
		return fmt.Errorf("reading the contact %q: %w", b.Contact, err)
	}
	// One NOTIFY per contact at a time, each reading the counts after
	// the one before was answered: the last one sent is the newest.
	lock := s.sendLock(toldKey(box, b.Contact))
	lock.Lock()
	defer lock.Unlock()
	sum, err := s.boxes.Summary(box)
	if err != nil {
		return fmt.Errorf("reading the mailbox: %w", err)
	}
	// Recorded before it is sent, so that a registration refresh
	// meanwhile does not send it again; if no answer comes, what the
	// contact was told before is put back (a lamp it lit stays known as
	// lit, to be put out when the phone is reached again).
	now := told{callID: b.CallID, new: sum.New, old: sum.Old, at: s.o.Now()}
	s.mu.Lock()
	before, hadBefore := s.toldLocked(box, b.Contact)
	s.setToldLocked(box, b.Contact, now)
	s.mu.Unlock()
	sent := false
	defer func() {
		if sent {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if t, ok := s.toldLocked(box, b.Contact); !ok || t != now {
			return // told anew meanwhile
		}
		if hadBefore {
			s.setToldLocked(box, b.Contact, before)
		} else {
			delete(s.told[box], b.Contact)
		}
	}()
	us := s.o.Contact(strings.ToLower(tp))
	sum.Account = (&sip.Uri{Scheme: "sip", User: s.o.Config().DialNumber(), Host: us.Host}).String()
	req := sip.NewRequest(sip.NOTIFY, target)
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: tp, Host: us.Host, Port: us.Port, Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranch())
	via.Params.Add("rport", "")
	req.AppendHeader(via)
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: s.o.Config().DialNumber(), Host: us.Host}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: box, Host: us.Host}, Params: sip.NewParams()})
	cid := sip.CallIDHeader(sip.GenerateTagN(24))
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.NOTIFY})
	req.AppendHeader(&sip.ContactHeader{Address: us})
	req.AppendHeader(sip.NewHeader("Event", "message-summary"))
	req.AppendHeader(sip.NewHeader("Subscription-State", "active"))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/simple-message-summary"))
	req.SetBody(sum.Body())
	req.SetTransport(tp)
	req.SetDestination(peer)
	if err := s.ready(req); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 64*sip.T1)
	defer cancel()
	res, err := sipdo.Do(ctx, s.o.Client, req)
	if err != nil {
		return err
	}
	// An answer, even a refusal (a phone that takes no unsolicited
	// NOTIFY answers 481 or 489), counts as told: it is asked again
	// only when the counts change or it registers anew.
	sent = true
	s.saveTold(box, b.Contact, now)
	if res.StatusCode >= 300 {
		return fmt.Errorf("answered %d %s", res.StatusCode, res.Reason)
	}
	return nil
}

// sendLock is the lock that orders the unsolicited NOTIFYs of one
// contact (striped: contacts may share one).
func (s *Service) sendLock(key string) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return &s.sending[h.Sum32()%uint32(len(s.sending))]
}

// pruneTold forgets what contacts of box that are no longer registered
// were told, except that messages waited (for litKept).
func (s *Service) pruneTold(box string, bs []location.Binding) {
	now := s.o.Now()
	var gone []string
	s.mu.Lock()
	for contact, t := range s.told[box] {
		if t.new > 0 && now.Sub(t.at) < litKept {
			continue
		}
		if !slices.ContainsFunc(bs, func(x location.Binding) bool { return x.Contact == contact }) {
			delete(s.told[box], contact)
			gone = append(gone, toldKey(box, contact))
		}
	}
	if len(s.told[box]) == 0 {
		delete(s.told, box)
	}
	s.mu.Unlock()
	s.forgetTold(gone)
}
