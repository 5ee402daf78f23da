package boot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Init's side of package request: a console's SIGTERM reaches runChild's
// stop channel; after twinpbx stopped, box.shutdown takes the factory
// reset request and wipes the data folder.

// takeResetRequest reports, and removes, a factory reset request.
func takeResetRequest(path string) bool {
	return os.Remove(path) == nil
}

// WipeData removes everything in the data folder dir but the file
// system's own lost+found: the store (config, registrations, CDRs), the
// twin's box file, the node's keys, exports and logs. The folder itself
// stays (it is the mount point of the data partition).
func WipeData(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("wiping the data folder: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if e.Name() == "lost+found" {
			continue
		}
		// RemoveAll of what is already gone is no error.
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("wiping the data folder: %w", err)
	}
	return nil
}
