package voicemail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"
)

// Recorded greetings: the owner records the mailbox's greeting from the
// listening call (key 0), and callers hear it, then the beep, instead of
// the tone greeting.

// GreetingStore keeps the recorded greetings durably; *store.Store
// implements it (its bucket replicates to the twin). Without one the
// greeting menu is not offered.
type GreetingStore interface {
	// PutGreeting stores (or replaces) a mailbox's greeting.
	PutGreeting(box string, greeting []byte) error
	// DeleteGreeting removes it; none there is no error.
	DeleteGreeting(box string) error
	// Greeting returns it, nil when there is none.
	Greeting(box string) ([]byte, error)
}

// Bounds of a recorded greeting.
const (
	MinGreeting = time.Second
	MaxGreeting = time.Minute
)

// greetingMagic starts a stored greeting: the format's name and version,
// then the codec's payload type, then the G.711 audio.
var greetingMagic = []byte("twinpbx-greeting-1\n")

// ErrGreeting: a stored greeting cannot be read.
var ErrGreeting = errors.New("voicemail: unreadable greeting")

func encodeGreeting(c Codec, audio []byte) []byte {
	b := make([]byte, 0, len(greetingMagic)+1+len(audio))
	b = append(b, greetingMagic...)
	b = append(b, c.PayloadType())
	return append(b, audio...)
}

// decodeGreeting reads a stored greeting.
func decodeGreeting(b []byte) (Codec, []byte, error) {
	rest, ok := bytes.CutPrefix(b, greetingMagic)
	if !ok || len(rest) < 1 {
		return "", nil, fmt.Errorf("%w: no header", ErrGreeting)
	}
	c, ok := codecOf(rest[0])
	if !ok {
		return "", nil, fmt.Errorf("%w: payload type %d", ErrGreeting, rest[0])
	}
	audio := rest[1:]
	if n := len(audio); n < int(MinGreeting/time.Millisecond)*8 || n > int(MaxGreeting/time.Millisecond)*8 {
		return "", nil, fmt.Errorf("%w: %d bytes of audio", ErrGreeting, n)
	}
	return c, audio, nil
}

// greetings is the store's GreetingStore, if it is one.
func (m *Mailboxes) greetings() (GreetingStore, bool) {
	g, ok := m.st.(GreetingStore)
	return g, ok
}

// Greeting returns a mailbox's recorded greeting; ok is false when it
// has none (the tone greeting applies).
func (m *Mailboxes) Greeting(box string) (c Codec, audio []byte, ok bool, err error) {
	g, has := m.greetings()
	if !has {
		return "", nil, false, nil
	}
	b, err := g.Greeting(box)
	if err != nil {
		return "", nil, false, fmt.Errorf("reading the greeting of %s: %w", box, err)
	}
	if b == nil {
		return "", nil, false, nil
	}
	c, audio, err = decodeGreeting(b)
	if err != nil {
		return "", nil, false, fmt.Errorf("reading the greeting of %s: %w", box, err)
	}
	return c, audio, true, nil
}

// SaveGreeting stores audio as the greeting of box.
func (m *Mailboxes) SaveGreeting(box string, c Codec, audio []byte) error {
	g, ok := m.greetings()
	if !ok {
		return errors.New("voicemail: the store keeps no greetings")
	}
	if d := time.Duration(len(audio)) * time.Second / 8000; d < MinGreeting || d > MaxGreeting {
		return fmt.Errorf("saving the greeting of %s: %v long, want %v to %v", box, d, MinGreeting, MaxGreeting)
	}
	if err := g.PutGreeting(box, encodeGreeting(c, audio)); err != nil {
		return fmt.Errorf("saving the greeting of %s: %w", box, err)
	}
	return nil
}

// DeleteGreeting puts the tone greeting back for box.
func (m *Mailboxes) DeleteGreeting(box string) error {
	g, ok := m.greetings()
	if !ok {
		return nil
	}
	if err := g.DeleteGreeting(box); err != nil {
		return fmt.Errorf("deleting the greeting of %s: %w", box, err)
	}
	return nil
}

// GreetingStep is what the greeting menu asks the player to do next.
type GreetingStep int

// The greeting menu's steps.
const (
	// GreetRecord: play the beep, then record until # (or MaxGreeting,
	// or a hang-up), then call Recorded.
	GreetRecord GreetingStep = iota
	// GreetReview: play the review prompt and wait for a key (Key), or
	// for none (Key(0)).
	GreetReview
	// GreetPlay: play the new recording, then review again.
	GreetPlay
	// GreetSave: store the new recording as the greeting; the menu ends.
	GreetSave
	// GreetReset: delete the stored greeting, back to the tone
	// greeting; the menu ends.
	GreetReset
	// GreetEnd: the menu ends with nothing changed (the recording, if
	// any, is dropped).
	GreetEnd
)

func (s GreetingStep) String() string {
	switch s {
	case GreetRecord:
		return "record"
	case GreetReview:
		return "review"
	case GreetPlay:
		return "play"
	case GreetSave:
		return "save"
	case GreetReset:
		return "reset"
	case GreetEnd:
		return "end"
	}
	return fmt.Sprintf("GreetingStep(%d)", int(s))
}

// greetingReviews is how many times the review prompt is played without
// an answer before the menu gives up.
const greetingReviews = 3

// GreetingMenu is the state of the owner's greeting menu: after the beep
// the owner speaks and ends with #; then 1 plays the recording, 2 keeps
// it as the greeting, 3 goes back to the tone greeting, 0 records again,
// * leaves with nothing changed. 1 and 2 do nothing when the recording
// is too short (under MinGreeting).
type GreetingMenu struct {
	recorded bool
	silent   int // review prompts in a row without a key
}

// NewGreetingMenu returns a menu at its start.
func NewGreetingMenu() *GreetingMenu { return &GreetingMenu{} }

// Start is the first step.
func (g *GreetingMenu) Start() GreetingStep { return GreetRecord }

// Recorded reports the end of a recording: long enough or not.
func (g *GreetingMenu) Recorded(long bool) GreetingStep {
	g.recorded = long
	g.silent = 0
	return GreetReview
}

// Key reacts to a key in review; 0 means none came in time.
func (g *GreetingMenu) Key(k byte) GreetingStep {
	if k == 0 {
		g.silent++
		if g.silent >= greetingReviews {
			return GreetEnd
		}
		return GreetReview
	}
	g.silent = 0
	switch k {
	case '1':
		if g.recorded {
			return GreetPlay
		}
	case '2':
		if g.recorded {
			return GreetSave
		}
	case '3':
		return GreetReset
	case '0':
		return GreetRecord
	case '*':
		return GreetEnd
	}
	return GreetReview
}

// greetingMenu runs the owner's greeting menu for box; it returns when
// the menu ends, or with the call's error when the call ended.
func (ss *session) greetingMenu(box string) error {
	ep, boxes := ss.ep, ss.s.boxes
	if _, ok := boxes.greetings(); !ok {
		ss.log.Info("greeting menu not offered: the store keeps no greetings")
		return nil
	}
	g := NewGreetingMenu()
	var codec Codec
	var audio []byte
	step := g.Start()
	for {
		switch step {
		case GreetRecord:
			c, a, err := ss.recordGreeting()
			if err != nil {
				return err
			}
			codec, audio = c, a
			step = g.Recorded(time.Duration(len(a))*time.Second/8000 >= MinGreeting)
		case GreetReview:
			k, err := ep.play(ss.ctx, Prompt(ep.codec), true)
			if err == nil && k == 0 {
				k, err = ep.waitKey(ss.ctx, keyWait)
			}
			if err != nil {
				return err
			}
			step = g.Key(k)
		case GreetPlay:
			a := audio
			if codec != ep.codec {
				a = transcode(audio, codec, ep.codec)
			}
			k, err := ep.play(ss.ctx, a, true)
			if err != nil {
				return err
			}
			step = GreetReview
			if k != 0 {
				step = g.Key(k)
			}
		case GreetSave:
			if err := boxes.SaveGreeting(box, codec, audio); err != nil {
				ss.log.Error("saving a recorded greeting", "err", err)
				_, err := ep.play(ss.ctx, Busy(ep.codec)[:8000], false)
				return err
			}
			ss.log.Info("greeting recorded", "duration", time.Duration(len(audio))*time.Second/8000, "codec", codec)
			return nil
		case GreetReset:
			if err := boxes.DeleteGreeting(box); err != nil {
				ss.log.Error("deleting the recorded greeting", "err", err)
				_, err := ep.play(ss.ctx, Busy(ep.codec)[:8000], false)
				return err
			}
			ss.log.Info("tone greeting back")
			return nil
		default:
			return nil
		}
	}
}

// recordGreeting plays the beep and records the owner until #, the
// longest greeting, or the end of the call.
func (ss *session) recordGreeting() (Codec, []byte, error) {
	ep := ss.ep
	if _, err := ep.play(ss.ctx, Beep(ep.codec, nil), false); err != nil {
		return "", nil, err
	}
	// Keys pressed during the beep do not stop the recording.
	for len(ep.keys) > 0 {
		<-ep.keys
	}
	rec := NewRecorder(MaxGreeting)
	full := ep.record(rec)
	limit := time.NewTimer(MaxGreeting + 2*time.Second) // a phone that sends no timestamps forward
	defer limit.Stop()
loop:
	for {
		select {
		case <-ss.ctx.Done():
			ep.stopRecording()
			return "", nil, context.Cause(ss.ctx)
		case <-full:
			break loop
		case <-limit.C:
			break loop
		case k := <-ep.keys:
			if k == '#' {
				break loop
			}
		}
	}
	ep.stopRecording() // the receiver adds no more: the recording can be read
	return rec.Codec(), rec.Audio(), nil
}
