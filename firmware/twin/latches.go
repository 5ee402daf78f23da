package twin

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/twinpbx/twinpbx/firmware/cluster"
)

// LatchFile, in the data folder, names the monitors (the PSTN line) this
// box carries a shared fault for, one per line: it handed service over
// because of them or latched on them, and tells its twin so for the
// hold-down, also after a restart (cluster.LatchStore). Like the
// maintenance mark, it is this box's own state and does not replicate.
const LatchFile = "shared-faults"

// latches is the LatchStore of a box with data folder dir; none without
// one (the names are then kept in memory only).
func latches(dir string) cluster.LatchStore {
	if dir == "" {
		return nil
	}
	return latchFile{dir}
}

// latchFile keeps the names in dir's LatchFile.
type latchFile struct{ dir string }

var _ cluster.LatchStore = latchFile{}

func (l latchFile) Latched() ([]string, error) {
	b, err := os.ReadFile(filepath.Join(l.dir, LatchFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", LatchFile, err)
	}
	var names []string
	for line := range strings.Lines(string(b)) {
		if name := strings.TrimSpace(line); name != "" {
			names = append(names, name)
		}
	}
	return names, nil
}

func (l latchFile) SetLatched(names []string) error {
	path := filepath.Join(l.dir, LatchFile)
	if len(names) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing %s: %w", LatchFile, err)
		}
		return syncDir(l.dir)
	}
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n + "\n")
	}
	if err := writeDurably(path, []byte(b.String())); err != nil {
		return fmt.Errorf("writing %s: %w", LatchFile, err)
	}
	return nil
}
