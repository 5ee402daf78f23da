package voicemail

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Store keeps the messages durably; *store.Store implements it (its
// voicemail buckets replicate to the twin like every other bucket). Index
// records (meta) and audio are kept apart so that listing a mailbox does
// not read audio.
type Store interface {
	// PutVoicemail stores a message's index record and, when audio is not
	// nil, its audio, in one transaction.
	PutVoicemail(box, id string, meta, audio []byte) error
	// DeleteVoicemail removes a message and its audio.
	DeleteVoicemail(box, id string) error
	// Voicemails returns the index records of a mailbox.
	Voicemails(box string) ([][]byte, error)
	// VoicemailAudio returns a message's audio, nil when absent.
	VoicemailAudio(box, id string) ([]byte, error)
}

// Message is the index record of one message.
type Message struct {
	ID         string        `json:"id"`
	Mailbox    string        `json:"mailbox"`
	Caller     string        `json:"caller"`
	CallerName string        `json:"caller_name,omitempty"`
	CallID     string        `json:"call_id,omitempty"`
	Time       time.Time     `json:"time"`
	Duration   time.Duration `json:"duration"`
	Codec      Codec         `json:"codec"`
	New        bool          `json:"new"`
	Size       int           `json:"size"`
	// SHA256 is the hex checksum of the audio, checked when it is read.
	SHA256 string `json:"sha256"`
}

// Errors of the mailbox.
var (
	// ErrFull: every message of the mailbox is new; none is dropped to
	// make room.
	ErrFull = errors.New("voicemail: mailbox full of new messages")
	// ErrNotFound: no such message.
	ErrNotFound = errors.New("voicemail: no such message")
	// ErrChecksum: the stored audio does not match its checksum.
	ErrChecksum = errors.New("voicemail: audio does not match its checksum")
)

// Mailboxes are the mailboxes over a Store. Changes are serialised, so a
// mailbox's size limit holds. Safe for concurrent use.
//
// Each mailbox's counts are kept in memory once read (Summary), and the
// mailbox's own writes keep them right, so that a diverted call or a
// NOTIFY reads no records. Writes that do not pass through Mailboxes (the
// twin's, replicated into the store while this box stood by) are picked
// up by Forget, called when the box takes over, and by reading the
// records again once a summary is older than summaryMaxAge.
type Mailboxes struct {
	st  Store
	max func() int
	// changed is called after a mailbox's counts may have changed.
	changed func(box string)
	now     func() time.Time
	// mu serialises the changes (and the reads of records that fill
	// sums); sumMu guards sums alone, so that a Summary kept does not
	// wait for a change being written (and replicated). Order: mu, then
	// sumMu.
	mu    sync.Mutex
	sumMu sync.Mutex
	sums  map[string]cachedSummary // by mailbox
}

// cachedSummary is a mailbox's summary and when it was read from the
// store.
type cachedSummary struct {
	Summary
	read time.Time
}

// summaryMaxAge bounds how long a mailbox's counts are trusted without
// reading its records: a safety net for writes that bypass Mailboxes
// (a split-brain merge), not the way counts normally stay right.
const summaryMaxAge = 10 * time.Minute

// NewMailboxes returns the mailboxes kept in st, each holding at most
// max() messages. changed, if set, hears of every change.
func NewMailboxes(st Store, max func() int, changed func(box string)) *Mailboxes {
	return &Mailboxes{st: st, max: max, changed: changed, now: time.Now, sums: map[string]cachedSummary{}}
}

// Forget drops the counts kept in memory: the next Summary of each
// mailbox reads its records. For a box that takes over from its twin,
// whose writes reached the store by replication.
func (m *Mailboxes) Forget() {
	m.sumMu.Lock()
	defer m.sumMu.Unlock()
	clear(m.sums)
}

// adjust applies a change to a mailbox's kept counts, if it has them;
// m.mu is held.
func (m *Mailboxes) adjust(box string, f func(*Summary)) {
	m.sumMu.Lock()
	defer m.sumMu.Unlock()
	if c, ok := m.sums[box]; ok {
		f(&c.Summary)
		m.sums[box] = c
	}
}

// kept returns the kept counts of box when they are fresh.
func (m *Mailboxes) kept(box string, now time.Time) (Summary, bool) {
	m.sumMu.Lock()
	defer m.sumMu.Unlock()
	c, ok := m.sums[box]
	if !ok || now.Sub(c.read) >= summaryMaxAge || now.Before(c.read) {
		return Summary{}, false
	}
	return c.Summary, true
}

func (m *Mailboxes) notify(box string) {
	if m.changed != nil {
		m.changed(box)
	}
}

// newID is sortable by time, unique by its random tail.
func newID(t time.Time) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	return t.UTC().Format("20060102T150405.000000000Z") + "-" + hex.EncodeToString(r[:])
}

// Save stores a new message with its audio. When the mailbox is full the
// oldest message already listened to makes room; with only new messages
// it returns ErrFull and stores nothing. It fills in ID, New, Size and
// SHA256.
func (m *Mailboxes) Save(msg Message, audio []byte) (Message, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	msgs, err := m.list(msg.Mailbox)
	if err != nil {
		return Message{}, err
	}
	for len(msgs) >= max(m.max(), 1) {
		// The oldest message listened to goes first.
		var oldest *Message
		for j := range msgs {
			if !msgs[j].New && (oldest == nil || msgs[j].ID < oldest.ID) {
				oldest = &msgs[j]
			}
		}
		if oldest == nil {
			return Message{}, fmt.Errorf("saving a message for %s (%d messages): %w", msg.Mailbox, len(msgs), ErrFull)
		}
		if err := m.st.DeleteVoicemail(msg.Mailbox, oldest.ID); err != nil {
			return Message{}, fmt.Errorf("making room in mailbox %s: %w", msg.Mailbox, err)
		}
		m.adjust(msg.Mailbox, func(s *Summary) { s.Old--; s.Bytes -= oldest.Size })
		id := oldest.ID
		msgs = slices.DeleteFunc(msgs, func(x Message) bool { return x.ID == id })
	}
	msg.ID = newID(msg.Time)
	msg.New = true
	msg.Size = len(audio)
	sum := sha256.Sum256(audio)
	msg.SHA256 = hex.EncodeToString(sum[:])
	meta, err := json.Marshal(msg)
	if err != nil {
		return Message{}, fmt.Errorf("encoding a message: %w", err)
	}
	if err := m.st.PutVoicemail(msg.Mailbox, msg.ID, meta, audio); err != nil {
		return Message{}, fmt.Errorf("saving a message for %s: %w", msg.Mailbox, err)
	}
	m.adjust(msg.Mailbox, func(s *Summary) { s.New++; s.Bytes += msg.Size })
	m.notify(msg.Mailbox)
	return msg, nil
}

// List returns a mailbox's messages: new ones newest first, then old ones
// newest first. Records that cannot be read are skipped.
func (m *Mailboxes) List(box string) ([]Message, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.list(box)
}

func (m *Mailboxes) list(box string) ([]Message, error) {
	raw, err := m.st.Voicemails(box)
	if err != nil {
		return nil, fmt.Errorf("listing mailbox %s: %w", box, err)
	}
	out := make([]Message, 0, len(raw))
	for _, r := range raw {
		var msg Message
		if err := json.Unmarshal(r, &msg); err != nil || msg.ID == "" {
			continue
		}
		out = append(out, msg)
	}
	slices.SortFunc(out, func(a, b Message) int {
		if a.New != b.New {
			if a.New {
				return -1
			}
			return 1
		}
		return strings.Compare(b.ID, a.ID)
	})
	return out, nil
}

// Summary counts a mailbox's new and old messages and their audio bytes.
// It reads the mailbox's records only the first time (and after Forget or
// summaryMaxAge).
func (m *Mailboxes) Summary(box string) (Summary, error) {
	if s, ok := m.kept(box, m.now()); ok {
		return s, nil
	}
	// Read under mu: no change runs between the read and the keeping.
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if s, ok := m.kept(box, now); ok {
		return s, nil
	}
	msgs, err := m.list(box)
	if err != nil {
		return Summary{}, err
	}
	s := summarize(msgs)
	m.sumMu.Lock()
	// A copy: box may be a piece of a whole request (regwire).
	m.sums[strings.Clone(box)] = cachedSummary{Summary: s, read: now}
	m.sumMu.Unlock()
	return s, nil
}

// summarize counts msgs.
func summarize(msgs []Message) Summary {
	var s Summary
	for _, x := range msgs {
		if x.New {
			s.New++
		} else {
			s.Old++
		}
		s.Bytes += x.Size
	}
	return s
}

// Audio returns a message's audio after checking its checksum.
func (m *Mailboxes) Audio(msg Message) ([]byte, error) {
	a, err := m.st.VoicemailAudio(msg.Mailbox, msg.ID)
	if err != nil {
		return nil, fmt.Errorf("reading message %s: %w", msg.ID, err)
	}
	if a == nil {
		return nil, fmt.Errorf("reading message %s: %w", msg.ID, ErrNotFound)
	}
	sum := sha256.Sum256(a)
	if hex.EncodeToString(sum[:]) != msg.SHA256 {
		return nil, fmt.Errorf("reading message %s: %w", msg.ID, ErrChecksum)
	}
	return a, nil
}

// MarkOld records that a message was listened to.
func (m *Mailboxes) MarkOld(msg Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	msgs, err := m.list(msg.Mailbox)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(msgs, func(x Message) bool { return x.ID == msg.ID })
	if i < 0 {
		return fmt.Errorf("marking message %s listened: %w", msg.ID, ErrNotFound)
	}
	if !msgs[i].New {
		return nil
	}
	msgs[i].New = false
	meta, err := json.Marshal(msgs[i])
	if err != nil {
		return fmt.Errorf("encoding a message: %w", err)
	}
	if err := m.st.PutVoicemail(msg.Mailbox, msg.ID, meta, nil); err != nil {
		return fmt.Errorf("marking message %s listened: %w", msg.ID, err)
	}
	m.adjust(msg.Mailbox, func(s *Summary) { s.New--; s.Old++ })
	m.notify(msg.Mailbox)
	return nil
}

// Delete removes a message.
func (m *Mailboxes) Delete(msg Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	// The stored record, not msg, says whether it counted as new: the
	// caller's copy may predate a MarkOld.
	msgs, err := m.list(msg.Mailbox)
	if err != nil {
		return fmt.Errorf("deleting message %s: %w", msg.ID, err)
	}
	i := slices.IndexFunc(msgs, func(x Message) bool { return x.ID == msg.ID })
	if err := m.st.DeleteVoicemail(msg.Mailbox, msg.ID); err != nil {
		return fmt.Errorf("deleting message %s: %w", msg.ID, err)
	}
	if i >= 0 {
		gone := msgs[i]
		m.adjust(msg.Mailbox, func(s *Summary) {
			if gone.New {
				s.New--
			} else {
				s.Old--
			}
			s.Bytes -= gone.Size
		})
	}
	m.notify(msg.Mailbox)
	return nil
}

// MemStore is a Store, a SubscriptionStore, a GreetingStore, a
// RecordingStore and a ToldStore in memory, for tests.
type MemStore struct {
	told       map[string][]byte
	mu         sync.Mutex
	meta       map[string][]byte
	audio      map[string][]byte
	subs       map[string][]byte
	greetings  map[string][]byte
	recordings map[string][][]byte // record, then parts
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{meta: map[string][]byte{}, audio: map[string][]byte{}, subs: map[string][]byte{}, greetings: map[string][]byte{}, recordings: map[string][][]byte{}, told: map[string][]byte{}}
}

// PutMWITold implements ToldStore.
func (s *MemStore) PutMWITold(key string, state []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.told[key] = slices.Clone(state)
	return nil
}

// DeleteMWITold implements ToldStore.
func (s *MemStore) DeleteMWITold(key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.told, key)
	return nil
}

// MWITold implements ToldStore.
func (s *MemStore) MWITold() (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]byte, len(s.told))
	for k, v := range s.told {
		out[k] = slices.Clone(v)
	}
	return out, nil
}

// PutVoicemailRecording implements RecordingStore.
func (s *MemStore) PutVoicemailRecording(id string, record []byte, part int, audio []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.recordings[id]
	if r == nil {
		r = [][]byte{nil}
	}
	if audio != nil {
		if part != len(r)-1 {
			return fmt.Errorf("recording %s: part %d after %d parts", id, part, len(r)-1)
		}
		r = append(r, slices.Clone(audio))
	}
	r[0] = slices.Clone(record)
	s.recordings[id] = r
	return nil
}

// DeleteVoicemailRecording implements RecordingStore.
func (s *MemStore) DeleteVoicemailRecording(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.recordings, id)
	return nil
}

// VoicemailRecordings implements RecordingStore.
func (s *MemStore) VoicemailRecordings() (map[string][][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][][]byte, len(s.recordings))
	for k, v := range s.recordings {
		c := make([][]byte, len(v))
		for i, b := range v {
			c[i] = slices.Clone(b)
		}
		out[k] = c
	}
	return out, nil
}

// PutGreeting implements GreetingStore.
func (s *MemStore) PutGreeting(box string, greeting []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.greetings[box] = slices.Clone(greeting)
	return nil
}

// DeleteGreeting implements GreetingStore.
func (s *MemStore) DeleteGreeting(box string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.greetings, box)
	return nil
}

// Greeting implements GreetingStore.
func (s *MemStore) Greeting(box string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.greetings[box]), nil
}

// PutMWISubscription implements SubscriptionStore.
func (s *MemStore) PutMWISubscription(id string, state []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs[id] = slices.Clone(state)
	return nil
}

// DeleteMWISubscription implements SubscriptionStore.
func (s *MemStore) DeleteMWISubscription(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.subs, id)
	return nil
}

// MWISubscriptions implements SubscriptionStore.
func (s *MemStore) MWISubscriptions() (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]byte, len(s.subs))
	for k, v := range s.subs {
		out[k] = slices.Clone(v)
	}
	return out, nil
}

func memKey(box, id string) string { return box + "\x00" + id }

// PutVoicemail implements Store.
func (s *MemStore) PutVoicemail(box, id string, meta, audio []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.meta[memKey(box, id)] = slices.Clone(meta)
	if audio != nil {
		s.audio[memKey(box, id)] = slices.Clone(audio)
	}
	return nil
}

// DeleteVoicemail implements Store.
func (s *MemStore) DeleteVoicemail(box, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.meta, memKey(box, id))
	delete(s.audio, memKey(box, id))
	return nil
}

// Voicemails implements Store.
func (s *MemStore) Voicemails(box string) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for k, v := range s.meta {
		if strings.HasPrefix(k, box+"\x00") {
			out = append(out, slices.Clone(v))
		}
	}
	return out, nil
}

// VoicemailAudio implements Store.
func (s *MemStore) VoicemailAudio(box, id string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.audio[memKey(box, id)]), nil
}
