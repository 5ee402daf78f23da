package boot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/beevik/ntp"
	"github.com/u-root/u-root/pkg/dhclient"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// netOps is what applying a static LAN setting needs of netlink; tests
// record the calls.
type netOps interface {
	LinkByName(name string) (netlink.Link, error)
	LinkSetUp(link netlink.Link) error
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	AddrReplace(link netlink.Link, addr *netlink.Addr) error
	AddrDel(link netlink.Link, addr *netlink.Addr) error
	RouteReplace(route *netlink.Route) error
}

type sysNet struct{}

func (sysNet) LinkByName(name string) (netlink.Link, error) { return netlink.LinkByName(name) }
func (sysNet) LinkSetUp(l netlink.Link) error               { return netlink.LinkSetUp(l) }
func (sysNet) AddrList(l netlink.Link, f int) ([]netlink.Addr, error) {
	return netlink.AddrList(l, f)
}
func (sysNet) AddrReplace(l netlink.Link, a *netlink.Addr) error { return netlink.AddrReplace(l, a) }
func (sysNet) AddrDel(l netlink.Link, a *netlink.Addr) error     { return netlink.AddrDel(l, a) }
func (sysNet) RouteReplace(r *netlink.Route) error               { return netlink.RouteReplace(r) }

// applyStatic gives nic the plan's address, alone among its IPv4
// addresses (an address from the kernel command line that the wizard
// changed would otherwise stay), and the default route via the gateway.
func applyStatic(nl netOps, nic string, p NetPlan) error {
	link, err := nl.LinkByName(nic)
	if err != nil {
		return fmt.Errorf("LAN interface %s: %w", nic, err)
	}
	if err := nl.LinkSetUp(link); err != nil {
		return fmt.Errorf("raising %s: %w", nic, err)
	}
	want := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr.Addr().AsSlice(), Mask: net.CIDRMask(p.Addr.Bits(), 32)}}
	if err := nl.AddrReplace(link, want); err != nil {
		return fmt.Errorf("adding %s to %s: %w", p.Addr, nic, err)
	}
	old, err := nl.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing the addresses of %s: %w", nic, err)
	}
	var errs []error
	for _, a := range old {
		if a.IPNet == nil || a.IPNet.String() == want.IPNet.String() {
			continue
		}
		if err := nl.AddrDel(link, &a); err != nil {
			errs = append(errs, fmt.Errorf("removing the old address %s from %s: %w", a.IPNet, nic, err))
		}
	}
	if p.Gateway.IsValid() {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: p.Gateway.AsSlice()}
		if err := nl.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("default route via %s: %w", p.Gateway, err))
		}
	}
	return errors.Join(errs...)
}

// applier applies Settings on the box; its seams are replaced in tests.
type applier struct {
	log       *slog.Logger
	net       netOps
	resolv    string // path of resolv.conf
	writeFile func(name string, data []byte, perm os.FileMode) error
	// dhcp configures nic from a DHCP server (address, routes,
	// resolv.conf) and returns the lease's time.
	dhcp func(ctx context.Context, nic string) (time.Duration, error)
	// query asks one time server for the clock's offset.
	query func(server string) (time.Duration, error)
	// setClock moves the system clock by offset.
	setClock func(offset time.Duration) error
}

func newApplier(log *slog.Logger) *applier {
	return &applier{
		log:       log.With("component", "settings"),
		net:       sysNet{},
		resolv:    dhclient.ResolvConfPath,
		writeFile: os.WriteFile,
		dhcp:      dhcpLease,
		query:     queryNTP,
		setClock:  stepClock,
	}
}

// network applies s's LAN plan; a config without one changes nothing.
// With DHCP it returns when the lease is to be renewed (half its time).
func (a *applier) network(ctx context.Context, s Settings) (renew time.Duration, err error) {
	switch p := s.Net; {
	case !p.Set:
		return 0, nil
	case p.DHCP:
		lease, err := a.dhcp(ctx, s.NIC)
		if err != nil {
			return dhcpRetry, fmt.Errorf("DHCP on %s: %w", s.NIC, err)
		}
		a.log.Info("LAN set by DHCP", "nic", s.NIC, "lease", lease)
		return max(lease/2, dhcpRetry), nil
	default:
		err := applyStatic(a.net, s.NIC, p)
		if len(p.DNS) > 0 {
			if werr := a.writeFile(a.resolv, ResolvConf(p.DNS), 0o644); werr != nil {
				err = errors.Join(err, fmt.Errorf("writing %s: %w", a.resolv, werr))
			}
		}
		if err == nil {
			a.log.Info("LAN set", "nic", s.NIC, "addr", p.Addr, "gateway", p.Gateway, "dns", p.DNS)
		}
		return 0, err
	}
}

// dhcpRetry is the wait before asking a DHCP server again after a
// failure, and the shortest renewal interval.
const dhcpRetry = time.Minute

// keepLease asks for the DHCP lease again after renew, and then at half
// of each new lease's time (a minute after a failure), until ctx ends.
func (a *applier) keepLease(ctx context.Context, s Settings, renew time.Duration) {
	for renew > 0 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(renew):
		}
		var err error
		if renew, err = a.network(ctx, s); err != nil {
			a.log.Error("renewing the DHCP lease", "err", err)
		}
	}
}

// clock sets the clock from the first time server that answers.
func (a *applier) clock(s Settings) error {
	if len(s.NTP) == 0 {
		return nil
	}
	var errs []error
	for _, srv := range s.NTP {
		off, err := a.query(srv)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", srv, err))
			continue
		}
		if err := a.setClock(off); err != nil {
			return fmt.Errorf("setting the clock from %s: %w", srv, err)
		}
		a.log.Info("clock set", "server", srv, "offset", off)
		return nil
	}
	return fmt.Errorf("no time server answered: %w", errors.Join(errs...))
}

// keepClock sets the clock now and then every interval until ctx ends.
func (a *applier) keepClock(ctx context.Context, s Settings, interval time.Duration) {
	for {
		if err := a.clock(s); err != nil {
			a.log.Warn("clock not set", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// dhcpLease asks for an IPv4 lease on nic with u-root's DHCP client and
// configures it (address, routes, resolv.conf), and returns the lease's
// time (an hour when the server names none).
func dhcpLease(ctx context.Context, nic string) (time.Duration, error) {
	link, err := netlink.LinkByName(nic)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var errs []error
	for r := range dhclient.SendRequests(ctx, []netlink.Link{link}, true, false, dhclient.Config{Timeout: 5 * time.Second, Retries: 3}, 10*time.Second) {
		if r.Err != nil {
			errs = append(errs, r.Err)
			continue
		}
		if err := r.Lease.Configure(); err != nil {
			return 0, err
		}
		lease := time.Hour
		if m, _ := r.Lease.Message(); m != nil {
			lease = m.IPAddressLeaseTime(lease)
		}
		return lease, nil
	}
	if len(errs) == 0 {
		return 0, errors.New("no answer")
	}
	return 0, errors.Join(errs...)
}

func queryNTP(server string) (time.Duration, error) {
	r, err := ntp.QueryWithOptions(server, ntp.QueryOptions{Timeout: 3 * time.Second})
	if err != nil {
		return 0, err
	}
	if err := r.Validate(); err != nil {
		return 0, err
	}
	return r.ClockOffset, nil
}

// stepClock moves the system clock by off at once (the box has no
// clock daemon to slew it; a step at boot is what a PBX needs for its
// CDRs and digest nonces).
func stepClock(off time.Duration) error {
	tv := unix.NsecToTimeval(time.Now().Add(off).UnixNano())
	return unix.Settimeofday(&tv)
}
