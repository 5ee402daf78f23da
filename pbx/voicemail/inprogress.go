package voicemail

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/sipdo"
)

// Mailbox calls that outlive the box: every call the mailbox answers is
// kept in the store while it runs (its dialog, and for a message being
// recorded the audio so far, saved in parts every ChunkEvery), so that
// the twin that takes over (or this box after a restart) carries a
// message being recorded on (carryon.go: the RTP port reopened, the
// same message goes on) or, when it cannot, finishes the call: the
// partial message is kept when at least MinMessage long, the mailbox's
// subscribers are told, a CDR is written, and the caller gets a BYE.

// RecordingStore keeps the mailbox calls in progress durably;
// *store.Store implements it (its buckets replicate to the twin). A
// Store that also implements it gets its mailbox calls finished by the
// twin after a failover.
type RecordingStore interface {
	// PutVoicemailRecording stores a call's record and, when audio is
	// not nil, its audio part number part, in one transaction.
	PutVoicemailRecording(id string, record []byte, part int, audio []byte) error
	// DeleteVoicemailRecording removes a call's record and audio.
	DeleteVoicemailRecording(id string) error
	// VoicemailRecordings returns every stored call by id: its record,
	// then its audio parts in order.
	VoicemailRecordings() (map[string][][]byte, error)
}

// ChunkEvery is how often a message being recorded is saved so far
// (Options.ChunkEvery): what the twin keeps of it after a failover
// lacks at most this much. Each save writes only the audio new since
// the last one (40 kB for 5 s of G.711).
const ChunkEvery = 5 * time.Second

// Kinds of the mailbox calls kept in the store.
const (
	callDeposit = "deposit"
	callListen  = "listen"
)

const savedCallVersion = 1

// maxSavedParts bounds the parts of a stored call read back (a message
// saved every ChunkEvery for hours is far below).
const maxSavedParts = 100000

// savedCall is the stored record of a mailbox call in progress.
type savedCall struct {
	Version    int       `json:"version"`
	Kind       string    `json:"kind"`
	Mailbox    string    `json:"mailbox"`
	Caller     string    `json:"caller"`
	CallerName string    `json:"caller_name,omitempty"`
	Start      time.Time `json:"start"`
	Answered   time.Time `json:"answered"`
	// Saved is when the record was last written.
	Saved time.Time `json:"saved"`
	// Codec, Parts and Samples describe the audio saved so far (a
	// deposit once recording started).
	Codec   Codec `json:"codec,omitempty"`
	Parts   int   `json:"parts"`
	Samples int   `json:"samples"`
	// What carries a deposit on (carryon.go): our RTP port, the caller's
	// RTP address, the telephone-event payload type (0: none), and once
	// audio is saved, the SSRC and first timestamp of the caller's
	// stream and the offset from it of the first sample saved.
	RTPPort int    `json:"rtp_port,omitempty"`
	Remote  string `json:"remote,omitempty"`
	Events  int    `json:"events,omitempty"`
	SSRC    uint32 `json:"ssrc,omitempty"`
	Base    uint32 `json:"base,omitempty"`
	From    int    `json:"from,omitempty"`
	savedDialog
}

// encodeCall is the stored record of c.
func encodeCall(c *savedCall) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding mailbox call %s: %w", c.CallID, err)
	}
	return b, nil
}

// decodeCall reads a stored mailbox call and the audio of its parts.
func decodeCall(record []byte, parts [][]byte) (*savedCall, *dialog, sip.Uri, []byte, error) {
	var c savedCall
	var us sip.Uri
	if err := json.Unmarshal(record, &c); err != nil {
		return nil, nil, us, nil, fmt.Errorf("reading a stored mailbox call: %w", err)
	}
	switch {
	case c.Version != savedCallVersion:
		return nil, nil, us, nil, fmt.Errorf("stored mailbox call %q: version %d, want %d", c.CallID, c.Version, savedCallVersion)
	case c.Kind != callDeposit && c.Kind != callListen:
		return nil, nil, us, nil, fmt.Errorf("stored mailbox call %q: kind %q", c.CallID, c.Kind)
	case c.Kind == callDeposit && c.Mailbox == "":
		return nil, nil, us, nil, fmt.Errorf("stored mailbox call %q: no mailbox", c.CallID)
	case len(parts) > maxSavedParts:
		return nil, nil, us, nil, fmt.Errorf("stored mailbox call %q: %d audio parts", c.CallID, len(parts))
	}
	d, us, err := c.dialog()
	if err != nil {
		return nil, nil, us, nil, fmt.Errorf("stored mailbox call %q: %w", c.CallID, err)
	}
	var audio []byte
	if len(parts) > 0 {
		if c.Codec != PCMU && c.Codec != PCMA {
			return &c, d, us, nil, fmt.Errorf("stored mailbox call %q: audio of codec %q", c.CallID, c.Codec)
		}
		audio = bytes.Join(parts, nil)
	}
	return &c, d, us, audio, nil
}

// callSave is what a session keeps of its stored record.
type callSave struct {
	st RecordingStore
	mu sync.Mutex
	// done: no more writes, the call ended here or was left to the twin.
	done bool
	rec  savedCall
	// recorder, next and started: the audio saved so far, up to the
	// offset next of recorder.
	recorder *Recorder
	next     int
	started  bool
}

// startSave stores the session's record (when the store keeps mailbox
// calls): from now on the twin finishes the call if this box dies.
func (ss *session) startSave(kind string, dv Diversion, answered time.Time) {
	st, ok := ss.s.o.Store.(RecordingStore)
	if !ok {
		return
	}
	cs := &callSave{st: st, rec: savedCall{
		Version: savedCallVersion, Kind: kind, Mailbox: dv.Mailbox, Caller: dv.Caller, CallerName: dv.CallerName,
		Start: dv.Start.UTC(), Answered: answered.UTC(), savedDialog: saveDialog(ss.d, ss.us),
		RTPPort: int(ss.ep.local().Port()), Events: max(ss.ep.ev, 0),
	}}
	ss.mu.Lock()
	if ss.left {
		ss.mu.Unlock()
		return // handed over before it was saved: the twin knows nothing of it
	}
	ss.save = cs
	cs.mu.Lock() // before handOver can
	ss.mu.Unlock()
	defer cs.mu.Unlock()
	ss.writeLocked(cs)
}

// saved returns the session's callSave, nil when none.
func (ss *session) saved() *callSave {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.save
}

// recording tells the stored record that rec holds the message's audio.
func (ss *session) recording(rec *Recorder) {
	if cs := ss.saved(); cs != nil {
		cs.mu.Lock()
		cs.recorder = rec
		cs.mu.Unlock()
	}
}

// saveAudio stores the audio recorded since the last save, if any.
func (ss *session) saveAudio() {
	cs := ss.saved()
	if cs == nil {
		return
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if !cs.done {
		ss.writeLocked(cs)
	}
}

// writeLocked writes the record and the audio new since the last write
// (cs.mu held); a failed write is logged and the audio tried again next
// time.
func (ss *session) writeLocked(cs *callSave) {
	var audio []byte
	next := cs.next
	rec := cs.rec
	ss.ep.mu.Lock()
	if ss.ep.remote.IsValid() {
		rec.Remote = ss.ep.remote.String()
	}
	if cs.recorder != nil {
		audio, next = cs.recorder.since(cs.next, !cs.started)
		ssrc, base, lo, _ := cs.recorder.origin()
		if len(audio) > 0 {
			rec.Codec, rec.SSRC, rec.Base = cs.recorder.Codec(), ssrc, base
			if !cs.started {
				rec.From = lo
			}
		}
	}
	ss.ep.mu.Unlock()
	rec.Saved = ss.s.o.Now().UTC()
	part := rec.Parts
	if len(audio) > 0 {
		rec.Parts++
		rec.Samples += len(audio)
	} else {
		audio = nil
	}
	if audio == nil && !cs.rec.Saved.IsZero() {
		return // nothing new: the stored record stands
	}
	b, err := encodeCall(&rec)
	if err == nil {
		err = cs.st.PutVoicemailRecording(rec.CallID, b, part, audio)
	}
	if err != nil {
		ss.log.Error("saving the mailbox call in progress", "err", err)
		return
	}
	if least := int(MinMessage / time.Millisecond * 8); rec.Samples >= least && cs.rec.Samples < least {
		ss.log.Info("message being recorded: kept from now on should the box fail", "saved", time.Duration(rec.Samples)*time.Second/8000)
	}
	cs.rec, cs.next = rec, next
	if audio != nil {
		cs.started = true
	}
}

// settle runs end (the message saved, the CDR written) and removes the
// stored record, unless the call was left to the twin: then it runs
// nothing and reports false.
func (ss *session) settle(end func()) bool {
	cs := ss.saved()
	if cs == nil {
		if ss.abandoned() {
			return false
		}
		end()
		return true
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.done {
		return false
	}
	cs.done = true
	end()
	if err := cs.st.DeleteVoicemailRecording(cs.rec.CallID); err != nil {
		ss.log.Error("deleting the mailbox call's saved record", "err", err)
	}
	return true
}

// handOver saves the audio recorded so far and writes nothing more: the
// twin finishes the call.
func (ss *session) handOver() {
	ss.mu.Lock()
	ss.left = true
	cs := ss.save
	ss.mu.Unlock()
	if cs == nil {
		return
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if !cs.done {
		ss.writeLocked(cs)
		cs.done = true
	}
}

// finishCalls takes over the mailbox calls stored by a box that no
// longer runs them (the twin that died or handed over, this box before a
// restart). A message being recorded is carried on when it can be
// (carryOn); any other call is finished: the message recorded so far is
// kept (at least MinMessage, and not already in the mailbox), a CDR
// written, the record removed, and the caller gets a BYE. Calls this box
// runs itself are left alone.
func (s *Service) finishCalls() {
	st, ok := s.o.Store.(RecordingStore)
	if !ok {
		return
	}
	stored, err := st.VoicemailRecordings()
	if err != nil {
		s.log.Error("reading the mailbox calls in progress", "err", err)
		return
	}
	now := s.o.Now()
	for _, id := range slices.Sorted(maps.Keys(stored)) {
		s.mu.Lock()
		_, mine := s.sessions[id]
		s.mu.Unlock()
		if mine || len(stored[id]) == 0 {
			continue
		}
		c, d, us, audio, err := decodeCall(stored[id][0], stored[id][1:])
		if err == nil && c.CallID != id {
			err = fmt.Errorf("stored mailbox call %q is filed under %q", c.CallID, id)
		}
		if c == nil || d == nil {
			s.log.Warn("a stored mailbox call cannot be read: dropped", "id", id, "err", err)
			if err := st.DeleteVoicemailRecording(id); err != nil {
				s.log.Error("deleting a stored mailbox call", "id", id, "err", err)
			}
			continue
		}
		log := s.log.With("call", id, "mailbox", c.Mailbox, "caller", c.Caller)
		if err != nil {
			log.Warn("the audio of a stored mailbox call cannot be read: the message is lost", "err", err)
		}
		if err == nil && c.Kind == callDeposit {
			cerr := s.carryOn(st, c, d, us, audio, log)
			if cerr == nil {
				continue // the record stays: the call is this box's now
			}
			log.Info("the message being recorded cannot be carried on: the call is ended", "why", cerr)
		}
		if c.Kind == callDeposit {
			s.keepPartial(c, audio, log)
		}
		rec := cdr.Record{
			ID: id + "-vm", CallID: id, Caller: c.Caller, CallerName: c.CallerName, Callee: c.Mailbox,
			Start: c.Start, Answer: c.Answered, End: now, Disp: CDRVoicemail, SIPCode: 200, HangupBy: "system",
		}
		if err := s.o.CDR(rec); err != nil {
			log.Warn("writing the mailbox call's CDR", "err", err)
		}
		if err := st.DeleteVoicemailRecording(id); err != nil {
			log.Error("deleting a stored mailbox call", "err", err)
		}
		log.Info("mailbox call of the twin ended", "kind", c.Kind, "saved", c.Saved)
		s.byeLater(d, us, log)
	}
}

// ensureFinished finishes the stored mailbox calls once, before the
// first request, registration or diverted call a box serves after it
// started (a single box restarting); a twin that takes over does it in
// TakeOver. It must not run where Mailboxes' lock is held (a change's
// notification): it saves messages.
func (s *Service) ensureFinished() {
	s.finishMu.Lock()
	defer s.finishMu.Unlock()
	if !s.finished {
		s.finished = true
		s.finishCalls()
	}
}

// keepPartial saves the audio a stored deposit holds as a message.
func (s *Service) keepPartial(c *savedCall, audio []byte, log *slog.Logger) {
	dur := time.Duration(len(audio)) * time.Second / 8000
	if dur < MinMessage {
		log.Info("message of the twin too short: dropped", "duration", dur)
		return
	}
	msgs, err := s.boxes.List(c.Mailbox)
	if err != nil {
		log.Error("reading the mailbox", "err", err)
		return
	}
	for _, m := range msgs {
		if m.CallID == c.CallID {
			return // saved already (the end of the call raced the failover)
		}
	}
	msg := Message{Mailbox: c.Mailbox, Caller: c.Caller, CallerName: c.CallerName, CallID: c.CallID,
		Time: c.Answered.UTC(), Duration: dur, Codec: c.Codec}
	saved, err := s.boxes.Save(msg, audio)
	if err != nil {
		if errors.Is(err, ErrFull) {
			log.Error("alarm: mailbox full of new messages; message lost", "duration", dur, "alarm", "voicemail_full", "err", err)
		} else {
			log.Error("saving a message", "duration", dur, "err", err)
		}
		return
	}
	log.Info("message of the twin saved as recorded so far", "id", saved.ID, "duration", saved.Duration)
}

// byeLater ends a dialog the twin held, in the background.
func (s *Service) byeLater(d *dialog, us sip.Uri, log *slog.Logger) {
	s.background(nil, func() { s.bye(d, us, log) })
}

// background runs fn on a goroutine that Close waits for, unless the
// service is closing or skip (asked with s.mu held; nil: never) says not
// to.
func (s *Service) background(skip func() bool, fn func()) {
	s.mu.Lock()
	if s.closed || (skip != nil && skip()) {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

// ready readies a request of the mailbox to a phone for sending: to the
// phone's Contact when it is on TCP or TLS and its connection is gone
// (the box took over from its twin, or the phone closed it), as the
// B2BUA's requests go, then from our listener. An error means the phone
// cannot be reached (no TLS connection could be opened).
func (s *Service) ready(req *sip.Request) error {
	if s.o.Redirect != nil {
		if _, err := s.o.Redirect(req); err != nil {
			return fmt.Errorf("reaching the phone: %w", err)
		}
	}
	s.o.Prepare(req)
	return nil
}

// bye sends BYE on d and waits for its answer (or 64*T1).
func (s *Service) bye(d *dialog, us sip.Uri, log *slog.Logger) {
	bye := d.request(sip.BYE, us)
	if err := s.ready(bye); err != nil {
		log.Debug("BYE of a mailbox call", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 64*sip.T1)
	defer cancel()
	if _, err := sipdo.Do(ctx, s.o.Client, bye); err != nil {
		log.Debug("BYE of a mailbox call", "err", err)
	}
}
