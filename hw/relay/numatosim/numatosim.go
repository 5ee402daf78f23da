// Package numatosim simulates a Numato USB relay board on the far end of a
// serial line: the fake board for tests of the Numato driver, and the
// host-side board behind the QEMU machine's relay serial port (see
// cmd/numatosim).
//
// It speaks the board's ASCII protocol: commands end in CR; the board
// echoes each command, answers, and ends with the prompt "\n\r>".
// Supported: relay on|off|read N (N = 0-9, A-V), relay readall, ver, id get.
package numatosim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
)

// Relays is how many relays the simulated board has.
const Relays = 32

// Board is a simulated relay board. Its relays start off (de-energised).
type Board struct {
	mu     sync.Mutex
	relays [Relays]bool
	// commands counts the commands served, for tests.
	commands int
	// Ignore, when set, makes the board answer relay on/off commands
	// without switching, to simulate a stuck relay.
	ignore bool
}

// Relay reports whether relay n is on.
func (b *Board) Relay(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return n >= 0 && n < Relays && b.relays[n]
}

// SetStuck makes the board ignore relay on/off commands (true) or obey
// them again (false).
func (b *Board) SetStuck(stuck bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ignore = stuck
}

// Commands is how many commands the board has served.
func (b *Board) Commands() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.commands
}

func relayNumber(id string) (int, bool) {
	if len(id) != 1 {
		return 0, false
	}
	c := id[0]
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0'), true
	case c >= 'A' && c <= 'V':
		return int(c-'A') + 10, true
	case c >= 'a' && c <= 'v':
		return int(c-'a') + 10, true
	}
	return 0, false
}

// Handle runs one command line (without its CR) and returns the answer,
// empty for commands that answer nothing. Unknown commands answer nothing,
// as the board does.
func (b *Board) Handle(line string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.commands++
	f := strings.Fields(line)
	switch {
	case len(f) == 1 && f[0] == "ver":
		return "00000008"
	case len(f) == 2 && f[0] == "id" && f[1] == "get":
		return "TWINPBX0"
	case len(f) == 2 && f[0] == "relay" && f[1] == "readall":
		var v uint32
		for i, on := range b.relays {
			if on {
				v |= 1 << i
			}
		}
		return fmt.Sprintf("%08x", v)
	case len(f) == 3 && f[0] == "relay":
		n, ok := relayNumber(f[2])
		if !ok {
			return ""
		}
		switch f[1] {
		case "on", "off":
			if !b.ignore {
				b.relays[n] = f[1] == "on"
			}
		case "read":
			if b.relays[n] {
				return "on"
			}
			return "off"
		}
	}
	return ""
}

// Serve answers commands from rw until ctx ends, rw fails or rw reaches
// EOF (which ends Serve with nil). Closing rw is the caller's job; closing
// it is also how to stop a Serve blocked in a read.
func (b *Board) Serve(ctx context.Context, rw io.ReadWriter) error {
	r := bufio.NewReader(rw)
	for ctx.Err() == nil {
		line, err := r.ReadString('\r')
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading command: %w", err)
		}
		// Line ends from a terminal program may arrive as CR LF: the LF
		// then leads the next command.
		cmd := strings.Trim(line, "\r\n")
		if cmd == "" {
			if _, err := io.WriteString(rw, "\n\r>"); err != nil {
				return fmt.Errorf("writing prompt: %w", err)
			}
			continue
		}
		out := cmd + "\n\r"
		if answer := b.Handle(cmd); answer != "" {
			out += answer + "\n\r"
		}
		out += ">"
		if _, err := io.WriteString(rw, out); err != nil {
			return fmt.Errorf("writing answer: %w", err)
		}
	}
	return ctx.Err()
}
