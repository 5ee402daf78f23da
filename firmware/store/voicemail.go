package store

import (
	"fmt"
	"strings"
)

// Buckets of the voicemail (pbx/voicemail): index records and audio apart,
// so that listing a mailbox reads no audio. Both replicate to the twin as
// every bucket does.
const (
	BucketVoicemail      = "voicemail"       // key: mailbox NUL message id; value: index record (JSON)
	BucketVoicemailAudio = "voicemail_audio" // key: mailbox NUL message id; value: G.711 audio
)

func voicemailKey(box, id string) (string, error) {
	if box == "" || id == "" || strings.ContainsRune(box, 0) || strings.ContainsRune(id, 0) {
		return "", fmt.Errorf("voicemail key %q/%q: empty or with NUL", box, id)
	}
	return box + "\x00" + id, nil
}

// PutVoicemail stores a message's index record and, when audio is not
// nil, its audio, in one transaction.
func (s *Store) PutVoicemail(box, id string, meta, audio []byte) error {
	k, err := voicemailKey(box, id)
	if err != nil {
		return fmt.Errorf("saving a message: %w", err)
	}
	return s.Update(func(t *Tx) error {
		if audio != nil {
			if err := t.Put(BucketVoicemailAudio, k, audio); err != nil {
				return fmt.Errorf("saving the audio of message %s: %w", id, err)
			}
		}
		if err := t.Put(BucketVoicemail, k, meta); err != nil {
			return fmt.Errorf("saving message %s: %w", id, err)
		}
		return nil
	})
}

// DeleteVoicemail removes a message and its audio.
func (s *Store) DeleteVoicemail(box, id string) error {
	k, err := voicemailKey(box, id)
	if err != nil {
		return fmt.Errorf("deleting a message: %w", err)
	}
	return s.Update(func(t *Tx) error {
		if err := t.Delete(BucketVoicemail, k); err != nil {
			return fmt.Errorf("deleting message %s: %w", id, err)
		}
		if err := t.Delete(BucketVoicemailAudio, k); err != nil {
			return fmt.Errorf("deleting the audio of message %s: %w", id, err)
		}
		return nil
	})
}

// Voicemails returns the index records of a mailbox, in id order.
func (s *Store) Voicemails(box string) ([][]byte, error) {
	var out [][]byte
	err := s.View(func(t *Tx) error {
		return t.ForEach(BucketVoicemail, box+"\x00", box+"\x01", func(_ string, v []byte) error {
			out = append(out, append([]byte{}, v...))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("listing mailbox %s: %w", box, err)
	}
	return out, nil
}

// VoicemailAudio returns a message's audio, nil when there is none.
func (s *Store) VoicemailAudio(box, id string) ([]byte, error) {
	k, err := voicemailKey(box, id)
	if err != nil {
		return nil, fmt.Errorf("reading a message: %w", err)
	}
	var out []byte
	err = s.View(func(t *Tx) error {
		out = t.Get(BucketVoicemailAudio, k)
		return nil
	})
	return out, err
}

// VoicemailBoxes lists the mailboxes that hold messages.
func (s *Store) VoicemailBoxes() ([]string, error) {
	var out []string
	err := s.View(func(t *Tx) error {
		return t.ForEach(BucketVoicemail, "", "", func(k string, _ []byte) error {
			box, _, _ := strings.Cut(k, "\x00")
			if len(out) == 0 || out[len(out)-1] != box {
				out = append(out, box)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("listing mailboxes: %w", err)
	}
	return out, nil
}

// BucketMWISubscriptions holds the message-summary subscriptions of the
// mailboxes (pbx/voicemail): their dialog, expiry and CSeq, so that the
// twin that takes over goes on notifying within the same dialogs. It
// replicates as every bucket does. Key: the subscription's Call-ID;
// value: opaque state (JSON).
const BucketMWISubscriptions = "mwi_subscriptions"

// PutMWISubscription stores (or replaces) a subscription's state.
func (s *Store) PutMWISubscription(id string, state []byte) error {
	return s.Update(func(t *Tx) error {
		if err := t.Put(BucketMWISubscriptions, id, state); err != nil {
			return fmt.Errorf("saving subscription %q: %w", id, err)
		}
		return nil
	})
}

// DeleteMWISubscription removes a subscription; one not there is no
// error.
func (s *Store) DeleteMWISubscription(id string) error {
	return s.Update(func(t *Tx) error {
		if err := t.Delete(BucketMWISubscriptions, id); err != nil {
			return fmt.Errorf("deleting subscription %q: %w", id, err)
		}
		return nil
	})
}

// MWISubscriptions returns every stored subscription by id.
func (s *Store) MWISubscriptions() (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.View(func(t *Tx) error {
		return t.ForEach(BucketMWISubscriptions, "", "", func(k string, v []byte) error {
			out[k] = append([]byte{}, v...)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("listing subscriptions: %w", err)
	}
	return out, nil
}

// BucketVoicemailGreetings holds the greetings the owners recorded
// (pbx/voicemail). Key: mailbox; value: the greeting as pbx/voicemail
// encodes it (codec and G.711 audio). It replicates as every bucket does.
const BucketVoicemailGreetings = "voicemail_greetings"

// PutGreeting stores (or replaces) a mailbox's greeting.
func (s *Store) PutGreeting(box string, greeting []byte) error {
	if box == "" {
		return fmt.Errorf("saving a greeting: no mailbox")
	}
	return s.Update(func(t *Tx) error {
		if err := t.Put(BucketVoicemailGreetings, box, greeting); err != nil {
			return fmt.Errorf("saving the greeting of %s: %w", box, err)
		}
		return nil
	})
}

// DeleteGreeting removes a mailbox's greeting; none there is no error.
func (s *Store) DeleteGreeting(box string) error {
	if box == "" {
		return fmt.Errorf("deleting a greeting: no mailbox")
	}
	return s.Update(func(t *Tx) error {
		if err := t.Delete(BucketVoicemailGreetings, box); err != nil {
			return fmt.Errorf("deleting the greeting of %s: %w", box, err)
		}
		return nil
	})
}

// Greeting returns a mailbox's greeting, nil when there is none.
func (s *Store) Greeting(box string) ([]byte, error) {
	if box == "" {
		return nil, nil
	}
	var out []byte
	err := s.View(func(t *Tx) error {
		out = t.Get(BucketVoicemailGreetings, box)
		return nil
	})
	return out, err
}

// Buckets of the messages being recorded (pbx/voicemail): the recorder
// saves its audio so far in parts every few seconds, so that the twin
// that takes over (or this box after a restart) can keep what was
// recorded. Both replicate as every bucket does. The record and each
// part are written in one transaction; all of them go in one.
const (
	BucketVoicemailRecording      = "voicemail_recording"       // key: Call-ID; value: opaque record (JSON)
	BucketVoicemailRecordingAudio = "voicemail_recording_audio" // key: Call-ID NUL part (6 digits); value: G.711 audio
)

func recordingPartKey(id string, part int) string { return fmt.Sprintf("%s\x00%06d", id, part) }

// PutVoicemailRecording stores (or replaces) the record of a message
// being recorded and, when audio is not nil, its audio part number part,
// in one transaction.
func (s *Store) PutVoicemailRecording(id string, record []byte, part int, audio []byte) error {
	if id == "" || strings.ContainsRune(id, 0) || part < 0 || part > 999999 {
		return fmt.Errorf("saving a recording %q part %d: bad id or part", id, part)
	}
	return s.Update(func(t *Tx) error {
		if audio != nil {
			if err := t.Put(BucketVoicemailRecordingAudio, recordingPartKey(id, part), audio); err != nil {
				return fmt.Errorf("saving part %d of recording %q: %w", part, id, err)
			}
		}
		if err := t.Put(BucketVoicemailRecording, id, record); err != nil {
			return fmt.Errorf("saving recording %q: %w", id, err)
		}
		return nil
	})
}

// DeleteVoicemailRecording removes a recording's record and audio; one
// not there is no error.
func (s *Store) DeleteVoicemailRecording(id string) error {
	if id == "" || strings.ContainsRune(id, 0) {
		return fmt.Errorf("deleting a recording %q: bad id", id)
	}
	return s.Update(func(t *Tx) error {
		var parts []string
		err := t.ForEach(BucketVoicemailRecordingAudio, id+"\x00", id+"\x01", func(k string, _ []byte) error {
			parts = append(parts, k)
			return nil
		})
		if err != nil {
			return fmt.Errorf("listing the parts of recording %q: %w", id, err)
		}
		for _, k := range parts {
			if err := t.Delete(BucketVoicemailRecordingAudio, k); err != nil {
				return fmt.Errorf("deleting a part of recording %q: %w", id, err)
			}
		}
		if err := t.Delete(BucketVoicemailRecording, id); err != nil {
			return fmt.Errorf("deleting recording %q: %w", id, err)
		}
		return nil
	})
}

// VoicemailRecordings returns every stored recording by id: its record
// first, then its audio parts in order. Parts without a record are left
// out.
func (s *Store) VoicemailRecordings() (map[string][][]byte, error) {
	out := map[string][][]byte{}
	err := s.View(func(t *Tx) error {
		if err := t.ForEach(BucketVoicemailRecording, "", "", func(k string, v []byte) error {
			out[k] = [][]byte{append([]byte{}, v...)}
			return nil
		}); err != nil {
			return err
		}
		return t.ForEach(BucketVoicemailRecordingAudio, "", "", func(k string, v []byte) error {
			id, _, _ := strings.Cut(k, "\x00")
			if r, ok := out[id]; ok {
				out[id] = append(r, append([]byte{}, v...))
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("listing recordings: %w", err)
	}
	return out, nil
}

// BucketMWITold holds what each registered phone that does not
// subscribe was last told of its mailbox by unsolicited message-summary
// NOTIFY (pbx/voicemail), so that the twin that takes over neither
// repeats it at a registration refresh nor forgets a lamp it must put
// out. It replicates as every bucket does. Key: mailbox NUL contact;
// value: opaque state (JSON).
const BucketMWITold = "mwi_told"

// PutMWITold stores (or replaces) what a contact was told.
func (s *Store) PutMWITold(key string, state []byte) error {
	return s.Update(func(t *Tx) error {
		if err := t.Put(BucketMWITold, key, state); err != nil {
			return fmt.Errorf("saving what %q was told: %w", key, err)
		}
		return nil
	})
}

// DeleteMWITold forgets what a contact was told; none there is no error.
func (s *Store) DeleteMWITold(key string) error {
	return s.Update(func(t *Tx) error {
		if err := t.Delete(BucketMWITold, key); err != nil {
			return fmt.Errorf("forgetting what %q was told: %w", key, err)
		}
		return nil
	})
}

// MWITold returns what every contact was told, by key.
func (s *Store) MWITold() (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.View(func(t *Tx) error {
		return t.ForEach(BucketMWITold, "", "", func(k string, v []byte) error {
			out[k] = append([]byte{}, v...)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("listing what contacts were told: %w", err)
	}
	return out, nil
}
