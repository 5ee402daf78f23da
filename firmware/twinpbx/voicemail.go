package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/twinpbx/twinpbx/firmware/appliance"
	"github.com/twinpbx/twinpbx/firmware/control"
	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/pbx/voicemail"
)

// cmdVoicemail runs `voicemail list|export`: read the mailboxes through
// the running box's control socket, or from a stopped box's store.
func cmdVoicemail(args []string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "export") {
		return usageError{"voicemail needs list or export"}
	}
	fs, data := newFlags("voicemail " + args[0])
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	want := 0
	if args[0] == "export" {
		want = 2
	}
	if fs.NArg() != want {
		return usageError{"voicemail list takes no arguments; voicemail export takes EXT DIR"}
	}
	src, closeSrc, err := openMailboxes(*data)
	if err != nil {
		return err
	}
	defer closeSrc()
	if args[0] == "list" {
		return listVoicemail(src, stdout)
	}
	return exportVoicemail(src, fs.Arg(0), fs.Arg(1), stdout)
}

// mailboxSource is where the commands read messages: a running box or a
// stopped box's store.
type mailboxSource interface {
	// messages returns mailbox box's messages, every mailbox's for "".
	messages(box string) ([]voicemail.Message, error)
	// wav writes one message as a WAV file.
	wav(w io.Writer, m voicemail.Message) error
}

// openMailboxes returns the running box on data, or else its store.
func openMailboxes(data string) (mailboxSource, func(), error) {
	c, err := control.Dial(data)
	if err == nil {
		return runningBox{c}, func() {}, nil
	}
	if !errors.Is(err, control.ErrNotRunning) {
		return nil, nil, err
	}
	if _, err := os.Stat(data); err != nil {
		return nil, nil, fmt.Errorf("data folder %s: %w", data, err)
	}
	st, err := store.Open(data, store.Options{})
	if err != nil {
		return nil, nil, err
	}
	return storedBoxes{st}, func() { st.Close() }, nil
}

// runningBox reads through the control socket.
type runningBox struct{ c *control.Client }

func (r runningBox) messages(box string) ([]voicemail.Message, error) {
	b, err := r.c.Voicemails(box)
	if err != nil {
		return nil, err
	}
	var msgs []voicemail.Message
	if err := json.Unmarshal(b, &msgs); err != nil {
		return nil, fmt.Errorf("reading the running box's list of messages: %w", err)
	}
	return msgs, nil
}

func (r runningBox) wav(w io.Writer, m voicemail.Message) error {
	return r.c.VoicemailWAV(w, m.Mailbox, m.ID)
}

// storedBoxes reads a stopped box's store.
type storedBoxes struct{ st *store.Store }

func (s storedBoxes) messages(box string) ([]voicemail.Message, error) {
	return appliance.Voicemails(s.st, box)
}

func (s storedBoxes) wav(w io.Writer, m voicemail.Message) error {
	return appliance.VoicemailWAV(s.st, w, m.Mailbox, m.ID)
}

// listVoicemail prints one line per message.
func listVoicemail(src mailboxSource, w io.Writer) error {
	msgs, err := src.messages("")
	if err != nil {
		return err
	}
	for _, m := range msgs {
		state := "old"
		if m.New {
			state = "new"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%.1fs\t%s\t%s\n", m.Mailbox, m.ID, m.Time.Format("2006-01-02T15:04:05Z"), m.Caller, m.Duration.Seconds(), m.Codec, state)
	}
	return nil
}

// exportVoicemail writes every message of ext into dir as a WAV file
// named by time and caller. A file is written whole or not at all.
func exportVoicemail(src mailboxSource, ext, dir string, w io.Writer) error {
	msgs, err := src.messages(ext)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("making %s: %w", dir, err)
	}
	var errs []error
	for _, m := range msgs {
		var b bytes.Buffer
		if err := src.wav(&b, m); err != nil {
			errs = append(errs, fmt.Errorf("exporting message %s: %w", m.ID, err))
			continue
		}
		name := fmt.Sprintf("%s-%s-%s.wav", m.Time.UTC().Format("20060102T150405Z"), safeName(m.Caller), m.ID[max(0, len(m.ID)-8):])
		path := filepath.Join(dir, name)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		if err != nil {
			errs = append(errs, fmt.Errorf("exporting message %s: %w", m.ID, err))
			continue
		}
		_, err = b.WriteTo(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(path)
			errs = append(errs, fmt.Errorf("exporting message %s: %w", m.ID, err))
			continue
		}
		fmt.Fprintln(w, path)
	}
	return errors.Join(errs...)
}

// safeName keeps the characters of a caller number fit for a file name.
func safeName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '+' {
			return r
		}
		return '_'
	}, s)
	if s == "" {
		return "unknown"
	}
	return s
}
