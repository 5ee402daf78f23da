package boot

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/twinpbx/twinpbx/board"
	"github.com/twinpbx/twinpbx/internal/announce"
)

// setupNetwork raises loopback and the board's NICs, gives the LAN and
// crossover NICs the command line's addresses and sets the default route.
// A NIC the board names but the machine lacks is reported, not fatal.
func setupNetwork(log *slog.Logger, prof board.Profile, p Params) error {
	var errs []error
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("raising lo: %w", err))
	}
	// A NIC raised with an address announces it (gratuitous ARP), so
	// the LAN's hosts that knew it at another MAC (a box replaced, or a
	// twin that held it) send to this box at once, not after their ARP
	// entries time out.
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/all/arp_notify", []byte("1"), 0); err != nil {
		log.Warn("NICs will not announce their addresses", "err", err)
	}
	for _, n := range prof.NICs {
		var link netlink.Link
		// A driver may bind to its device in the background after it
		// loaded: give the LAN NIC a moment, the others only a look.
		wait := time.Duration(0)
		if n.Role == board.RoleLAN {
			wait = 3 * time.Second
		}
		werr := waitFor(wait, func() bool {
			link, err = netlink.LinkByName(n.Name)
			return err == nil
		})
		if werr != nil {
			log.Warn("NIC missing", "nic", n.Name, "role", n.Role, "err", err)
			continue
		}
		var addr netip.Prefix
		switch n.Role {
		case board.RoleLAN:
			addr = p.Addr
		case board.RoleCrossover:
			addr = p.CrossAddr
		}
		// The address before the link goes up: raising it then
		// announces the address (arp_notify, above).
		var addrErr error
		if addr.IsValid() {
			a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}}
			if addrErr = netlink.AddrReplace(link, a); addrErr != nil {
				errs = append(errs, fmt.Errorf("adding %s to %s: %w", addr, n.Name, addrErr))
			}
		}
		// Raised even without its address: DHCP or the wizard may give
		// it one later.
		if err := netlink.LinkSetUp(link); err != nil {
			errs = append(errs, fmt.Errorf("raising %s: %w", n.Name, err))
			continue
		}
		if addrErr != nil {
			continue
		}
		if !addr.IsValid() {
			log.Info("NIC up without an address", "nic", n.Name, "role", n.Role)
			continue
		}
		log.Info("NIC up", "nic", n.Name, "role", n.Role, "addr", addr)
		if !hasCarrier(n.Name) {
			// The kernel's announcement went out before the link was
			// there, and a NIC drops what it sends then (a physical
			// one negotiates its link for a second or more).
			announceLater(log, n.Name, addr.Addr())
		}
		if n.Role == board.RoleLAN && p.Gateway.IsValid() {
			r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: p.Gateway.AsSlice()}
			if err := netlink.RouteReplace(r); err != nil {
				errs = append(errs, fmt.Errorf("default route via %s: %w", p.Gateway, err))
				continue
			}
			log.Info("default route", "via", p.Gateway, "nic", n.Name)
		}
	}
	return errors.Join(errs...)
}

// carrierWait is how long init waits for a NIC's link to announce its
// address once it is there.
const carrierWait = 2 * time.Minute

// announceLater announces a NIC's address once its link is up, in the
// background (tests replace it: the goroutine would not run in their
// network namespace).
var announceLater = func(log *slog.Logger, nic string, ip netip.Addr) {
	go announceOnCarrier(log, nic, ip, carrierWait)
}

// hasCarrier tells whether the NIC's link is up now (IFF_LOWER_UP).
func hasCarrier(nic string) bool {
	link, err := netlink.LinkByName(nic)
	return err == nil && link.Attrs().RawFlags&unix.IFF_LOWER_UP != 0
}

// announceOnCarrier announces ip on nic (a gratuitous ARP in both
// styles) once the NIC's link comes up, within wait; a link that stays
// down is logged.
func announceOnCarrier(log *slog.Logger, nic string, ip netip.Addr, wait time.Duration) {
	if err := waitFor(wait, func() bool { return hasCarrier(nic) }); err != nil {
		log.Warn("NIC without a link: its address is not announced", "nic", nic, "waited", wait)
		return
	}
	an, err := announce.New(nic, ip)
	if err == nil {
		err = an.Announce()
		_ = an.Close()
	}
	if err != nil {
		log.Warn("announcing the NIC's address", "nic", nic, "addr", ip, "err", err)
		return
	}
	log.Info("NIC's link up: address announced", "nic", nic, "addr", ip)
}
