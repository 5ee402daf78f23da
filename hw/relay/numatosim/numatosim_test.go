package numatosim

import (
	"bytes"
	"context"
	"io"
	"testing"
)

func TestHandle(t *testing.T) {
	b := &Board{}
	steps := []struct{ cmd, want string }{
		{"relay read 0", "off"},
		{"relay on 0", ""},
		{"relay read 0", "on"},
		{"relay on V", ""},
		{"relay read v", "on"},
		{"relay readall", "80000001"},
		{"relay off 0", ""},
		{"relay read 0", "off"},
		{"relay on W", ""},
		{"relay frob 0", ""},
		{"ver", "00000008"},
		{"", ""},
	}
	for _, s := range steps {
		if got := b.Handle(s.cmd); got != s.want {
			t.Errorf("Handle(%q) = %q, want %q", s.cmd, got, s.want)
		}
	}
	if !b.Relay(31) || b.Relay(0) || b.Relay(99) {
		t.Error("relay states are wrong")
	}
	b.SetStuck(true)
	b.Handle("relay on 1")
	if b.Relay(1) {
		t.Error("a stuck board switched")
	}
}

// rw joins a scripted input and a recorded output.
type rw struct {
	io.Reader
	out bytes.Buffer
}

func (r *rw) Write(b []byte) (int, error) { return r.out.Write(b) }

func TestServeFraming(t *testing.T) {
	conn := &rw{Reader: bytes.NewBufferString("relay on 2\r\nrelay read 2\r\r")}
	b := &Board{}
	if err := b.Serve(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	want := "relay on 2\n\r>" + "relay read 2\n\ron\n\r>" + "\n\r>"
	if got := conn.out.String(); got != want {
		t.Errorf("board wrote %q, want %q", got, want)
	}
	if b.Commands() != 2 {
		t.Errorf("Commands() = %d, want 2", b.Commands())
	}
}

// FuzzServe: any byte stream from the host is answered without a panic,
// and every command gets exactly one prompt.
func FuzzServe(f *testing.F) {
	f.Add([]byte("relay on 0\rrelay read 0\r"))
	f.Add([]byte("relay readall\r\n\rver\rid get\r"))
	f.Add([]byte("relay on \xff\rrelay off\r\r\r"))
	f.Fuzz(func(t *testing.T, in []byte) {
		conn := &rw{Reader: bytes.NewReader(in)}
		b := &Board{}
		if err := b.Serve(context.Background(), conn); err != nil {
			t.Fatal(err)
		}
		out := conn.out.String()
		if out != "" && !bytes.HasSuffix([]byte(out), []byte(">")) {
			t.Fatalf("output %q does not end with a prompt", out)
		}
		// One prompt per CR-terminated command (unless a command itself
		// holds a '>', which the echo repeats).
		if !bytes.Contains(in, []byte(">")) {
			if got, want := bytes.Count([]byte(out), []byte(">")), bytes.Count(in, []byte("\r")); got != want {
				t.Fatalf("%d commands got %d prompts", want, got)
			}
		}
	})
}
