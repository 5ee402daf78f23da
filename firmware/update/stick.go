package update

import (
	"os"
	"path/filepath"
	"strings"
)

// Stick returns the first block device that starts with a bundle's magic
// and is not one of the box's own partitions (the slots hold bundles
// too), or "": an update stick, a bundle written raw onto a USB stick
// (or a second virtual disk).
func (d DeviceDisk) Stick() string {
	ents, err := os.ReadDir(d.SysBlock)
	if err != nil {
		return ""
	}
	for _, e := range ents {
		ue, err := os.ReadFile(filepath.Join(d.SysBlock, e.Name(), "uevent"))
		if err != nil || strings.Contains(string(ue), "\nPARTNAME=twinpbx-") {
			continue
		}
		dev := filepath.Join(d.Dev, e.Name())
		if hasBundleMagic(dev) {
			return dev
		}
	}
	return ""
}

func hasBundleMagic(dev string) bool {
	f, err := os.Open(dev)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 8)
	_, err = f.ReadAt(b, 0)
	return err == nil && IsBundle(b)
}
