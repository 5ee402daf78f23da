package supervisor

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/internal/syncbuf"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func split(max int, chunks ...string) []string {
	var got []string
	l := &lineSplitter{max: max, emit: func(s string) { got = append(got, s) }}
	for _, c := range chunks {
		_, _ = l.Write([]byte(c))
	}
	l.Flush()
	return got
}

func TestLineSplitter(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		chunks []string
		want   []string
	}{
		{"one line", 10, []string{"abc\n"}, []string{"abc"}},
		{"across writes", 10, []string{"ab", "c\nde", "f\n"}, []string{"abc", "def"}},
		{"partial last line flushed", 10, []string{"abc\nxy"}, []string{"abc", "xy"}},
		{"empty lines kept", 10, []string{"\n\n"}, []string{"", ""}},
		{"CRLF", 10, []string{"abc\r\n"}, []string{"abc"}},
		{"long line cut, tail dropped", 4, []string{"abcdefgh\nok\n"}, []string{"abcd" + truncMark, "ok"}},
		{"long line across writes", 4, []string{"abc", "defg", "hij\nok\n"}, []string{"abcd" + truncMark, "ok"}},
		{"exactly max", 4, []string{"abcd\n"}, []string{"abcd"}},
		{"invalid UTF-8 replaced", 10, []string{"a\xffb\n"}, []string{"a\uFFFDb"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := split(tt.max, tt.chunks...); !slices.Equal(got, tt.want) {
				t.Errorf("lines = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRing(t *testing.T) {
	tests := []struct {
		size int
		add  []string
		want []string
	}{
		{3, nil, []string{}},
		{3, []string{"a", "b"}, []string{"a", "b"}},
		{3, []string{"a", "b", "c"}, []string{"a", "b", "c"}},
		{3, []string{"a", "b", "c", "d", "e"}, []string{"c", "d", "e"}},
		{0, []string{"a"}, []string{}},
	}
	for _, tt := range tests {
		r := newRing(tt.size)
		for _, s := range tt.add {
			r.add(s)
		}
		if got := r.snapshot(); !slices.Equal(got, tt.want) {
			t.Errorf("ring(%d) after %q = %q, want %q", tt.size, tt.add, got, tt.want)
		}
	}
}

func TestRotatingFile(t *testing.T) {
	tests := []struct {
		name      string
		keep      int
		lines     int
		wantFiles []string
	}{
		{"fits", 1, 5, []string{"log"}},
		{"one rotation", 1, 15, []string{"log", "log.1"}},
		{"oldest dropped", 1, 40, []string{"log", "log.1"}},
		{"three kept", 3, 40, []string{"log", "log.1", "log.2", "log.3"}},
		{"none kept", 0, 40, []string{"log"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "log")
			// 10 bytes a line, 100 bytes a file: ten lines each.
			r, err := openRotating(path, 100, tt.keep)
			if err != nil {
				t.Fatal(err)
			}
			for i := range tt.lines {
				if err := r.writeLine(strings.Repeat(string(rune('a'+i%26)), 9)); err != nil {
					t.Fatal(err)
				}
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			ents, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
				fi, _ := e.Info()
				if fi.Size() > 100 {
					t.Errorf("%s is %d bytes, over 100", e.Name(), fi.Size())
				}
			}
			if !slices.Equal(names, tt.wantFiles) {
				t.Errorf("files = %q, want %q", names, tt.wantFiles)
			}
			// The newest line is last in the current file.
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			last := strings.Repeat(string(rune('a'+(tt.lines-1)%26)), 9) + "\n"
			if !strings.HasSuffix(string(b), last) {
				t.Errorf("current file ends %q, want %q", b, last)
			}
		})
	}
}

func TestRotatingFileAppendsAcrossOpens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	for _, s := range []string{"first", "second"} {
		r, err := openRotating(path, 1000, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.writeLine(s); err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "first\nsecond\n" {
		t.Errorf("file = %q, want both lines", b)
	}
}

func TestSinkKeepsConsoleWhenFileFails(t *testing.T) {
	dir := t.TempDir()
	f, err := openRotating(filepath.Join(dir, "log"), 10, 1)
	if err != nil {
		t.Fatal(err)
	}
	var out syncbuf.Buffer
	c := newConsole(&out)
	s := &sink{ring: newRing(4), file: f, console: c}
	// Rotation fails once the folder is gone.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	s.line("0123456789")
	s.line("after")
	s.line("again")
	c.close(10 * time.Second)
	_ = f.Close()
	if got := s.lines(); !slices.Equal(got, []string{"0123456789", "after", "again"}) {
		t.Errorf("ring = %q", got)
	}
	if got := out.String(); !strings.Contains(got, "again\n") || strings.Count(got, "supervisor: log file:") != 1 {
		t.Errorf("console = %q, want the lines and one note about the file", got)
	}
}

// blockingWriter blocks every Write until release is closed.
type blockingWriter struct {
	release chan struct{}
	syncbuf.Buffer
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	<-b.release
	return b.Buffer.Write(p)
}

func TestSinkDoesNotWaitForABlockedConsole(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{})}
	c := newConsole(w)
	s := &sink{ring: newRing(3 * consoleQueue), console: c}
	const n = 2 * consoleQueue
	for i := range n {
		s.line(fmt.Sprint(i)) // would hang here if the console blocked the sink
	}
	if got := len(s.lines()); got != n {
		t.Errorf("ring holds %d lines, want all %d", got, n)
	}
	close(w.release)
	c.close(10 * time.Second)
	out := w.String()
	if !strings.Contains(out, "log lines not shown") {
		t.Errorf("console does not say lines were dropped: %.200q", out)
	}
	if !strings.HasPrefix(out, "0\n1\n") || strings.Index(out, "not shown") < strings.Index(out, "\n1023\n") {
		t.Errorf("console lost the first lines or noted the drop before them: %.200q", out)
	}
}

func TestRingSince(t *testing.T) {
	r := newRing(3)
	for _, s := range []string{"a", "b", "c", "d", "e"} {
		r.add(s)
	}
	tests := []struct {
		n        uint64
		want     []string
		wantNext uint64
	}{
		{0, []string{"c", "d", "e"}, 5}, // a and b are gone
		{2, []string{"c", "d", "e"}, 5},
		{3, []string{"d", "e"}, 5},
		{5, []string{}, 5},
		{9, []string{}, 5}, // from another supervisor: nothing new
	}
	for _, tt := range tests {
		got, next := r.since(tt.n)
		if !slices.Equal(got, tt.want) || next != tt.wantNext {
			t.Errorf("since(%d) = %q, %d; want %q, %d", tt.n, got, next, tt.want, tt.wantNext)
		}
	}
}
