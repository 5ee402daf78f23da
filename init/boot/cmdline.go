// Package boot is the logic of twinpbx's PID 1 (the init command of the
// firmware image): it mounts the kernel's file systems, loads the board's
// kernel modules, mounts the data partition (or a tmpfs in its place),
// raises the network interfaces, keeps the board's watchdog for a
// standalone box and then runs `twinpbx run` for ever, rebooting the box
// when it ends. The init command itself only calls Main.
//
// Everything that can be decided without root (the kernel command line,
// the mount table, the first-boot config, the watchdog hand-over) is in
// plain functions with tests; the rest lives in _linux.go files.
package boot

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strings"
	"time"
)

// DefaultBoard is the board profile init runs when the kernel command line
// names none: the image is built for QEMU first.
const DefaultBoard = "qemu"

// Kernel command line keys init reads. Values hold no spaces.
const (
	KeyBoard   = "twinpbx.board"      // board profile name (board.Lookup)
	KeyIP      = "twinpbx.ip"         // LAN address with prefix, 10.0.2.15/24
	KeyGateway = "twinpbx.gw"         // default gateway, 10.0.2.2
	KeyXIP     = "twinpbx.xip"        // crossover address with prefix
	KeyData    = "twinpbx.data"       // block device of the data partition, /dev/vda
	KeyModules = "twinpbx.modules"    // extra kernel modules, comma separated
	KeyHang    = "twinpbx.debug.hang" // debug: stop kicking the watchdog after this long
)

// Params are the settings init takes from the kernel command line.
type Params struct {
	// Board names the board profile; DefaultBoard when not given.
	Board string
	// Addr is the LAN NIC's address; invalid when not given (the NIC is
	// raised without an address).
	Addr netip.Prefix
	// Gateway is the default route's next hop; invalid when not given.
	Gateway netip.Addr
	// CrossAddr is the crossover NIC's address; invalid when not given.
	CrossAddr netip.Prefix
	// DataDevice is the data partition's block device; empty: a tmpfs
	// (nothing survives a reboot).
	DataDevice string
	// Modules are loaded after the board's.
	Modules []string
	// Hang > 0 is a debug hook: the watchdog init keeps for a standalone
	// box is no longer kicked Hang after twinpbx starts, as if the node
	// hung, so the board resets it.
	Hang time.Duration
}

// ParseCmdline reads the twinpbx.* settings of a kernel command line
// (the contents of /proc/cmdline). A malformed value is reported and left
// at its default, so that a typo on the command line costs that one
// setting, not the boot. Other parameters are ignored.
func ParseCmdline(line string) (Params, []error) {
	p := Params{Board: DefaultBoard}
	var errs []error
	bad := func(key, val string, err error) {
		errs = append(errs, fmt.Errorf("kernel command line %s=%q: %w", key, val, err))
	}
	for _, f := range strings.Fields(line) {
		key, val, _ := strings.Cut(f, "=")
		if !strings.HasPrefix(key, "twinpbx.") {
			continue
		}
		switch key {
		case KeyBoard:
			if val == "" {
				bad(key, val, errors.New("empty board name"))
				continue
			}
			p.Board = val
		case KeyIP, KeyXIP:
			pf, err := netip.ParsePrefix(val)
			if err == nil && !pf.Addr().Is4() {
				err = errors.New("not an IPv4 address")
			}
			if err != nil {
				bad(key, val, err)
				continue
			}
			if key == KeyIP {
				p.Addr = pf
			} else {
				p.CrossAddr = pf
			}
		case KeyGateway:
			a, err := netip.ParseAddr(val)
			if err == nil && !a.Is4() {
				err = errors.New("not an IPv4 address")
			}
			if err != nil {
				bad(key, val, err)
				continue
			}
			p.Gateway = a
		case KeyData:
			if !strings.HasPrefix(val, "/dev/") || path.Clean(val) != val || strings.Contains(val, "..") {
				bad(key, val, errors.New("want a device path such as /dev/vda"))
				continue
			}
			p.DataDevice = val
		case KeyModules:
			for m := range strings.SplitSeq(val, ",") {
				if m == "" {
					continue
				}
				if strings.ContainsAny(m, "/.") {
					bad(key, val, fmt.Errorf("module %q: want a module name", m))
					continue
				}
				p.Modules = append(p.Modules, m)
			}
		case KeyHang:
			d, err := time.ParseDuration(val)
			if err == nil && d <= 0 {
				err = errors.New("want a positive duration")
			}
			if err != nil {
				bad(key, val, err)
				continue
			}
			p.Hang = d
		default:
			if isSlotKey(key) {
				continue // read by ParseSlotParams
			}
			errs = append(errs, fmt.Errorf("kernel command line: unknown setting %s (ignored)", key))
		}
	}
	if p.Gateway.IsValid() && p.Addr.IsValid() && !p.Addr.Masked().Contains(p.Gateway) {
		errs = append(errs, fmt.Errorf("kernel command line: gateway %s is outside %s (ignored)", p.Gateway, p.Addr.Masked()))
		p.Gateway = netip.Addr{}
	}
	return p, errs
}
