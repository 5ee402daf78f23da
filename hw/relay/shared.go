package relay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Shared is a simulated relay that two node processes share, so that twin
// tests see one physical switch. Its coil state lives in a small file
// ("A" de-energised, "B" energised), read and written under an flock on a
// lock file beside it. A missing file is a relay that was never energised
// (side A). A process that dies leaves the coil as it was, as real hardware
// does; Halt de-energises it.
//
// Position reports sensed=true: the file is the switch itself, which both
// twins see, like a sense pole on the real relay.
type Shared struct {
	path string
}

var _ Relay = (*Shared)(nil)

// NewShared uses the state file at path; its folder must exist.
func NewShared(path string) (*Shared, error) {
	if path == "" {
		return nil, errors.New("simulated relay: no state file")
	}
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("simulated relay: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("simulated relay: %s is not a folder", dir)
	}
	s := &Shared{path: path}
	// Fail now, not at the first takeover, on a corrupt state file.
	if _, _, err := s.Position(context.Background()); err != nil {
		return nil, err
	}
	return s, nil
}

// Path is the state file.
func (s *Shared) Path() string { return s.path }

func (s *Shared) locked(how int, f func() error) error {
	lf, err := os.OpenFile(s.path+".lock", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("opening relay lock: %w", err)
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), how); err != nil {
		return fmt.Errorf("locking relay state: %w", err)
	}
	// Closing the file releases the lock, also when the process dies.
	return f()
}

func (s *Shared) read() (Side, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return A, nil
	}
	if err != nil {
		return A, fmt.Errorf("reading relay state: %w", err)
	}
	side, err := ParseSide(string(b))
	if err != nil {
		return A, fmt.Errorf("relay state file %s: %w", s.path, err)
	}
	return side, nil
}

func (s *Shared) write(side Side) error {
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".relay-*")
	if err != nil {
		return fmt.Errorf("writing relay state: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(side.String() + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// Rename is atomic: a reader sees the old or the new state,
		// and a crash mid-write leaves the old one.
		err = os.Rename(tmp.Name(), s.path)
	}
	if err != nil {
		return fmt.Errorf("writing relay state: %w", err)
	}
	return nil
}

// Select sets the shared coil state.
func (s *Shared) Select(ctx context.Context, side Side) error {
	if err := checkSide(side); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("selecting relay side %v: %w", side, err)
	}
	err := s.locked(unix.LOCK_EX, func() error { return s.write(side) })
	if err != nil {
		return fmt.Errorf("selecting relay side %v: %w", side, err)
	}
	return nil
}

// Position reads the shared state.
func (s *Shared) Position(ctx context.Context) (Side, bool, error) {
	if err := ctx.Err(); err != nil {
		return A, false, fmt.Errorf("reading relay position: %w", err)
	}
	var side Side
	err := s.locked(unix.LOCK_SH, func() error {
		var err error
		side, err = s.read()
		return err
	})
	if err != nil {
		return A, false, fmt.Errorf("reading relay position: %w", err)
	}
	return side, true, nil
}

// Halt de-energises the shared coil (side A).
func (s *Shared) Halt() error {
	if err := s.Select(context.Background(), A); err != nil {
		return fmt.Errorf("halting relay: %w", err)
	}
	return nil
}

// String names the relay for logs.
func (s *Shared) String() string {
	return "simulated relay " + s.path
}
