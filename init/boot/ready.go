package boot

import (
	"bytes"
	"slices"
	"strings"
	"time"
)

// Start-up order. Under QEMU's TCG (one slow vCPU) and on a small board,
// everything init starts at once shares the CPU: the console's wizard
// and dashboard, each a start of the twinpbx binary, used to slow down
// the PBX's own start by a few tenths of a second. Init now starts the
// consoles once the PBX listens (or after ConsoleWait at the latest, so
// a PBX that never listens still leaves the operator a console).

// ConsoleWait is the longest init holds the consoles back for the PBX to
// listen.
const ConsoleWait = 5 * time.Second

// Socket states in /proc/net/{tcp,udp}{,6}: TCP_LISTEN, and TCP_CLOSE,
// which is what an unconnected bound UDP socket shows.
const (
	stateListen = "0A"
	stateClose  = "07"
)

// Listening reports whether a /proc/net/tcp or tcp6 table (udp false) or
// a udp or udp6 table (udp true) holds a socket that waits for peers: a
// TCP socket in LISTEN, or an unconnected UDP socket bound to a port.
// At boot, before the PBX starts, nothing on the box has one. Lines it
// cannot read are skipped: the table is the kernel's, a line too short
// only means none is there.
func Listening(table []byte, udp bool) bool {
	for line := range bytes.Lines(table) {
		f := strings.Fields(string(line))
		// sl local_address rem_address st ...; the header's sl has no colon
		if len(f) < 4 || !strings.HasSuffix(f[0], ":") {
			continue
		}
		local, remote, st := f[1], f[2], f[3]
		if udp {
			if st == stateClose && portOf(local) != "0000" && portOf(remote) == "0000" {
				return true
			}
			continue
		}
		if st == stateListen {
			return true
		}
	}
	return false
}

// portOf is the hexadecimal port of an ADDR:PORT field; "" when there is
// none.
func portOf(addr string) string {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return ""
	}
	return addr[i+1:]
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
