package relay

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/twinpbx/twinpbx/hw/relay/numatosim"
	"github.com/twinpbx/twinpbx/hw/serial"
)

func TestDecodeNumatoReply(t *testing.T) {
	tests := []struct {
		name, cmd, raw, want, wantErr string
	}{
		{name: "read on", cmd: "relay read 0", raw: "relay read 0\n\ron\n\r>", want: "on"},
		{name: "read off", cmd: "relay read 0", raw: "relay read 0\n\roff\n\r>", want: "off"},
		{name: "switch, no answer", cmd: "relay on 0", raw: "relay on 0\n\r>", want: ""},
		{name: "CR LF order", cmd: "relay read 1", raw: "relay read 1\r\non\r\n>", want: "on"},
		{name: "no echo", cmd: "relay read 1", raw: "on\n\r>", want: "on"},
		{name: "noise before echo", cmd: "relay read 2", raw: "\x00garbage\n\r>relay read 2\n\roff\n\r>", want: "off"},
		{name: "blank lines", cmd: "ver", raw: "\n\rver\n\r\n\r00000008\n\r\n\r>", want: "00000008"},
		{name: "char echo with spaces", cmd: "relay read 0", raw: "relay read 0 \r\n on \n\r>", want: "on"},
		{name: "trailing whitespace after prompt", cmd: "relay off 0", raw: "relay off 0\n\r> ", want: ""},
		{name: "no prompt", cmd: "relay read 0", raw: "relay read 0\n\ron\n\r", wantErr: "no prompt"},
		{name: "data after prompt", cmd: "relay read 0", raw: "relay read 0\n\r>on", wantErr: "after the prompt"},
		{name: "empty", cmd: "relay read 0", raw: "", wantErr: "no prompt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeNumatoReply(tt.cmd, []byte(tt.raw))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("DecodeNumatoReply = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestParseNumatoState(t *testing.T) {
	for in, want := range map[string]bool{"on": true, "ON": true, "off": false, " off ": false} {
		got, err := parseNumatoState(in)
		if err != nil || got != want {
			t.Errorf("parseNumatoState(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "1", "on\noff"} {
		if _, err := parseNumatoState(in); err == nil {
			t.Errorf("parseNumatoState(%q) accepted", in)
		}
	}
}

func TestNumatoRelayID(t *testing.T) {
	for n, want := range map[int]string{0: "0", 9: "9", 10: "A", 31: "V"} {
		if got, err := NumatoRelayID(n); err != nil || got != want {
			t.Errorf("NumatoRelayID(%d) = %q, %v", n, got, err)
		}
	}
	for _, n := range []int{-1, 32} {
		if _, err := NumatoRelayID(n); err == nil {
			t.Errorf("NumatoRelayID(%d) accepted", n)
		}
	}
}

// FuzzDecodeNumatoReply: no input may panic, an answer keeps no line-end
// framing, and CR LF decodes like LF CR.
func FuzzDecodeNumatoReply(f *testing.F) {
	seeds, err := filepath.Glob("testdata/numato-*.txt")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add("relay read 0", b)
	}
	f.Add("relay on 0", []byte("relay on 0\n\r>"))
	f.Add("ver", []byte(">>>\r\n"))
	f.Fuzz(func(t *testing.T, cmd string, raw []byte) {
		answer, err := DecodeNumatoReply(cmd, raw)
		if err != nil {
			return
		}
		if strings.ContainsAny(answer, "\r") || strings.HasPrefix(answer, "\n") || strings.HasSuffix(answer, "\n") {
			t.Fatalf("answer %q keeps framing", answer)
		}
		// CR and LF are interchangeable line ends.
		swapped := strings.NewReplacer("\r\n", "\n\r", "\n\r", "\r\n").Replace(string(raw))
		if again, err := DecodeNumatoReply(cmd, []byte(swapped)); err != nil || again != answer {
			t.Fatalf("swapping line ends changed %q, %v into %q, %v", answer, nil, again, err)
		}
	})
}

// numatoOnPty serves a simulated board on the far end of a pty pair and
// opens our serial port on the near end, at the board's settings.
func numatoOnPty(t *testing.T) (*serial.Port, *numatosim.Board) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	port, err := serial.Open(serial.Config{Device: tty.Name(), Baud: NumatoBaud})
	if err != nil {
		t.Fatal(err)
	}
	board := &numatosim.Board{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = board.Serve(ctx, ptmx)
	}()
	t.Cleanup(func() {
		cancel()
		_ = port.Close()
		_ = tty.Close()
		_ = ptmx.Close()
		<-done
	})
	return port, board
}

func TestNumatoOverPty(t *testing.T) {
	port, board := numatoOnPty(t)
	ctx := context.Background()
	for _, n := range []int{0, 12} {
		r, err := NewNumato(port, n, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Select(ctx, B); err != nil {
			t.Fatalf("Select(B) on relay %d: %v", n, err)
		}
		if !board.Relay(n) {
			t.Fatalf("board relay %d off after Select(B)", n)
		}
		side, sensed, err := r.Position(ctx)
		if err != nil || side != B || sensed {
			t.Fatalf("Position() = %v, %v, %v; want B, not sensed", side, sensed, err)
		}
		if err := r.Halt(); err != nil {
			t.Fatal(err)
		}
		if board.Relay(n) {
			t.Fatalf("board relay %d on after Halt", n)
		}
	}
	board.SetStuck(true)
	r, _ := NewNumato(port, 3, 5*time.Second)
	if err := r.Select(ctx, B); !errors.Is(err, ErrNotFollowing) {
		t.Fatalf("Select on a stuck board = %v, want ErrNotFollowing", err)
	}
}

func TestNumatoSilentBoard(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { _ = ptmx.Close(); _ = tty.Close() })
	port, err := serial.Open(serial.Config{Device: tty.Name(), Baud: NumatoBaud})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = port.Close() })
	r, _ := NewNumato(port, 0, 30*time.Millisecond)
	if _, _, err := r.Position(context.Background()); !errors.Is(err, serial.ErrTimeout) {
		t.Fatalf("Position with no board = %v, want a timeout", err)
	}
}
