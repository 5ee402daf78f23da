package supervisor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// truncMark ends a line that was cut at maxLine bytes.
const truncMark = " …[truncated]"

// lineSplitter cuts a byte stream into lines. A line longer than max is cut
// to max bytes, marked, and the rest of it up to the next newline is
// dropped, so one endless line cannot make it buffer without bound or stop
// reading (a child blocked on a full stderr pipe would hang).
type lineSplitter struct {
	max  int
	buf  []byte
	skip bool // inside the dropped tail of an over-long line
	emit func(string)
}

func (l *lineSplitter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if !l.skip {
			room := l.max - len(l.buf)
			if len(chunk) > room {
				l.buf = append(l.buf, chunk[:room]...)
				l.emitLine(true)
				l.skip = true
			} else {
				l.buf = append(l.buf, chunk...)
			}
		}
		if i < 0 {
			break
		}
		if l.skip {
			l.skip = false
		} else {
			l.emitLine(false)
		}
		p = p[i+1:]
	}
	return n, nil
}

// Flush emits a partial last line, if any.
func (l *lineSplitter) Flush() {
	if len(l.buf) > 0 && !l.skip {
		l.emitLine(false)
	}
	l.skip = false
	l.buf = l.buf[:0]
}

func (l *lineSplitter) emitLine(truncated bool) {
	b := bytes.TrimSuffix(l.buf, []byte("\r"))
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	if truncated {
		s += truncMark
	}
	l.buf = l.buf[:0]
	l.emit(s)
}

// ring keeps the last n lines. total counts every line ever added, so a
// reader can ask for what came after the last line it saw.
type ring struct {
	lines []string
	next  int
	full  bool
	total uint64
}

func newRing(n int) *ring { return &ring{lines: make([]string, n)} }

func (r *ring) add(s string) {
	if len(r.lines) == 0 {
		return
	}
	r.total++
	r.lines[r.next] = s
	r.next++
	if r.next == len(r.lines) {
		r.next, r.full = 0, true
	}
}

// since returns the lines after the first n ever added (those still held)
// and the count to ask with next time.
func (r *ring) since(n uint64) ([]string, uint64) {
	all := r.snapshot()
	first := r.total - uint64(len(all)) // lines no longer held
	if n > r.total {
		n = r.total
	}
	if n > first {
		all = all[n-first:]
	}
	return all, r.total
}

func (r *ring) snapshot() []string {
	if !r.full {
		return append([]string(nil), r.lines[:r.next]...)
	}
	out := make([]string, 0, len(r.lines))
	out = append(out, r.lines[r.next:]...)
	return append(out, r.lines[:r.next]...)
}

// rotatingFile appends lines to path. Before a write would take the file
// past maxSize it renames path to path.1 (path.1 to path.2, and so on up to
// path.<keep>), so at most keep+1 files of about maxSize each are on disk.
type rotatingFile struct {
	path    string
	maxSize int64
	keep    int
	f       *os.File
	size    int64
}

func openRotating(path string, maxSize int64, keep int) (*rotatingFile, error) {
	r := &rotatingFile{path: path, maxSize: maxSize, keep: keep}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *rotatingFile) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening log file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("opening log file: %w", err)
	}
	r.f, r.size = f, st.Size()
	return nil
}

func (r *rotatingFile) rotate() error {
	if err := r.f.Close(); err != nil {
		return fmt.Errorf("rotating log file: %w", err)
	}
	r.f = nil
	if r.keep == 0 {
		if err := os.Remove(r.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotating log file: %w", err)
		}
	}
	for i := r.keep; i >= 1; i-- {
		from := r.path
		if i > 1 {
			from = fmt.Sprintf("%s.%d", r.path, i-1)
		}
		err := os.Rename(from, fmt.Sprintf("%s.%d", r.path, i))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotating log file: %w", err)
		}
	}
	return r.open()
}

func (r *rotatingFile) writeLine(s string) error {
	if r.f == nil {
		// A failed rotation left no file open: try again.
		if err := r.open(); err != nil {
			return err
		}
	}
	n := int64(len(s) + 1)
	if r.size > 0 && r.size+n > r.maxSize {
		if err := r.rotate(); err != nil {
			return err
		}
	}
	w, err := io.WriteString(r.f, s+"\n")
	r.size += int64(w)
	if err != nil {
		return fmt.Errorf("writing log file: %w", err)
	}
	return nil
}

func (r *rotatingFile) Close() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// consoleQueue is how many lines may wait for a slow console before new
// ones are dropped.
const consoleQueue = 1024

// console writes lines to a terminal from its own goroutine. A terminal can
// block (a serial console under XOFF, a stopped pager): that must not block
// the child writing its stderr, nor the supervisor, or a blocked terminal
// would end in a watchdog reset. Lines that do not fit the queue are
// dropped and counted; the count is written when the console drains.
type console struct {
	c       chan string
	done    chan struct{}
	mu      sync.Mutex
	dropped int
}

func newConsole(w io.Writer) *console {
	c := &console{c: make(chan string, consoleQueue), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for l := range c.c {
			_, _ = io.WriteString(w, l+"\n")
			if len(c.c) > 0 {
				continue
			}
			// The queue ran dry: the lines dropped, if any, were
			// after the one just written.
			c.mu.Lock()
			n := c.dropped
			c.dropped = 0
			c.mu.Unlock()
			if n > 0 {
				fmt.Fprintf(w, "supervisor: %d log lines not shown (console too slow)\n", n)
			}
		}
	}()
	return c
}

func (c *console) line(l string) {
	select {
	case c.c <- l:
	default:
		c.mu.Lock()
		c.dropped++
		c.mu.Unlock()
	}
}

// close stops taking lines and waits up to wait for the queue to drain.
func (c *console) close(wait time.Duration) {
	close(c.c)
	select {
	case <-c.done:
	case <-time.After(wait):
	}
}

// sink receives every log line of the child and of the supervisor itself
// and sends it to the ring, the log file and the console.
type sink struct {
	mu       sync.Mutex
	ring     *ring
	file     *rotatingFile // nil: no log file
	console  *console      // nil: none
	reported bool          // a file error was reported
}

func (s *sink) line(l string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ring.add(l)
	if s.console != nil {
		s.console.line(l)
	}
	if s.file != nil {
		if err := s.file.writeLine(l); err != nil {
			// Losing the file must not lose the console or the ring;
			// say so once on the console.
			if !s.reported && s.console != nil {
				s.reported = true
				s.console.line(fmt.Sprintf("supervisor: log file: %v", err))
			}
		} else {
			s.reported = false
		}
	}
}

func (s *sink) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ring.snapshot()
}

func (s *sink) since(n uint64) ([]string, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ring.since(n)
}

// writer returns an io.Writer that splits what it is given into lines for
// the sink, and a flush for the last partial line. It is not safe for
// concurrent use: give each stream its own.
func (s *sink) writer(maxLine int) *lineSplitter {
	return &lineSplitter{max: maxLine, emit: s.line}
}

// lockedWriter serialises writes to a lineSplitter shared by goroutines
// (the supervisor's own logger).
type lockedWriter struct {
	mu sync.Mutex
	w  *lineSplitter
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
