package appliance

import (
	"errors"
	"fmt"
	"io"

	"github.com/twinpbx/twinpbx/firmware/control"
	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/pbx/voicemail"
)

// Voicemails returns the messages of mailbox box as the store holds them,
// of every mailbox when box is "". Reading only: it serves the
// `voicemail list|export` commands, on a stopped box from its store and
// on a running one through the control API.
func Voicemails(st *store.Store, box string) ([]voicemail.Message, error) {
	names := []string{box}
	if box == "" {
		var err error
		if names, err = st.VoicemailBoxes(); err != nil {
			return nil, err
		}
	}
	boxes := readMailboxes(st)
	var out []voicemail.Message
	for _, b := range names {
		msgs, err := boxes.List(b)
		if err != nil {
			return nil, err
		}
		out = append(out, msgs...)
	}
	return out, nil
}

// VoicemailWAV writes message id of mailbox box as a WAV file, after
// checking its audio against its checksum. The error wraps
// control.ErrNotFound when the mailbox has no such message.
func VoicemailWAV(st *store.Store, w io.Writer, box, id string) error {
	boxes := readMailboxes(st)
	msgs, err := boxes.List(box)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if m.ID != id {
			continue
		}
		audio, err := boxes.Audio(m)
		if errors.Is(err, voicemail.ErrNotFound) {
			err = fmt.Errorf("%w: %w", control.ErrNotFound, err)
		}
		if err != nil {
			return err
		}
		return voicemail.WriteWAV(w, m.Codec, audio)
	}
	return fmt.Errorf("mailbox %s has no message %s: %w", box, id, control.ErrNotFound)
}

// readMailboxes are the mailboxes of st for reading; the size limit
// plays no part there.
func readMailboxes(st *store.Store) *voicemail.Mailboxes {
	return voicemail.NewMailboxes(st, func() int { return voicemail.MaxStored }, nil)
}

// VoicemailList implements control.Voicemail.
func (c *configured) VoicemailList(box string) (any, error) {
	msgs, err := Voicemails(c.st, box)
	if err != nil {
		return nil, err
	}
	if msgs == nil {
		msgs = []voicemail.Message{} // [] in JSON, not null
	}
	return msgs, nil
}

// VoicemailWAV implements control.Voicemail.
func (c *configured) VoicemailWAV(w io.Writer, box, id string) error {
	return VoicemailWAV(c.st, w, box, id)
}
