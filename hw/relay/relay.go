// Package relay drives the PSTN failover switch: a layer-1 relay that
// connects the ISDN line to one twin at a time. De-energised, the relay
// rests on side A, the preferred box; energised, it connects side B. A box
// that loses power, or a relay board that loses its USB link, thus falls
// back to A (fail-safe), and Halt returns the relay to that inert state.
//
// Drivers: GPIO (a coil line and an optional sense line wired to a second
// pole of the relay, so the true contact position can be read back),
// Numato (a USB relay board speaking ASCII over a serial port), and Shared
// (a simulated relay kept in a file that two node processes share).
package relay

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Side is the twin the line is connected to.
type Side int

// The two sides. A is the relay's rest position (coil de-energised).
const (
	A Side = iota
	B
)

func (s Side) String() string {
	switch s {
	case A:
		return "A"
	case B:
		return "B"
	}
	return fmt.Sprintf("Side(%d)", int(s))
}

// Other is the opposite side.
func (s Side) Other() Side {
	if s == A {
		return B
	}
	return A
}

// Valid reports whether s is A or B.
func (s Side) Valid() bool { return s == A || s == B }

// energised is the coil state that selects s.
func (s Side) energised() bool { return s == B }

func sideOf(energised bool) Side {
	if energised {
		return B
	}
	return A
}

// ParseSide reads "A" or "B" (any case).
func ParseSide(s string) (Side, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "A":
		return A, nil
	case "B":
		return B, nil
	}
	return 0, fmt.Errorf("relay side %q is neither A nor B", s)
}

// Relay is the failover switch.
type Relay interface {
	// Select connects the line to side and returns once the relay has
	// done so, or with an error (ErrNotFollowing when a read-back shows
	// the relay did not follow).
	Select(ctx context.Context, side Side) error
	// Position reports the side the line is connected to. sensed is true
	// when the position was read from the contacts themselves (a sense
	// line, or the shared simulated switch), false when it is only the
	// commanded coil state.
	Position(ctx context.Context) (side Side, sensed bool, err error)
	// Halt returns the relay to its inert state: coil de-energised, line
	// on side A.
	Halt() error
}

// ErrNotFollowing means the relay's read-back did not show the selected
// side within the allowed time: a stuck relay, a broken coil or sense
// wire, or a relay board that ignored the command.
var ErrNotFollowing = errors.New("relay did not follow the command")

func checkSide(side Side) error {
	if !side.Valid() {
		return fmt.Errorf("selecting relay side: invalid %v", side)
	}
	return nil
}
