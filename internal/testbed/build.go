package testbed

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildTwinpbx builds the twinpbx command into a new temporary folder
// named after prefix, for a test binary's TestMain. It returns the
// binary's path and a function that removes the folder (call it even on
// error); the error carries go build's output.
func BuildTwinpbx(prefix string) (path string, remove func(), err error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", func() {}, fmt.Errorf("making a folder for the twinpbx binary: %w", err)
	}
	remove = func() { os.RemoveAll(dir) }
	path = filepath.Join(dir, "twinpbx")
	out, err := exec.Command("go", "build", "-o", path, "github.com/twinpbx/twinpbx/firmware/twinpbx").CombinedOutput()
	if err != nil {
		return path, remove, fmt.Errorf("building twinpbx: %w\n%s", err, out)
	}
	return path, remove, nil
}
