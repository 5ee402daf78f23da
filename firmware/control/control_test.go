package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

type fakeAppliance struct {
	imported []byte
	cdrFrom  time.Time
}

func (f *fakeAppliance) Status() any { return map[string]string{"role": "standalone"} }
func (f *fakeAppliance) ExportCDRs(w io.Writer, from, to time.Time) error {
	f.cdrFrom = from
	_, err := io.WriteString(w, "id,call_id\n1,abc\n")
	return err
}
func (f *fakeAppliance) ExportConfig() ([]byte, error) { return []byte("node: {name: a}\n"), nil }
func (f *fakeAppliance) ImportConfig(b []byte) (uint64, bool, error) {
	if bytes.Contains(b, []byte("broken")) {
		return 0, false, errors.New("config.yaml:3: extensions[0].number: broken")
	}
	f.imported = b
	return 7, true, nil
}

func serve(t *testing.T, a Appliance) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctl") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, dir, a, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := os.Stat(filepath.Join(dir, SocketName)); !os.IsNotExist(err) {
			t.Errorf("socket left behind after shutdown: %v", err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := Dial(dir); err == nil {
			_ = c
			return dir
		}
		if time.Now().After(deadline) {
			t.Fatal("control socket did not come up")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClientServer(t *testing.T) {
	fa := &fakeAppliance{}
	dir := serve(t, fa)
	c, err := Dial(dir)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		call func(w io.Writer) error
		want string
	}{
		{"status", c.Status, `"role": "standalone"`},
		{"config", c.Config, "node: {name: a}"},
		{"cdr", func(w io.Writer) error {
			return c.CDRs(w, time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC), time.Time{})
		}, "1,abc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tc.call(&b); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(b.String(), tc.want) {
				t.Fatalf("got %q, want it to contain %q", b.String(), tc.want)
			}
		})
	}
	// The server runs in this process: the collection is seen here.
	gcs := func() uint32 {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.NumGC
	}
	before := gcs()
	var b bytes.Buffer
	if err := c.StatusAfterGC(&b); err != nil || !strings.Contains(b.String(), `"role": "standalone"`) {
		t.Fatalf("StatusAfterGC = %q, %v", b.String(), err)
	}
	if n := gcs() - before; n < 2 {
		t.Errorf("StatusAfterGC ran %d garbage collections, want one before the status and one after it", n)
	}
	if want := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC); !fa.cdrFrom.Equal(want) {
		t.Errorf("from reached the appliance as %v, want %v", fa.cdrFrom, want)
	}

	r, err := c.ImportConfig([]byte("node: {name: b}\n"))
	if err != nil || r.Version != 7 || !r.Restart {
		t.Fatalf("import = %+v, %v; want version 7, restart", r, err)
	}
	_, err = c.ImportConfig([]byte("broken"))
	if err == nil || !strings.Contains(err.Error(), "extensions[0].number: broken") {
		t.Fatalf("a rejected import must carry the validation message, got %v", err)
	}
}

func TestSecondServerRefused(t *testing.T) {
	dir := serve(t, &fakeAppliance{})
	err := Serve(context.Background(), dir, &fakeAppliance{}, nil)
	if err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second Serve on the same folder = %v, want 'already running'", err)
	}
}

func TestDialNotRunning(t *testing.T) {
	dir := t.TempDir()
	if _, err := Dial(dir); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Dial on an empty folder = %v, want ErrNotRunning", err)
	}
	// A stale socket file left by a killed process also means not running.
	if err := os.WriteFile(filepath.Join(dir, SocketName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Dial(dir); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Dial on a stale socket file = %v, want ErrNotRunning", err)
	}
}

type fakePair struct {
	fakeAppliance
	maint     []bool
	switchErr error
}

func (f *fakePair) Switchover(context.Context) error { return f.switchErr }
func (f *fakePair) SetMaintenance(on bool) error     { f.maint = append(f.maint, on); return nil }

func TestPairRequests(t *testing.T) {
	standalone, err := Dial(serve(t, &fakeAppliance{}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := standalone.Pair("switchover"); err == nil || !strings.Contains(err.Error(), ErrNotPair.Error()) {
		t.Fatalf("switchover on a standalone box = %v, want %q", err, ErrNotPair)
	}

	fp := &fakePair{}
	c, err := Dial(serve(t, fp))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ what, want, wantErr string }{
		{"switchover", "handed over", ""},
		{"maintenance/on", "maintenance on", ""},
		{"maintenance/off", "maintenance off", ""},
		{"maintenance/maybe", "", "want on or off"},
	}
	for _, tc := range tests {
		got, err := c.Pair(tc.what)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err %v, want %q", tc.what, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s = %q, %v; want %q", tc.what, got, err, tc.want)
		}
	}
	if len(fp.maint) != 2 || !fp.maint[0] || fp.maint[1] {
		t.Errorf("maintenance calls %v, want [true false]", fp.maint)
	}
	fp.switchErr = errors.New("the twin is not in sync")
	if _, err := c.Pair("switchover"); err == nil || !strings.Contains(err.Error(), "not in sync") {
		t.Errorf("a refused switchover must carry the reason, got %v", err)
	}
}

// fakeMailboxes keeps messages by mailbox and id; a message "bad" fails
// as damaged audio would.
type fakeMailboxes struct {
	fakeAppliance
	asked []string
}

func (f *fakeMailboxes) VoicemailList(box string) (any, error) {
	f.asked = append(f.asked, box)
	return []map[string]string{{"mailbox": "201", "id": "m1"}}, nil
}

func (f *fakeMailboxes) VoicemailWAV(w io.Writer, box, id string) error {
	switch {
	case box == "201/x" && id == "m 1":
		_, err := io.WriteString(w, "RIFF-m1")
		return err
	case id == "bad":
		return errors.New("reading message bad: audio does not match its checksum")
	}
	return fmt.Errorf("mailbox %s has no message %s: %w", box, id, ErrNotFound)
}

func TestVoicemail(t *testing.T) {
	fm := &fakeMailboxes{}
	c, err := Dial(serve(t, fm))
	if err != nil {
		t.Fatal(err)
	}
	list, err := c.Voicemails("201&box=9")
	if err != nil || !strings.Contains(string(list), `"id":"m1"`) {
		t.Fatalf("Voicemails = %s, %v", list, err)
	}
	if _, err := c.Voicemails(""); err != nil {
		t.Fatal(err)
	}
	if want := []string{"201&box=9", ""}; !slices.Equal(fm.asked, want) {
		t.Errorf("the appliance was asked for %q, want %q", fm.asked, want)
	}
	// Names with a slash or a space reach the appliance as they are.
	var b bytes.Buffer
	if err := c.VoicemailWAV(&b, "201/x", "m 1"); err != nil || b.String() != "RIFF-m1" {
		t.Fatalf("VoicemailWAV = %q, %v", b.String(), err)
	}
	for id, want := range map[string]string{"m2": "has no message m2", "bad": "does not match its checksum"} {
		b.Reset()
		err := c.VoicemailWAV(&b, "201", id)
		if err == nil || !strings.Contains(err.Error(), want) || b.Len() != 0 {
			t.Errorf("message %s: %v (%d bytes written), want an error with %q and nothing written", id, err, b.Len(), want)
		}
	}

	// A box without mailboxes (a dispatcher's API) says so.
	plain, err := Dial(serve(t, &fakeAppliance{}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Voicemails(""); err == nil || !strings.Contains(err.Error(), "keeps no mailboxes") {
		t.Errorf("Voicemails on a box without mailboxes = %v", err)
	}
}
