package voicemail

import (
	"crypto/subtle"
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
	// A caller without a mailbox of its own may still open another's
	// with its PIN (login).
	own := user
	if e, known := s.o.Directory.Extension(user); !known || !s.o.Config().Mailbox(e) {
		own = ""
	}
	start := s.o.Now()
	ss, ok := s.answer(req, tx, "", log)
	if !ok {
		return
	}
	log.Info("mailbox call answered", "own", own != "")
	go func() {
		defer ss.finish()
		defer ss.hangup() // when listen returned at shutdown
		ss.startSave(callListen, Diversion{Mailbox: own, Caller: user, Start: start}, start)
		box := ss.listen(own)
		ss.settle(func() {
			s.writeCDR(callID(req), Diversion{Mailbox: box, Caller: user, Start: start}, start, s.o.Now(), ss.by(), log)
		})
	}()
}

// pinTries is how many logins a mailbox call may fail before the PBX
// hangs up.
const pinTries = 3

// listen runs the menu until the end of the messages or a hang-up, for
// box or (empty box, or * pressed during the count) the mailbox the
// caller logs in to. It returns the mailbox opened.
func (ss *session) listen(box string) string {
	ep := ss.ep
	boxes := ss.s.boxes
	var first byte
	if box != "" {
		n, err := boxes.Summary(box)
		if err != nil {
			ss.log.Error("reading the mailbox", "err", err)
			ss.hangup()
			return box
		}
		if first, err = ep.play(ss.ctx, CountTones(ep.codec, n.New), true); err != nil {
			return box
		}
	}
	if box == "" || first == '*' {
		if box = ss.login(); box == "" {
			return ""
		}
		n, _ := boxes.Summary(box)
		var err error
		if first, err = ep.play(ss.ctx, CountTones(ep.codec, n.New), true); err != nil {
			return box
		}
	}
	ss.log.Info("owner listening to the mailbox", "mailbox", box)
	msgs, err := boxes.List(box)
	if err != nil {
		ss.log.Error("listing the mailbox", "err", err)
		ss.hangup()
		return box
	}
	greeted := false
	if first == '0' {
		// 0 during the count: the greeting menu, then the messages.
		if err := ss.greetingMenu(box); err != nil {
			return box
		}
		first, greeted = 0, true
		if msgs, err = boxes.List(box); err != nil {
			ss.log.Error("listing the mailbox", "err", err)
			ss.hangup()
			return box
		}
	}
	menu := NewMenu(msgs)
	act := menu.Start()
	if act == Done && !greeted {
		// No message: a moment for the key of the greeting menu.
		k, err := ep.waitKey(ss.ctx, keyWait)
		if err != nil {
			return box
		}
		if k == '0' {
			if err := ss.greetingMenu(box); err != nil {
				return box
			}
		}
	}
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
			return box
		case Play:
			msg, _ := menu.Current()
			key, err := ss.playMessage(msg)
			if err != nil {
				return box
			}
			if key == '0' {
				// The greeting menu, then the message again.
				if err := ss.greetingMenu(box); err != nil {
					return box
				}
				continue
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

// login asks for a mailbox number and its PIN, each ended by #, up to
// pinTries times; it returns the mailbox, or "" after hanging up.
func (ss *session) login() string {
	ep := ss.ep
	for range pinTries {
		if _, err := ep.play(ss.ctx, Prompt(ep.codec), false); err != nil {
			return ""
		}
		box, err := ss.readDigits()
		if err != nil {
			return ""
		}
		if _, err := ep.play(ss.ctx, Prompt(ep.codec), false); err != nil {
			return ""
		}
		pin, err := ss.readDigits()
		if err != nil {
			return ""
		}
		if ss.s.checkPIN(box, pin) {
			return box
		}
		ss.log.Warn("mailbox login failed", "mailbox", box)
		if _, err := ep.play(ss.ctx, Busy(ep.codec)[:8000], false); err != nil {
			return ""
		}
	}
	ss.log.Warn("mailbox login failed too often: hanging up", "tries", pinTries)
	ss.hangup()
	return ""
}

// digitWait is how long the login waits for each key.
const digitWait = 10 * time.Second

// readDigits collects keys up to # (at most 16).
func (ss *session) readDigits() (string, error) {
	var b []byte
	for len(b) < 16 {
		k, err := ss.ep.waitKey(ss.ctx, digitWait)
		switch {
		case err != nil:
			return "", err
		case k == 0 || k == '#':
			return string(b), nil
		}
		b = append(b, k)
	}
	return string(b), nil
}

// checkPIN reports whether pin opens the mailbox of box.
func (s *Service) checkPIN(box, pin string) bool {
	e, known := s.o.Directory.Extension(box)
	if !known || !s.o.Config().Mailbox(e) || e.VoicemailPIN == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(e.VoicemailPIN), []byte(pin)) == 1
}
