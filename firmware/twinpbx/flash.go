package main

import (
	"fmt"
	"io"
	"log/slog"

	fwupdate "github.com/twinpbx/twinpbx/firmware/update"
)

// cmdFlash is `twinpbx flash IMAGE DEVICE`: write a disk image (make
// image's disk.img) onto a box's disk from another machine, read it back
// and compare (firmware/fwupdate.Flash).
func cmdFlash(args []string, stdout, stderr io.Writer) error {
	fs, _ := newFlags("flash")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usageError{"flash needs IMAGE and DEVICE"}
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	res, err := fwupdate.Flash(fs.Arg(0), fs.Arg(1), log)
	if err != nil {
		return fmt.Errorf("flash: %w", err)
	}
	fmt.Fprintf(stdout, "%s: %d bytes written and read back, sha256 %s\n", fs.Arg(1), res.Bytes, res.SHA256)
	return nil
}
