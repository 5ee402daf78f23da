package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "relay.sock")
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, pw, []string{"-listen", sock}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	// run prints the socket path once it listens.
	if line, err := bufio.NewReader(pr).ReadString('\n'); err != nil || strings.TrimSpace(line) != sock {
		t.Fatalf("run printed %q, %v", line, err)
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	for _, step := range []struct{ cmd, want string }{
		{"relay on 1\r", "relay on 1\n\r>"},
		{"relay read 1\r", "relay read 1\n\ron\n\r>"},
	} {
		if _, err := io.WriteString(c, step.cmd); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(step.want))
		if _, err := io.ReadFull(r, got); err != nil || string(got) != step.want {
			t.Fatalf("after %q got %q, %v; want %q", step.cmd, got, err, step.want)
		}
	}
}

func TestRunFlags(t *testing.T) {
	for _, args := range [][]string{nil, {"-pty", "-listen", "x"}, {"-bogus"}} {
		if err := run(context.Background(), io.Discard, args); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}
