package handoff

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

func TestGiveAccept(t *testing.T) {
	l := New(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5061})
	t.Cleanup(func() { _ = l.Close() })
	a, b := net.Pipe()
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	given := make(chan error, 1)
	go func() { given <- l.Give(ctx, a) }()
	got, err := l.Accept()
	if err != nil || got != a {
		t.Fatalf("Accept = %v, %v; want the connection given", got, err)
	}
	select {
	case err := <-given:
		t.Fatalf("Give returned (%v) before the stack took the connection in", err)
	default:
	}
	// Give returns once the stack asks for the next one.
	accepted := make(chan error, 1)
	go func() { _, err := l.Accept(); accepted <- err }()
	if err := <-given; err != nil {
		t.Fatalf("Give: %v", err)
	}
	_ = l.Close()
	if err := <-accepted; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
	if err := l.Give(ctx, b); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Give after Close: %v, want net.ErrClosed", err)
	}
	if l.Addr().String() != "127.0.0.1:5061" {
		t.Errorf("Addr = %v", l.Addr())
	}
}

func TestGiveCancelled(t *testing.T) {
	l := New(&net.TCPAddr{})
	t.Cleanup(func() { _ = l.Close() })
	a, b := net.Pipe()
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Nobody accepts: the connection stays the caller's.
	if err := l.Give(ctx, a); !errors.Is(err, context.Canceled) {
		t.Errorf("Give with no taker and a cancelled context: %v", err)
	}
}
