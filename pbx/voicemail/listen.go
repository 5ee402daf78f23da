package voicemail

import (
	"errors"
	"time"

	"github.com/emiago/sipgo/sip"
)

// keyWait is how long the menu waits for a key after a message ended.
const keyWait = 4 * time.Second

// serveListen answers an owner who dialled the voicemail number: the
// caller authenticates by digest as for any call, and hears the own
// mailbox.
func (s *Service) serveListen(req *sip.Request, tx sip.ServerTransaction) {
	user, ok := s.o.Auth.Authenticate(req, tx, true)
	if !ok {
		return
	}
	log := s.log.With("call", callID(req), "mailbox", user)
	if from := req.From(); from == nil || from.Address.User != user {
		log.Info("mailbox call refused: From is not the authenticated user")
		respondPlain(tx, req, 403, "Forbidden", log)
		return
	}
	e, known := s.o.Directory.Extension(user)
	if !known || !s.o.Config().Mailbox(e) {
		log.Info("mailbox call refused: the extension has no mailbox")
		respondPlain(tx, req, 404, "Not Found", log)
		return
	}
	start := s.o.Now()
	ss, ok := s.answer(req, tx, "", log)
	if !ok {
		return
	}
	log.Info("owner listening to the mailbox")
	go func() {
		defer ss.finish()
		ss.listen(user)
		s.writeCDR(req, Diversion{Mailbox: user, Caller: user, Start: start}, start, s.o.Now(), ss.by(), log)
	}()
}

// listen runs the menu until the end of the messages or a hang-up.
func (ss *session) listen(box string) {
	ep := ss.ep
	boxes := ss.s.boxes
	msgs, err := boxes.List(box)
	if err != nil {
		ss.log.Error("listing the mailbox", "err", err)
		ss.hangup()
		return
	}
	n := 0
	for _, m := range msgs {
		if m.New {
			n++
		}
	}
	first, err := ep.play(ss.ctx, CountTones(ep.codec, n), true)
	if err != nil {
		return
	}
	menu := NewMenu(msgs)
	act := menu.Start()
	if first != 0 && act == Play {
		// A key pressed during the count applies to the first message.
		var msg Message
		act, msg = menu.Key(first)
		act = ss.apply(act, msg, menu)
	}
	for {
		switch act {
		case Done:
			if _, err := ep.play(ss.ctx, Goodbye(ep.codec), false); err == nil {
				ss.hangup()
			}
			return
		case Play:
			msg, _ := menu.Current()
			key, err := ss.playMessage(msg)
			if err != nil {
				return
			}
			if key == 0 {
				act, msg = menu.Next()
			} else {
				act, msg = menu.Key(key)
			}
			act = ss.apply(act, msg, menu)
		default:
			act = Done
		}
	}
}

// playMessage plays the separator and the message; it returns the first
// key pressed during or up to keyWait after it (0: none).
func (ss *session) playMessage(msg Message) (byte, error) {
	ep := ss.ep
	if k, err := ep.play(ss.ctx, Separator(ep.codec), true); err != nil || k != 0 {
		return k, err
	}
	audio, err := ss.s.boxes.Audio(msg)
	if err != nil {
		ss.log.Error("a message cannot be played", "id", msg.ID, "err", err)
		audio = Busy(ep.codec)[:4000]
	} else if msg.Codec != ep.codec {
		audio = transcode(audio, msg.Codec, ep.codec)
	}
	if k, err := ep.play(ss.ctx, audio, true); err != nil || k != 0 {
		return k, err
	}
	return ep.waitKey(ss.ctx, keyWait)
}

// apply carries out Keep and Delete and returns the action that follows.
func (ss *session) apply(act Action, msg Message, menu *Menu) Action {
	boxes := ss.s.boxes
	switch act {
	case Keep:
		if err := boxes.MarkOld(msg); err != nil && !errors.Is(err, ErrNotFound) {
			ss.log.Error("marking a message listened", "id", msg.ID, "err", err)
		}
	case Delete:
		if err := boxes.Delete(msg); err != nil {
			ss.log.Error("deleting a message", "id", msg.ID, "err", err)
		} else {
			ss.log.Info("message deleted", "id", msg.ID)
		}
	case Play, Done:
		return act
	case Ignore:
		return Play
	}
	if menu.Remaining() {
		return Play
	}
	return Done
}
