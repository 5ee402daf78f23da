package voicemail

import (
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/cdr"
)

// Deposit answers a call diverted to a mailbox (the B2BUA calls it
// instead of failing the call) and records a message in the background.
// It returns once the caller has its answer.
func (s *Service) Deposit(req *sip.Request, tx sip.ServerTransaction, dv Diversion) {
	log := s.log.With("call", callID(req), "mailbox", dv.Mailbox, "caller", dv.Caller, "reason", dv.Reason)
	s.ensureFinished()
	if dv.Start.IsZero() {
		dv.Start = s.o.Now()
	}
	ss, ok := s.answer(req, tx, dv.Tag, log)
	if !ok {
		if dv.Release != nil {
			dv.Release()
		}
		return
	}
	ss.done = dv.Release
	log.Info("call diverted to the mailbox")
	answered := s.o.Now()
	go func() {
		defer ss.finish()
		defer ss.hangup()
		ss.startSave(callDeposit, dv, answered)
		msg, audio, by := ss.record(s.greeting(dv.Mailbox, ss.ep.codec, log), s.o.Config().MaxLengthTime())
		ended := ss.settle(func() {
			s.writeCDR(callID(req), dv, answered, s.o.Now(), by, log)
			s.keepMessage(msg, audio, dv, callID(req), answered, log)
		})
		if !ended {
			log.Info("message left to the twin: the box handed over while it was recorded", "duration", msg.Duration)
		}
	}()
}

// keepMessage saves a message recorded in full.
func (s *Service) keepMessage(msg Message, audio []byte, dv Diversion, id string, answered time.Time, log *slog.Logger) {
	if msg.Duration < MinMessage {
		log.Info("message too short: dropped", "duration", msg.Duration)
		return
	}
	msg.Mailbox, msg.Caller, msg.CallerName, msg.CallID, msg.Time = dv.Mailbox, dv.Caller, dv.CallerName, id, answered.UTC()
	saved, err := s.boxes.Save(msg, audio)
	if err != nil {
		if errors.Is(err, ErrFull) {
			log.Error("alarm: mailbox full of new messages; message lost", "duration", msg.Duration, "alarm", "voicemail_full", "err", err)
		} else {
			log.Error("saving a message", "duration", msg.Duration, "err", err)
		}
		return
	}
	log.Info("message saved", "id", saved.ID, "duration", saved.Duration, "codec", saved.Codec)
}

// greeting is what a caller of box hears before the recording: the
// owner's recorded greeting and the beep, or the tone greeting.
func (s *Service) greeting(box string, c Codec, log *slog.Logger) []byte {
	gc, audio, ok, err := s.boxes.Greeting(box)
	if err != nil {
		log.Error("the recorded greeting cannot be played: the tone greeting instead", "err", err)
	}
	if !ok {
		return Greeting(c)
	}
	if gc != c {
		audio = transcode(audio, gc, c)
	}
	return Beep(c, slices.Clip(audio))
}

// record plays the greeting, then records until the caller hangs up, the
// message reaches maxLen, no RTP comes for the idle time, or shutdown. It
// returns the message (codec and duration set), its audio, and who hung
// up. The call is still up unless the caller ended it: the message is
// saved before the BYE, which may take long to an unreachable phone.
func (ss *session) record(greeting []byte, maxLen time.Duration) (Message, []byte, string) {
	ep := ss.ep
	if _, err := ep.play(ss.ctx, greeting, false); err != nil {
		return Message{}, nil, ss.by()
	}
	rec := NewRecorder(maxLen)
	ss.recording(rec)
	return ss.recordTo(rec, ep.record(rec), maxLen)
}

// recordTo records into rec, which the endpoint feeds (full is what its
// record returned), until the caller hangs up, rec is full, left has
// passed (and 2 s more), no RTP comes for the idle time, or shutdown,
// saving the audio every ChunkEvery; as record.
func (ss *session) recordTo(rec *Recorder, full <-chan struct{}, left time.Duration) (Message, []byte, string) {
	ep := ss.ep
	start := time.Now()
	chunk := time.NewTicker(ss.s.o.ChunkEvery)
	defer chunk.Stop()
	limit := time.NewTimer(left + 2*time.Second) // a caller that sends no timestamps forward
	defer limit.Stop()
	check := time.NewTicker(time.Second)
	defer check.Stop()
loop:
	for {
		select {
		case <-ss.ctx.Done():
			break loop
		case <-full:
			ss.log.Info("message reached the maximum length", "max", time.Duration(rec.max)*time.Second/8000)
			break loop
		case <-limit.C:
			break loop
		case <-chunk.C:
			ss.saveAudio()
		case <-check.C:
			if ep.idle(start) > ss.s.o.Idle {
				ss.log.Info("no audio from the caller: hanging up", "idle", ss.s.o.Idle)
				break loop
			}
		}
	}
	ep.stopRecording()
	return Message{Codec: rec.Codec(), Duration: rec.Duration()}, rec.Audio(), ss.by()
}

// by is who ended the call, for the CDR.
func (ss *session) by() string {
	if ss.hungUp() {
		return "caller"
	}
	return "system"
}

func (s *Service) writeCDR(id string, dv Diversion, answered, end time.Time, by string, log *slog.Logger) {
	rec := cdr.Record{
		ID: id + "-vm", CallID: id, Caller: dv.Caller, CallerName: dv.CallerName, Callee: dv.Mailbox,
		Start: dv.Start, Answer: answered, End: end, Disp: CDRVoicemail, SIPCode: 200, HangupBy: by,
	}
	if err := s.o.CDR(rec); err != nil {
		log.Warn("writing the mailbox call's CDR", "err", err)
	}
}

func callID(req *sip.Request) string {
	if c := req.CallID(); c != nil {
		return c.Value()
	}
	return ""
}
