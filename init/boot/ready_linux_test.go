package boot

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

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
