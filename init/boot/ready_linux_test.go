package boot

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/twinpbx/twinpbx/internal/syncbuf"
	"github.com/twinpbx/twinpbx/internal/waitfor"
)

func TestListenPipe(t *testing.T) {
	var out syncbuf.Buffer
	heard := make(chan struct{})
	w := listenPipe(slog.New(slog.DiscardHandler), &out, heard)
	t.Cleanup(func() { w.Close() })
	if _, err := io.WriteString(w, "First run\n"); err != nil {
		t.Fatal(err)
	}
	if waitHeard(context.Background(), heard, 50*time.Millisecond) {
		t.Fatal("heard closed before the PBX said it listens")
	}
	if _, err := io.WriteString(w, "SIP listening on udp:[::]:5060\n"); err != nil {
		t.Fatal(err)
	}
	if !waitHeard(context.Background(), heard, time.Minute) {
		t.Fatal("heard still open a minute after the PBX said it listens")
	}
	w.Close()
	const want = "First run\nSIP listening on udp:[::]:5060\n"
	waitfor.Cond(t, time.Minute, "the output passed on", func() bool { return out.String() == want })
}

func TestWaitHeardContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if waitHeard(ctx, make(chan struct{}), time.Hour) {
		t.Error("waitHeard reported heard after its context ended")
	}
}

// TestListenPipeWithoutPipe: when no pipe can be made (no file
// descriptor left), twinpbx gets init's own standard output, which
// runChild must not close (childOpts.stdout nil), and the consoles are
// not held back.
func TestListenPipeWithoutPipe(t *testing.T) {
	// The lowest free descriptor number: a limit there leaves none, for
	// the moment listenPipe runs (no test of the package runs alongside).
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	free := f.Fd()
	f.Close()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = uint64(free)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	heard := make(chan struct{})
	w := listenPipe(slog.New(slog.DiscardHandler), io.Discard, heard)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	switch w {
	case nil:
	case os.Stdout:
		t.Fatal("listenPipe returned init's own standard output, which runChild would close; want nil")
	default:
		w.Close()
		t.Fatalf("listenPipe = %v with no descriptor left, want nil", w.Name())
	}
	if !waitHeard(context.Background(), heard, time.Minute) {
		t.Error("heard still open without a pipe: the consoles would wait for nothing")
	}
}
