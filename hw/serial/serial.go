// Package serial opens the box's serial ports (the relay board, the ISDN
// card) with go.bug.st/serial and adds what their protocols need: reads with
// a timeout, and reading up to a delimiter or a line with whatever arrives
// after it kept for the next read.
//
// It uses no modem-status lines (CTS, DSR, DCD): they are absent on USB
// CDC-ACM relay boards and on pseudo-terminals, which the tests run on.
package serial

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	bugserial "go.bug.st/serial"
)

// ErrTimeout is returned when a read ends because its time ran out.
var ErrTimeout = errors.New("serial read timed out")

// ErrTooLong is returned when no delimiter came within MaxFrame bytes.
var ErrTooLong = errors.New("serial frame too long")

// MaxFrame bounds what ReadUntil buffers while looking for a delimiter.
const MaxFrame = 64 << 10

// Config is how to open a port.
type Config struct {
	// Device is the port's path, such as /dev/ttyS1 or /dev/ttyACM0.
	Device string `yaml:"device"`
	// Baud is the line speed; zero is 9600.
	Baud int `yaml:"baud,omitempty"`
	// DataBits is 5 to 8; zero is 8.
	DataBits int `yaml:"data_bits,omitempty"`
	// Parity is none (or empty), even, odd, mark or space.
	Parity string `yaml:"parity,omitempty"`
	// StopBits is "1" (or empty), "1.5" or "2".
	StopBits string `yaml:"stop_bits,omitempty"`
}

// Validate checks the settings without opening anything.
func (c Config) Validate() error {
	_, err := c.mode()
	return err
}

func (c Config) mode() (*bugserial.Mode, error) {
	if c.Device == "" {
		return nil, errors.New("serial port: no device")
	}
	m := &bugserial.Mode{BaudRate: c.Baud, DataBits: c.DataBits}
	if m.BaudRate == 0 {
		m.BaudRate = 9600
	}
	if m.BaudRate < 0 {
		return nil, fmt.Errorf("serial port %s: baud rate %d is negative", c.Device, c.Baud)
	}
	if m.DataBits == 0 {
		m.DataBits = 8
	}
	if m.DataBits < 5 || m.DataBits > 8 {
		return nil, fmt.Errorf("serial port %s: %d data bits, want 5 to 8", c.Device, c.DataBits)
	}
	switch strings.ToLower(c.Parity) {
	case "", "none", "n":
		m.Parity = bugserial.NoParity
	case "even", "e":
		m.Parity = bugserial.EvenParity
	case "odd", "o":
		m.Parity = bugserial.OddParity
	case "mark", "m":
		m.Parity = bugserial.MarkParity
	case "space", "s":
		m.Parity = bugserial.SpaceParity
	default:
		return nil, fmt.Errorf("serial port %s: unknown parity %q", c.Device, c.Parity)
	}
	switch c.StopBits {
	case "", "1":
		m.StopBits = bugserial.OneStopBit
	case "1.5":
		m.StopBits = bugserial.OnePointFiveStopBits
	case "2":
		m.StopBits = bugserial.TwoStopBits
	default:
		return nil, fmt.Errorf("serial port %s: unknown stop bits %q", c.Device, c.StopBits)
	}
	return m, nil
}

// Port is an open serial port. Reads are meant for one goroutine at a
// time; Write and Close may be called from another.
type Port struct {
	port bugserial.Port
	name string

	mu      sync.Mutex // guards pending
	pending []byte     // bytes read past the last delimiter
}

// Open opens and configures the port.
func Open(c Config) (*Port, error) {
	m, err := c.mode()
	if err != nil {
		return nil, err
	}
	p, err := bugserial.Open(c.Device, m)
	if err != nil {
		return nil, fmt.Errorf("opening serial port %s: %w", c.Device, err)
	}
	return &Port{port: p, name: c.Device}, nil
}

// Name is the device path.
func (p *Port) Name() string { return p.name }

// Write sends b.
func (p *Port) Write(b []byte) (int, error) {
	n, err := p.port.Write(b)
	if err != nil {
		return n, fmt.Errorf("writing to %s: %w", p.name, err)
	}
	return n, nil
}

// Read reads what is buffered or, failing that, waits for input without a
// time limit (see ReadTimeout).
func (p *Port) Read(b []byte) (int, error) {
	return p.ReadTimeout(b, bugserial.NoTimeout)
}

// ReadTimeout reads at least one byte, waiting at most d (a negative d
// waits for ever). It returns ErrTimeout when nothing came.
func (p *Port) ReadTimeout(b []byte, d time.Duration) (int, error) {
	p.mu.Lock()
	if len(p.pending) > 0 {
		n := copy(b, p.pending)
		p.pending = p.pending[n:]
		p.mu.Unlock()
		return n, nil
	}
	p.mu.Unlock()
	return p.readPort(b, d)
}

func (p *Port) readPort(b []byte, d time.Duration) (int, error) {
	if d >= 0 && d < time.Millisecond {
		d = time.Millisecond // zero would mean "do not wait" in select
	}
	if err := p.port.SetReadTimeout(d); err != nil {
		return 0, fmt.Errorf("setting read timeout on %s: %w", p.name, err)
	}
	n, err := p.port.Read(b)
	if err != nil {
		return n, fmt.Errorf("reading from %s: %w", p.name, err)
	}
	if n == 0 {
		return 0, ErrTimeout
	}
	return n, nil
}

// ReadUntil reads until delim has been received, waiting at most timeout in
// all, and returns everything up to and including delim. Bytes after delim
// are kept for the next read. On a timeout it returns what came so far
// with ErrTimeout, and keeps nothing.
func (p *Port) ReadUntil(delim []byte, timeout time.Duration) ([]byte, error) {
	if len(delim) == 0 {
		return nil, errors.New("reading until an empty delimiter")
	}
	deadline := time.Now().Add(timeout)
	p.mu.Lock()
	buf := p.pending
	p.pending = nil
	p.mu.Unlock()
	chunk := make([]byte, 512)
	for {
		if i := bytes.Index(buf, delim); i >= 0 {
			end := i + len(delim)
			p.mu.Lock()
			p.pending = append([]byte(nil), buf[end:]...)
			p.mu.Unlock()
			return buf[:end], nil
		}
		if len(buf) > MaxFrame {
			return nil, fmt.Errorf("reading from %s: no %q in %d bytes: %w", p.name, delim, len(buf), ErrTooLong)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return buf, ErrTimeout
		}
		n, err := p.readPort(chunk, left)
		buf = append(buf, chunk[:n]...)
		if err != nil && !errors.Is(err, ErrTimeout) {
			return buf, err
		}
	}
}

// ReadLine reads one line ending in LF and returns it without the CR LF.
func (p *Port) ReadLine(timeout time.Duration) (string, error) {
	b, err := p.ReadUntil([]byte{'\n'}, timeout)
	if err != nil {
		return string(b), err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// Discard drops buffered input, ours and the driver's: call it before a
// command whose answer must not be confused with stale bytes.
func (p *Port) Discard() error {
	p.mu.Lock()
	p.pending = nil
	p.mu.Unlock()
	if err := p.port.ResetInputBuffer(); err != nil {
		return fmt.Errorf("discarding input on %s: %w", p.name, err)
	}
	return nil
}

// Close closes the port; a read blocked on it returns.
func (p *Port) Close() error {
	if err := p.port.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", p.name, err)
	}
	return nil
}
