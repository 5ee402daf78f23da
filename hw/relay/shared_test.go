package relay

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestSharedTwoHolders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay")
	nodeA, err := NewShared(path)
	if err != nil {
		t.Fatal(err)
	}
	nodeB, err := NewShared(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if side, sensed, err := nodeB.Position(ctx); err != nil || side != A || !sensed {
		t.Fatalf("fresh relay Position() = %v, %v, %v; want A, sensed", side, sensed, err)
	}
	if err := nodeB.Select(ctx, B); err != nil {
		t.Fatal(err)
	}
	if side, _, _ := nodeA.Position(ctx); side != B {
		t.Fatalf("the twin sees %v after the other selected B", side)
	}
	if err := nodeA.Halt(); err != nil {
		t.Fatal(err)
	}
	if side, _, _ := nodeB.Position(ctx); side != A {
		t.Fatalf("Position() after Halt = %v, want A", side)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := nodeA.Select(cancelled, B); !errors.Is(err, context.Canceled) {
		t.Errorf("Select with a cancelled context = %v", err)
	}
	if err := nodeA.Select(ctx, Side(9)); err == nil {
		t.Error("Select of an invalid side succeeded")
	}
}

func TestSharedBadState(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relay")
	if err := os.WriteFile(path, []byte("sideways\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewShared(path); err == nil {
		t.Fatal("NewShared accepted a corrupt state file")
	}
	// The corrupt file is kept for inspection, not overwritten.
	if b, _ := os.ReadFile(path); string(b) != "sideways\n" {
		t.Errorf("state file now %q", b)
	}
	if _, err := NewShared(filepath.Join(dir, "missing", "relay")); err == nil {
		t.Error("NewShared accepted a missing folder")
	}
	if _, err := NewShared(""); err == nil {
		t.Error("NewShared accepted no path")
	}
}

// TestSharedSurvivesDeath: a node that selects B and dies at once leaves
// the coil energised, as real hardware would.
func TestSharedSurvivesDeath(t *testing.T) {
	if path := os.Getenv("TWINPBX_RELAY_CHILD"); path != "" {
		r, err := NewShared(path)
		if err == nil {
			err = r.Select(context.Background(), B)
		}
		if err != nil {
			os.Exit(2)
		}
		os.Exit(9) // no Halt, no clean-up
	}
	path := filepath.Join(t.TempDir(), "relay")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestSharedSurvivesDeath$")
	cmd.Env = append(os.Environ(), "TWINPBX_RELAY_CHILD="+path)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 9 {
		t.Fatalf("child ended with %v; output:\n%s", err, out)
	}
	r, err := NewShared(path)
	if err != nil {
		t.Fatal(err)
	}
	if side, _, _ := r.Position(context.Background()); side != B {
		t.Fatalf("after the holder died the relay is on %v, want B", side)
	}
}
