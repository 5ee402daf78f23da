package control

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
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
	if gcs() == before {
		t.Error("StatusAfterGC ran no garbage collection")
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
