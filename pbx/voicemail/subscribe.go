package voicemail

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/twinpbx/twinpbx/pbx/sipdo"
)

// Subscription lifetimes (seconds) of message-summary subscriptions.
const (
	minSubscription     = 60
	maxSubscription     = 3600
	defaultSubscription = 3600
)

// subscription is one phone's message-summary subscription.
type subscription struct {
	d       *dialog
	box     string
	us      sip.Uri
	expires time.Time
	// savedSeq is the CSeq of the last save (subpersist.go); under
	// Service.mu.
	savedSeq uint32
	// sending keeps NOTIFYs of one subscription in order: each reads
	// the mailbox after the one before it was answered.
	sending sync.Mutex
}

// ServeSubscribe handles SUBSCRIBE: for the message-summary event of the
// subscriber's own mailbox (digest-authenticated), a new subscription or
// the refresh of one; each is answered and followed by a NOTIFY with the
// mailbox's state, as are later changes. Other events get 489.
func (s *Service) ServeSubscribe(req *sip.Request, tx sip.ServerTransaction) {
	ev := req.GetHeader("Event")
	if ev == nil || !strings.EqualFold(strings.TrimSpace(strings.SplitN(ev.Value(), ";", 2)[0]), "message-summary") {
		respondPlain(tx, req, 489, "Bad Event", s.log)
		return
	}
	cid := req.CallID()
	if cid == nil || req.From() == nil || req.To() == nil {
		respondPlain(tx, req, 400, "Bad Request", s.log)
		return
	}
	expires := defaultSubscription
	if h := req.GetHeader("Expires"); h != nil {
		n, err := strconv.Atoi(strings.TrimSpace(h.Value()))
		if err != nil || n < 0 {
			respondPlain(tx, req, 400, "Bad Request", s.log)
			return
		}
		expires = n
	}
	if expires > 0 && expires < minSubscription {
		res := sip.NewResponseFromRequest(req, 423, "Interval Too Brief", nil)
		res.AppendHeader(sip.NewHeader("Min-Expires", strconv.Itoa(minSubscription)))
		_ = tx.Respond(res)
		return
	}
	expires = min(expires, maxSubscription)
	s.ensureRestored()

	s.mu.Lock()
	sub := s.subs[cid.Value()]
	s.mu.Unlock()
	if hasToTag(req) {
		// A refresh or an unsubscribe: the dialog must be ours.
		if sub == nil {
			respondPlain(tx, req, 481, "Subscription Does Not Exist", s.log)
			return
		}
	} else {
		user, ok := s.o.Auth.Authenticate(req, tx, false)
		if !ok {
			return
		}
		box := req.Recipient.User
		if box == s.o.Config().DialNumber() || box == "" {
			box = user
		}
		e, known := s.o.Directory.Extension(box)
		switch {
		case box != user:
			s.log.Info("message-summary subscription refused: another's mailbox", "user", user, "mailbox", box)
			respondPlain(tx, req, 403, "Forbidden", s.log)
			return
		case !known || !s.o.Config().Mailbox(e):
			respondPlain(tx, req, 404, "Not Found", s.log)
			return
		}
		d, err := newDialog(req, sip.GenerateTagN(16))
		if err != nil {
			respondPlain(tx, req, 400, "Bad Request", s.log)
			return
		}
		sub = &subscription{d: d, box: box, us: s.o.Contact(strings.ToLower(req.Transport()))}
	}
	s.mu.Lock()
	if s.closed {
		// Close is waiting for the NOTIFYs under way: start no more.
		s.mu.Unlock()
		respondPlain(tx, req, 503, "Service Unavailable", s.log)
		return
	}
	expired := s.pruneLocked()
	if expires > 0 && s.subs[cid.Value()] == nil && len(s.subs) >= MaxSubscriptions {
		s.mu.Unlock()
		s.deleteSubs(expired)
		s.log.Warn("message-summary subscription refused: too many", "max", MaxSubscriptions)
		respondPlain(tx, req, 503, "Service Unavailable", s.log)
		return
	}
	if expires == 0 {
		delete(s.subs, cid.Value())
		expired = append(expired, cid.Value())
	} else {
		sub.expires = s.o.Now().Add(time.Duration(expires) * time.Second)
		s.subs[cid.Value()] = sub
	}
	s.wg.Add(1)
	s.mu.Unlock()
	// Stored before the answer, so that the twin that takes over right
	// after it holds the subscription.
	s.deleteSubs(expired)
	if expires > 0 {
		s.saveSub(sub)
	}
	res := sub.d.response(req, 200, "OK", sub.us)
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	if err := tx.Respond(res); err != nil {
		s.log.Debug("answering SUBSCRIBE", "err", err)
	}
	s.log.Info("message-summary subscription", "mailbox", sub.box, "expires", expires)
	go func() {
		defer s.wg.Done()
		s.notify(sub, expires == 0)
	}()
}

// changed tells the subscribers of box its new state.
func (s *Service) changed(box string) {
	s.ensureRestored()
	s.mu.Lock()
	expired := s.pruneLocked()
	var subs []*subscription
	for _, sub := range s.subs {
		if sub.box == box {
			subs = append(subs, sub)
		}
	}
	// A message saved as the box stops is still told: the mailbox call
	// that saved it holds the WaitGroup, so Close waits for these too.
	s.wg.Add(len(subs))
	s.mu.Unlock()
	s.deleteSubs(expired)
	for _, sub := range subs {
		go func() {
			defer s.wg.Done()
			s.notify(sub, false)
		}()
	}
	s.unsolicitedChanged(box)
}

// notify sends one NOTIFY with the mailbox's state.
func (s *Service) notify(sub *subscription, terminated bool) {
	sub.sending.Lock()
	defer sub.sending.Unlock()
	sum, err := s.boxes.Summary(sub.box)
	if err != nil {
		s.log.Error("reading a mailbox for NOTIFY", "mailbox", sub.box, "err", err)
		return
	}
	sum.Account = (&sip.Uri{Scheme: "sip", User: s.o.Config().DialNumber(), Host: sub.us.Host}).String()
	req := sub.d.request(sip.NOTIFY, sub.us)
	s.mu.Lock()
	resave := !terminated && req.CSeq().SeqNo >= sub.savedSeq+SeqMargin/2
	s.mu.Unlock()
	if resave {
		// Before the twin's margin is used up.
		s.saveSub(sub)
	}
	req.AppendHeader(sip.NewHeader("Event", "message-summary"))
	state := "terminated;reason=timeout"
	if !terminated {
		s.mu.Lock()
		left := int(sub.expires.Sub(s.o.Now()) / time.Second)
		s.mu.Unlock()
		state = fmt.Sprintf("active;expires=%d", max(left, 0))
	}
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/simple-message-summary"))
	req.SetBody(sum.Body())
	if err := s.ready(req); err != nil {
		s.log.Info("NOTIFY of message-summary", "mailbox", sub.box, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 64*sip.T1)
	defer cancel()
	res, err := sipdo.Do(ctx, s.o.Client, req)
	switch {
	case err != nil:
		s.log.Info("NOTIFY of message-summary", "mailbox", sub.box, "err", err)
	case res.StatusCode == 481:
		s.mu.Lock()
		gone := s.subs[sub.d.callID] == sub
		if gone {
			delete(s.subs, sub.d.callID)
		}
		s.mu.Unlock()
		if gone {
			s.deleteSubs([]string{sub.d.callID})
		}
	}
}

// pruneLocked forgets expired subscriptions and returns their ids, for
// deleteSubs once s.mu is released; s.mu is held.
func (s *Service) pruneLocked() []string {
	now := s.o.Now()
	var ids []string
	for id, sub := range s.subs {
		if now.After(sub.expires) {
			delete(s.subs, id)
			ids = append(ids, id)
		}
	}
	return ids
}
