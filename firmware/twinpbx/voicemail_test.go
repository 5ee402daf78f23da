package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || !bytes.HasPrefix(b, []byte("RIFF")) || len(b) != 8058 {
			t.Errorf("%s: %d bytes, %v", f, len(b), err)
		}
		if strings.Contains(filepath.Base(f), "/") || strings.Count(filepath.Base(f), "+4930123_4") > 1 {
			t.Errorf("file name %s", f)
		}
	}
	// Exporting again does not overwrite.
	if err := run(context.Background(), []string{"voicemail", "export", "--data", data, "201", dir}, &out, &out); err == nil {
		t.Error("a second export over the same files succeeded")
	}

	for _, args := range [][]string{{"voicemail"}, {"voicemail", "play"}, {"voicemail", "export", "--data", data, "201"}, {"voicemail", "list", "--data", data, "x"}} {
		var ue usageError
		if err := run(context.Background(), args, &out, &out); !errors.As(err, &ue) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
}
