package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/twinpbx/twinpbx/firmware/control"
	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/pbx/voicemail"
)

// cmdVoicemail runs `voicemail list|export`: read the mailboxes of a
// stopped box's store (a running box holds the store; see docs/CALLS.md).
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
	if _, err := control.Dial(*data); err == nil {
		return errors.New("the box is running and holds its store: stop it (or read the messages on the phone) first")
	}
	if _, err := os.Stat(*data); err != nil {
		return fmt.Errorf("data folder %s: %w", *data, err)
	}
	st, err := store.Open(*data, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	boxes := voicemail.NewMailboxes(st, func() int { return voicemail.MaxStored }, nil)
	if args[0] == "list" {
		return listVoicemail(st, boxes, stdout)
	}
	return exportVoicemail(boxes, fs.Arg(0), fs.Arg(1), stdout)
}

// listVoicemail prints one line per message.
func listVoicemail(st *store.Store, boxes *voicemail.Mailboxes, w io.Writer) error {
	names, err := st.VoicemailBoxes()
	if err != nil {
		return err
	}
	for _, b := range names {
		msgs, err := boxes.List(b)
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
	}
	return nil
}

// exportVoicemail writes every message of ext into dir as a WAV file
// named by time and caller.
func exportVoicemail(boxes *voicemail.Mailboxes, ext, dir string, w io.Writer) error {
	msgs, err := boxes.List(ext)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("making %s: %w", dir, err)
	}
	var errs []error
	for _, m := range msgs {
		audio, err := boxes.Audio(m)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		name := fmt.Sprintf("%s-%s-%s.wav", m.Time.UTC().Format("20060102T150405Z"), safeName(m.Caller), m.ID[len(m.ID)-8:])
		path := filepath.Join(dir, name)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		if err != nil {
			errs = append(errs, fmt.Errorf("exporting message %s: %w", m.ID, err))
			continue
		}
		err = voicemail.WriteWAV(f, m.Codec, audio)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
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
