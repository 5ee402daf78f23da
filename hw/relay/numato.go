package relay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Numato USB relay boards: CDC-ACM serial at 19200 baud, ASCII commands
// ending in CR. The board echoes each command and ends every answer with
// the prompt "\n\r>".
const (
	NumatoBaud    = 19200
	numatoPrompt  = ">"
	numatoMaxID   = 31
	numatoTimeout = time.Second
)

// Conn is the serial line a Numato board hangs on; *serial.Port from
// hw/serial provides it.
type Conn interface {
	Write(b []byte) (int, error)
	// ReadUntil reads up to and including delim, waiting at most timeout.
	ReadUntil(delim []byte, timeout time.Duration) ([]byte, error)
	// Discard drops stale input.
	Discard() error
}

// Numato drives one relay of a Numato USB relay board. Its read-back is the
// board's commanded coil state, not the contacts: Position reports
// sensed=false.
type Numato struct {
	conn    Conn
	id      string
	timeout time.Duration

	mu sync.Mutex
}

var _ Relay = (*Numato)(nil)

// NewNumato drives relay number n (0–31) of the board on conn. timeout
// bounds each command's answer (zero: one second).
func NewNumato(conn Conn, n int, timeout time.Duration) (*Numato, error) {
	id, err := NumatoRelayID(n)
	if err != nil {
		return nil, err
	}
	if timeout <= 0 {
		timeout = numatoTimeout
	}
	return &Numato{conn: conn, id: id, timeout: timeout}, nil
}

// NumatoRelayID is how Numato boards name relay n: 0–9, then A–V.
func NumatoRelayID(n int) (string, error) {
	switch {
	case n >= 0 && n <= 9:
		return string(rune('0' + n)), nil
	case n >= 10 && n <= numatoMaxID:
		return string(rune('A' + n - 10)), nil
	}
	return "", fmt.Errorf("numato relay number %d is outside 0-%d", n, numatoMaxID)
}

// command sends cmd and returns the board's answer without echo and prompt.
func (r *Numato) command(ctx context.Context, cmd string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("numato %q: %w", cmd, err)
	}
	timeout := r.timeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	if err := r.conn.Discard(); err != nil {
		return "", fmt.Errorf("numato %q: %w", cmd, err)
	}
	if _, err := r.conn.Write([]byte(cmd + "\r")); err != nil {
		return "", fmt.Errorf("numato %q: %w", cmd, err)
	}
	deadline := time.Now().Add(timeout)
	raw, err := r.conn.ReadUntil([]byte(numatoPrompt), timeout)
	if err == nil && strings.TrimSpace(string(raw)) == numatoPrompt {
		// A bare prompt is a stale one from before the command: the
		// answer follows.
		raw, err = r.conn.ReadUntil([]byte(numatoPrompt), time.Until(deadline))
	}
	if err != nil {
		return "", fmt.Errorf("numato %q: waiting for the prompt (got %q): %w", cmd, raw, err)
	}
	answer, err := DecodeNumatoReply(cmd, raw)
	if err != nil {
		return "", fmt.Errorf("numato %q: %w", cmd, err)
	}
	return answer, nil
}

// DecodeNumatoReply takes what a Numato board sent after cmd, up to and
// including its prompt, and returns the answer lines joined by "\n",
// without the echo of cmd, the line ends and the prompt. It tolerates a
// missing echo, CR LF in either order, stray blank lines and noise before
// the echo.
func DecodeNumatoReply(cmd string, raw []byte) (string, error) {
	s := string(raw)
	end := strings.LastIndex(s, numatoPrompt)
	if end < 0 {
		return "", errors.New("reply has no prompt")
	}
	if strings.TrimSpace(s[end+1:]) != "" {
		return "", fmt.Errorf("reply has %q after the prompt", s[end+1:])
	}
	s = s[:end]
	var lines []string
	for l := range strings.FieldsFuncSeq(s, func(r rune) bool { return r == '\r' || r == '\n' }) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	cmd = strings.TrimSpace(cmd)
	for i, l := range lines {
		// The echo may carry noise (a stale prompt, a partial line)
		// before it; everything up to it is dropped.
		if l == cmd || strings.HasSuffix(l, cmd) {
			lines = lines[i+1:]
			break
		}
	}
	return strings.Join(lines, "\n"), nil
}

// parseNumatoState reads the answer to "relay read N".
func parseNumatoState(answer string) (energised bool, err error) {
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, fmt.Errorf("relay read answered %q, want on or off", answer)
}

func (r *Numato) read(ctx context.Context) (bool, error) {
	answer, err := r.command(ctx, "relay read "+r.id)
	if err != nil {
		return false, err
	}
	return parseNumatoState(answer)
}

func (r *Numato) set(ctx context.Context, energised bool) error {
	verb := "off"
	if energised {
		verb = "on"
	}
	answer, err := r.command(ctx, "relay "+verb+" "+r.id)
	if err != nil {
		return err
	}
	if answer != "" {
		return fmt.Errorf("numato relay %s %s: unexpected answer %q", verb, r.id, answer)
	}
	return nil
}

// Select switches the relay and reads the coil state back.
func (r *Numato) Select(ctx context.Context, side Side) error {
	if err := checkSide(side); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.set(ctx, side.energised()); err != nil {
		return fmt.Errorf("selecting relay side %v: %w", side, err)
	}
	on, err := r.read(ctx)
	if err != nil {
		return fmt.Errorf("reading back relay side %v: %w", side, err)
	}
	if sideOf(on) != side {
		return fmt.Errorf("numato relay %s reads %v after selecting %v: %w", r.id, sideOf(on), side, ErrNotFollowing)
	}
	return nil
}

// Position asks the board for the coil state (sensed is false: the board
// knows its coil, not the contacts).
func (r *Numato) Position(ctx context.Context) (Side, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	on, err := r.read(ctx)
	if err != nil {
		return A, false, fmt.Errorf("reading relay position: %w", err)
	}
	return sideOf(on), false, nil
}

// Halt switches the relay off (side A).
func (r *Numato) Halt() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	if err := r.set(ctx, false); err != nil {
		return fmt.Errorf("halting relay: %w", err)
	}
	return nil
}
