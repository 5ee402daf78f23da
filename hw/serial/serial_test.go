package serial

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
)

// openPair opens a pty pair and our Port on its terminal end; the returned
// file is the "device" end a test writes and reads.
func openPair(t *testing.T) (*Port, *os.File) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { _ = ptmx.Close(); _ = tty.Close() })
	p, err := Open(Config{Device: tty.Name(), Baud: 19200})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p, ptmx
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		c       Config
		wantErr string
	}{
		{c: Config{Device: "/dev/ttyS1"}},
		{c: Config{Device: "/dev/ttyS1", Baud: 19200, Parity: "even", StopBits: "2", DataBits: 7}},
		{c: Config{Device: "/dev/ttyS1", Parity: "O", StopBits: "1.5"}},
		{c: Config{}, wantErr: "no device"},
		{c: Config{Device: "x", Baud: -1}, wantErr: "negative"},
		{c: Config{Device: "x", DataBits: 9}, wantErr: "data bits"},
		{c: Config{Device: "x", Parity: "maybe"}, wantErr: "parity"},
		{c: Config{Device: "x", StopBits: "3"}, wantErr: "stop bits"},
	}
	for _, tt := range tests {
		err := tt.c.Validate()
		if tt.wantErr == "" && err != nil {
			t.Errorf("%+v: %v", tt.c, err)
		}
		if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%+v: err %v, want %q", tt.c, err, tt.wantErr)
		}
	}
}

func TestOpenMissing(t *testing.T) {
	if _, err := Open(Config{Device: t.TempDir() + "/ttyNONE"}); err == nil {
		t.Fatal("opened a missing device")
	}
}

func TestReadTimeout(t *testing.T) {
	p, _ := openPair(t)
	buf := make([]byte, 8)
	if n, err := p.ReadTimeout(buf, 20*time.Millisecond); !errors.Is(err, ErrTimeout) || n != 0 {
		t.Fatalf("ReadTimeout on a silent line = %d, %v; want ErrTimeout", n, err)
	}
	if _, err := p.ReadUntil([]byte(">"), 0); !errors.Is(err, ErrTimeout) {
		t.Fatalf("ReadUntil with no time = %v; want ErrTimeout", err)
	}
}

func TestReadLines(t *testing.T) {
	p, dev := openPair(t)
	if _, err := io.WriteString(dev, "one\r\ntwo\n"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"one", "two"} {
		got, err := p.ReadLine(5 * time.Second)
		if err != nil || got != want {
			t.Fatalf("ReadLine = %q, %v; want %q", got, err, want)
		}
	}
	// A frame split over two writes, and a partial line at a timeout.
	if _, err := io.WriteString(dev, "relay re"); err != nil {
		t.Fatal(err)
	}
	got, err := p.ReadUntil([]byte("\n\r>"), 50*time.Millisecond)
	if !errors.Is(err, ErrTimeout) || string(got) != "relay re" {
		t.Fatalf("partial ReadUntil = %q, %v", got, err)
	}
	if _, err := io.WriteString(dev, "ad 0\n\rxyz"); err != nil {
		t.Fatal(err)
	}
	got, err = p.ReadUntil([]byte("\n\r"), 5*time.Second)
	if err != nil || string(got) != "ad 0\n\r" {
		t.Fatalf("ReadUntil = %q, %v", got, err)
	}
	// What followed the delimiter is kept for the next read.
	buf := make([]byte, 16)
	n, err := p.ReadTimeout(buf, time.Second)
	if err != nil || string(buf[:n]) != "xyz" {
		t.Fatalf("ReadTimeout after a frame = %q, %v; want the kept xyz", buf[:n], err)
	}
	if _, err := p.ReadUntil(nil, time.Second); err == nil {
		t.Error("ReadUntil accepted an empty delimiter")
	}
}

func TestWriteAndDiscard(t *testing.T) {
	p, dev := openPair(t)
	if _, err := p.Write([]byte("relay on 0\r")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := dev.Read(buf)
	if err != nil || string(buf[:n]) != "relay on 0\r" {
		t.Fatalf("device got %q, %v", buf[:n], err)
	}
	if _, err := io.WriteString(dev, "stale\n"); err != nil {
		t.Fatal(err)
	}
	// Wait until the stale line is readable, then discard it.
	if _, err := p.ReadUntil([]byte("st"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Discard(); err != nil {
		t.Fatal(err)
	}
	if n, err := p.ReadTimeout(buf, 20*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("read %q after Discard", buf[:n])
	}
}
