package twin

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// MaintenanceFile, in the data folder, marks a box in maintenance. It
// is this box's own state (it does not replicate): an administrator's
// `twinpbx maintenance on` holds across restarts and resets until
// `maintenance off`.
const MaintenanceFile = "maintenance"

// loadMaintenance reports whether dir marks the box in maintenance.
func loadMaintenance(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, MaintenanceFile))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("reading the maintenance mark: %w", err)
}

// saveMaintenance marks (or unmarks) the box in maintenance in dir,
// durably: the mark is written to a temporary file, synced and renamed,
// and the folder is synced.
func saveMaintenance(dir string, on bool) error {
	path := filepath.Join(dir, MaintenanceFile)
	if !on {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("ending maintenance: %w", err)
		}
		return syncDir(dir)
	}
	if err := writeDurably(path, fmt.Appendf(nil, "maintenance since %s\n", time.Now().UTC().Format(time.RFC3339))); err != nil {
		return fmt.Errorf("marking maintenance: %w", err)
	}
	return nil
}

// writeDurably replaces the file at path with b: written to a temporary
// file, synced and renamed, then the folder synced. A crash leaves the old
// file or the new one.
func writeDurably(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(b)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
