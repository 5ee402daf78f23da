package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/appliance"
	"github.com/twinpbx/twinpbx/firmware/control"
	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/pbx/voicemail"
)

func TestVoicemailCommands(t *testing.T) {
	data := t.TempDir()
	st, err := store.Open(data, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	boxes := voicemail.NewMailboxes(st, func() int { return 10 }, nil)
	at := time.Date(2026, 11, 24, 9, 30, 0, 0, time.UTC)
	for i, caller := range []string{"202", "+4930123/4"} {
		if _, err := boxes.Save(voicemail.Message{Mailbox: "201", Caller: caller, Time: at.Add(time.Duration(i) * time.Minute), Codec: voicemail.PCMA, Duration: time.Second}, bytes.Repeat([]byte{0xd5}, 8000)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	offline := checkVoicemailCommands(t, data)

	// Running, the box holds its store: the commands ask it over the
	// control socket and get the same.
	st, err = store.Open(data, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- control.Serve(ctx, data, storeBox{st}, nil) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	for i := 0; ; i++ {
		if _, err := control.Dial(data); err == nil {
			break
		} else if i == 500 {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	online := checkVoicemailCommands(t, data)
	if len(online) != len(offline) {
		t.Fatalf("running box exported %d files, stopped box %d", len(online), len(offline))
	}
	for name, b := range offline {
		if !bytes.Equal(online[name], b) {
			t.Errorf("%s differs between the running and the stopped box's export", name)
		}
	}
	var out bytes.Buffer
	err = run(context.Background(), []string{"voicemail", "export", "--data", data, "999", t.TempDir()}, &out, &out)
	if err != nil || out.Len() != 0 {
		t.Errorf("export of an empty mailbox: %v, %q", err, out.String())
	}
}

// storeBox is a running box's control API over st, for the voicemail
// commands.
type storeBox struct{ st *store.Store }

func (storeBox) Status() any                                      { return nil }
func (storeBox) ExportCDRs(io.Writer, time.Time, time.Time) error { return nil }
func (storeBox) ExportConfig() ([]byte, error)                    { return nil, nil }
func (storeBox) ImportConfig([]byte) (uint64, bool, error)        { return 0, false, nil }
func (b storeBox) VoicemailList(box string) (any, error)          { return appliance.Voicemails(b.st, box) }
func (b storeBox) VoicemailWAV(w io.Writer, box, id string) error {
	return appliance.VoicemailWAV(b.st, w, box, id)
}

// checkVoicemailCommands lists and exports the two messages of mailbox
// 201 in data and returns the exported files by name.
func checkVoicemailCommands(t *testing.T, data string) map[string][]byte {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"voicemail", "list", "--data", data}, &out, &out); err != nil {
		t.Fatalf("list: %v: %s", err, out.String())
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[0], "201\t") || !strings.Contains(lines[1], "\t202\t1.0s\tPCMA\tnew") {
		t.Errorf("list printed %q", out.String())
	}

	dir := filepath.Join(t.TempDir(), "out")
	out.Reset()
	if err := run(context.Background(), []string{"voicemail", "export", "--data", data, "201", dir}, &out, &out); err != nil {
		t.Fatalf("export: %v: %s", err, out.String())
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.wav"))
	if len(files) != 2 {
		t.Fatalf("exported %v", files)
	}
	exported := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || !bytes.HasPrefix(b, []byte("RIFF")) || len(b) != 8058 {
			t.Errorf("%s: %d bytes, %v", f, len(b), err)
		}
		exported[filepath.Base(f)] = b
		if strings.Contains(filepath.Base(f), "/") || strings.Count(filepath.Base(f), "+4930123_4") > 1 {
			t.Errorf("file name %s", f)
		}
	}
	// Exporting again does not overwrite.
	if err := run(context.Background(), []string{"voicemail", "export", "--data", data, "201", dir}, &out, &out); err == nil {
		t.Error("a second export over the same files succeeded")
	}
	for _, f := range files {
		if b, _ := os.ReadFile(f); !bytes.Equal(b, exported[filepath.Base(f)]) {
			t.Errorf("%s changed by the refused export", f)
		}
	}

	for _, args := range [][]string{{"voicemail"}, {"voicemail", "play"}, {"voicemail", "export", "--data", data, "201"}, {"voicemail", "list", "--data", data, "x"}} {
		var ue usageError
		if err := run(context.Background(), args, &out, &out); !errors.As(err, &ue) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
	return exported
}
