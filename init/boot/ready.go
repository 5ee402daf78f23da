package boot

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// Start-up order. Under QEMU's TCG (one slow vCPU) and on a small board,
// everything init starts at once shares the CPU: the console's wizard
// and dashboard, each a start of the twinpbx binary, used to slow down
// the PBX's own start by a few tenths of a second. Init now starts the
// consoles once the PBX says it listens (ListeningLine on its standard
// output, which init passes on to the console), or after ConsoleWait at
// the latest, so a PBX that never listens still leaves the operator a
// console.

// ConsoleWait is the longest init holds the consoles back for the PBX to
// listen.
const ConsoleWait = 5 * time.Second

// ListeningLine reports whether line, printed by `twinpbx run` on its
// standard output, says that its SIP service listens: firmware/appliance
// prints "SIP listening on …" (a box, standalone or twin) or "SIP
// dispatcher listening on …" (a dispatcher) once its listeners are up.
func ListeningLine(line []byte) bool {
	return bytes.HasPrefix(line, []byte("SIP listening on ")) || bytes.HasPrefix(line, []byte("SIP dispatcher listening on "))
}

// maxLine bounds what passOn holds of one line; a longer line is passed
// on in pieces and is not a ListeningLine.
const maxLine = 4096

// passOn copies r to w until r ends and closes heard at the first line
// ListeningLine accepts (heard stays open if none comes). Every byte of r
// reaches w, in order, each line as one write. It returns why r ended
// (nil at EOF) or why w refused a write; what it could not write is lost,
// as on a console that is gone.
func passOn(r io.Reader, w io.Writer, heard chan<- struct{}) error {
	br := bufio.NewReaderSize(r, maxLine)
	whole := true // the next read starts a line
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			if whole && heard != nil && ListeningLine(chunk) {
				close(heard)
				heard = nil
			}
			if _, werr := w.Write(chunk); werr != nil {
				return fmt.Errorf("passing on twinpbx's output: %w", werr)
			}
			whole = chunk[len(chunk)-1] == '\n'
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			return nil
		default:
			return fmt.Errorf("reading twinpbx's output: %w", err)
		}
	}
}

// DataFSModules are the kernel modules only the data partition's file
// system needs: ext4, and crc32c_generic, which ext4 asks for. Loading
// ext4 is the slowest step of init under TCG (about 0.3 s: its size,
// relocations and type information), so init loads these only when
// there is a data partition to mount (loadDataModules).
var DataFSModules = []string{"crc32c_generic", "ext4"}

// SplitDataModules splits the modules init loads into those it loads at
// once and DataFSModules, each list in its given order.
func SplitDataModules(mods []string) (now, data []string) {
	for _, m := range mods {
		if slices.Contains(DataFSModules, m) {
			data = append(data, m)
		} else {
			now = append(now, m)
		}
	}
	return now, data
}
