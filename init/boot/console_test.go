package boot

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/twinpbx/twinpbx/init/boot/request"
)

func TestConsoleProgram(t *testing.T) {
	tests := []struct {
		tty        string
		pending    bool
		wantArgs   []string
		wantTerm   string
		wantSerial bool
	}{
		{"ttyS0", true, []string{"setup", "--data", DataDir, "--accessible"}, "TERM=dumb", true},
		{"ttyS0", false, []string{"console", "--data", DataDir, "--accessible"}, "TERM=dumb", true},
		{"ttyUSB1", false, []string{"console", "--data", DataDir, "--accessible"}, "TERM=dumb", true},
		{"tty1", true, []string{"setup", "--data", DataDir}, "TERM=linux", false},
		{"tty1", false, []string{"console", "--data", DataDir}, "TERM=linux", false},
		{"ttyS", false, []string{"console", "--data", DataDir}, "TERM=linux", false},
		{"ttySx", false, []string{"console", "--data", DataDir}, "TERM=linux", false},
	}
	for _, tt := range tests {
		args, env := ConsoleProgram(tt.tty, tt.pending)
		if !slices.Equal(args, tt.wantArgs) {
			t.Errorf("%s pending=%v: args %q, want %q", tt.tty, tt.pending, args, tt.wantArgs)
		}
		if !slices.Contains(env, tt.wantTerm) || !slices.Contains(env, request.EnvConsole+"=1") {
			t.Errorf("%s: env %q lacks %s or %s=1", tt.tty, env, tt.wantTerm, request.EnvConsole)
		}
		if got := SerialTTY(tt.tty); got != tt.wantSerial {
			t.Errorf("SerialTTY(%q) = %v", tt.tty, got)
		}
	}
}

func TestSetupMarker(t *testing.T) {
	dir := t.TempDir()
	if SetupPending(dir) {
		t.Fatal("pending in an empty folder")
	}
	if err := MarkSetupPending(dir); err != nil {
		t.Fatal(err)
	}
	if !SetupPending(dir) {
		t.Fatal("not pending after marking")
	}
	for range 2 { // clearing twice is fine
		if err := setupDone(dir); err != nil {
			t.Fatal(err)
		}
	}
	if SetupPending(dir) {
		t.Fatal("still pending after setup")
	}
}

func TestWipeData(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"twinpbx.db", "box.yaml", "setup-pending", "logs/twinpbx.log", "lost+found/keep"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := WipeData(dir); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if !slices.Equal(left, []string{"lost+found"}) {
		t.Errorf("left after the wipe: %q, want only lost+found", left)
	}
	if err := WipeData(filepath.Join(dir, "missing")); err == nil {
		t.Error("wiping a missing folder: no error")
	}
}

func TestTakeResetRequest(t *testing.T) {
	p := filepath.Join(t.TempDir(), "factory-reset")
	if takeResetRequest(p) {
		t.Fatal("a reset without a request")
	}
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if !takeResetRequest(p) || takeResetRequest(p) {
		t.Fatal("a request must be taken exactly once")
	}
}
