package appliance

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/control"
	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/pbx/voicemail"
)

func TestVoicemailReading(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := &configured{st: st}
	if l, err := c.VoicemailList(""); err != nil {
		t.Fatal(err)
	} else if b, _ := json.Marshal(l); string(b) != "[]" {
		t.Errorf("no messages listed as %s, want []", b)
	}

	boxes := voicemail.NewMailboxes(st, func() int { return 10 }, nil)
	at := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	saved := map[string]voicemail.Message{}
	for i, box := range []string{"201", "202", "201"} {
		m, err := boxes.Save(voicemail.Message{Mailbox: box, Caller: "300", Time: at.Add(time.Duration(i) * time.Minute), Codec: voicemail.PCMU, Duration: time.Second}, bytes.Repeat([]byte{byte(0x10 + i)}, 800))
		if err != nil {
			t.Fatal(err)
		}
		saved[m.ID] = m
	}

	for _, tt := range []struct {
		box  string
		want int
	}{{"", 3}, {"201", 2}, {"202", 1}, {"203", 0}} {
		msgs, err := Voicemails(st, tt.box)
		if err != nil || len(msgs) != tt.want {
			t.Errorf("Voicemails(%q) = %d messages, %v; want %d", tt.box, len(msgs), err, tt.want)
		}
		for _, m := range msgs {
			if tt.box != "" && m.Mailbox != tt.box {
				t.Errorf("Voicemails(%q) gave a message of %s", tt.box, m.Mailbox)
			}
		}
	}

	for id, m := range saved {
		var got, want bytes.Buffer
		if err := c.VoicemailWAV(&got, m.Mailbox, id); err != nil {
			t.Fatal(err)
		}
		audio, _ := st.VoicemailAudio(m.Mailbox, id)
		if err := voicemail.WriteWAV(&want, m.Codec, audio); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Errorf("message %s: WAV of %d bytes, want the stored audio's %d", id, got.Len(), want.Len())
		}
		// Not in another mailbox.
		other := map[string]string{"201": "202", "202": "201"}[m.Mailbox]
		if err := VoicemailWAV(st, &got, other, id); !errors.Is(err, control.ErrNotFound) {
			t.Errorf("message %s asked of mailbox %s: %v, want not found", id, other, err)
		}
	}
	if err := VoicemailWAV(st, &bytes.Buffer{}, "201", "nope"); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("unknown message: %v, want not found", err)
	}

	// Damaged audio is an error, not a file of the wrong sound.
	for id, m := range saved {
		meta, _ := json.Marshal(m)
		if err := st.PutVoicemail(m.Mailbox, id, meta, []byte("other audio")); err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := VoicemailWAV(st, &b, m.Mailbox, id); !errors.Is(err, voicemail.ErrChecksum) || b.Len() != 0 {
			t.Errorf("damaged audio: %v, %d bytes written; want a checksum error and nothing", err, b.Len())
		}
		break
	}
}
