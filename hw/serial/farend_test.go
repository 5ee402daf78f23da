package serial

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// echo serves a line by sending back what it reads.
func echo(rw io.ReadWriteCloser) error {
	_, err := io.Copy(rw, rw)
	return err
}

// TestServeFarEnd: a simulator's line served on a pseudo-terminal and on
// a unix socket carries bytes both ways, and ends when ctx does.
func TestServeFarEnd(t *testing.T) {
	tests := []struct {
		name  string
		serve func(ctx context.Context, out io.Writer, path string) error
		open  func(t *testing.T, path string) io.ReadWriteCloser
	}{
		{
			name: "pty",
			serve: func(ctx context.Context, out io.Writer, _ string) error {
				return ServePTY(ctx, out, echo)
			},
			open: func(t *testing.T, path string) io.ReadWriteCloser {
				p, err := Open(Config{Device: path, Baud: 9600}) // raw mode, as the box opens it
				if err != nil {
					t.Fatal(err)
				}
				return p
			},
		},
		{
			name: "unix socket",
			serve: func(ctx context.Context, out io.Writer, path string) error {
				return ServeUnix(ctx, out, path, slog.New(slog.DiscardHandler), echo)
			},
			open: func(t *testing.T, path string) io.ReadWriteCloser {
				c, err := net.Dial("unix", path)
				if err != nil {
					t.Fatal(err)
				}
				return c
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pr, pw := io.Pipe()
			done := make(chan error, 1)
			sock := filepath.Join(t.TempDir(), "line")
			go func() { done <- tt.serve(ctx, pw, sock) }()
			path, err := bufio.NewReader(pr).ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			go io.Copy(io.Discard, pr)
			line := tt.open(t, strings.TrimSpace(path))
			defer line.Close()
			if _, err := line.Write([]byte("relay read 0\r")); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len("relay read 0\r"))
			if _, err := io.ReadFull(line, got); err != nil || string(got) != "relay read 0\r" {
				t.Fatalf("read back %q, %v", got, err)
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("ended with %v, want nil when ctx ends", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("did not end with its context")
			}
		})
	}
}
