package voicemail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Carrying a deposit on: the twin that takes over (or this box after a
// restart) reopens the RTP port of a message being recorded on the
// address the caller sends to (the virtual IP moved with the takeover),
// takes the dialog back, and its recorder appends the caller's audio to
// what was saved: one message, with silence where the last unsaved part
// and the takeover's gap were. The call then ends as any deposit: on the
// caller's BYE, at the maximum length, or when no audio comes. What
// cannot be carried on is finished with BYE instead (finishCalls).

// carryOn carries the stored deposit c (dialog d, our Contact us, audio
// saved so far) on, its later parts saved to st. An error says why it cannot; nothing is then held.
func (s *Service) carryOn(st RecordingStore, c *savedCall, d *dialog, us sip.Uri, audio []byte, log *slog.Logger) error {
	v := s.o.Config()
	switch {
	case c.Kind != callDeposit:
		return errors.New("not a message being recorded")
	case s.o.RTPPortAt == nil:
		return errors.New("no RTP port can be reopened here")
	case v == nil:
		return errors.New("voicemail is off")
	case len(audio) == 0 || c.Parts == 0:
		return errors.New("no audio saved yet (the greeting was playing)")
	case c.RTPPort <= 0 || c.RTPPort > 65535:
		return fmt.Errorf("no RTP port stored (%d)", c.RTPPort)
	case c.Events < 0 || c.Events > 127:
		return fmt.Errorf("telephone-event payload type %d", c.Events)
	}
	if limit := int(v.MaxLengthTime()/time.Millisecond) * 8; c.From < -limit || c.From > limit {
		return fmt.Errorf("the saved audio starts %d samples off the stream's first packet", c.From)
	}
	remote, err := netip.ParseAddrPort(c.Remote)
	if err != nil {
		return fmt.Errorf("the caller's RTP address: %w", err)
	}
	msgs, err := s.boxes.List(c.Mailbox)
	if err != nil {
		return fmt.Errorf("reading the mailbox: %w", err)
	}
	for _, m := range msgs {
		if m.CallID == c.CallID {
			return errors.New("the message is saved already")
		}
	}
	port, err := s.o.RTPPortAt(c.RTPPort)
	if err != nil {
		return fmt.Errorf("reopening RTP port %d: %w", c.RTPPort, err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	ss := &session{s: s, d: d, us: us, ctx: ctx, cancel: cancel, acked: make(chan struct{}), log: log, port: port}
	close(ss.acked)
	o := offer{remote: remote, codec: c.Codec, eventPT: -1}
	if c.Events > 0 {
		o.eventPT = c.Events
	}
	ss.ep = newEndpoint(port.RTP(), o, uint32(randUint64()))
	ss.ep.log = log
	ss.ep.latched, ss.ep.inSSRC = true, c.SSRC
	maxLen := v.MaxLengthTime()
	rec := resumeRecorder(maxLen, c.Codec, c.SSRC, c.Base, c.From, audio)
	saved := rec.Duration() // before the endpoint feeds rec
	ss.save = &callSave{st: st, rec: *c, recorder: rec, next: rec.hi, started: true}

	s.mu.Lock()
	if s.closed || len(s.sessions) >= MaxCalls {
		s.mu.Unlock()
		ss.release()
		cancel(nil)
		return errors.New("the mailbox takes no more calls")
	}
	s.sessions[d.callID] = ss
	s.wg.Add(1)
	s.mu.Unlock()
	// The recorder takes the caller's packets from the first one read.
	full := ss.ep.record(rec)
	go ss.ep.receive()

	dv := Diversion{Mailbox: c.Mailbox, Caller: c.Caller, CallerName: c.CallerName, Start: c.Start}
	log.Info("message being recorded carried on from the twin", "port", c.RTPPort, "caller_rtp", remote, "saved", saved)
	go func() {
		defer ss.finish()
		defer ss.hangup()
		msg, audio, by := ss.recordTo(rec, full, max(maxLen-saved, 0))
		ended := ss.settle(func() {
			s.writeCDR(c.CallID, dv, c.Answered, s.o.Now(), by, log)
			s.keepMessage(msg, audio, dv, c.CallID, c.Answered, log)
		})
		if !ended {
			log.Info("message left to the twin: the box handed over while it was recorded", "duration", msg.Duration)
		}
	}()
	return nil
}
