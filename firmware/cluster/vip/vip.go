// Package vip holds the twin pair's virtual IP: it adds the address to the
// LAN interface with netlink (under its label), tells the LAN with
// gratuitous ARP (IPv4) or unsolicited neighbour advertisements (IPv6)
// that the address moved to this box, refreshes that announcement for a
// while, removes the address again, and finds another box still
// answering for it.
//
// Every call works in the network namespace of the calling thread at the
// time of the call; the refresh goroutine keeps the sockets Acquire
// opened.
package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/twinpbx/twinpbx/internal/announce"
)

// Defaults for the zero values of Config (docs/CLUSTER.md: 3 at once,
// then one every 200 ms for 2 s).
const (
	DefaultGARPCount    = 3
	DefaultGARPInterval = 200 * time.Millisecond
	DefaultGARPRefresh  = 2 * time.Second
)

// maxLabel is the longest address label Linux takes (IFNAMSIZ-1).
const maxLabel = 15

// ErrAnnounce marks an Acquire whose address was added but whose first
// announcement could not be sent: the VIP is held, the LAN may not know.
var ErrAnnounce = errors.New("announcing the VIP")

// Config describes a VIP.
type Config struct {
	// Interface is the LAN interface that carries the VIP, e.g. "eth0".
	Interface string
	// Addr is the VIP with the LAN's prefix length, e.g. 192.168.1.10/24.
	Addr netip.Prefix
	// Label is the IPv4 address label (at most 15 characters, starting
	// with the interface name, as Linux requires); default
	// "<iface>:vip", shortened to fit. IPv6 addresses have no label.
	Label string
	// GARPCount announcements go out back to back at Acquire (default 3;
	// each is a request-style and a reply-style gratuitous ARP, or one
	// unsolicited NA); then one every GARPInterval (default 200 ms) until
	// GARPRefresh (default 2 s; negative: none) has passed.
	GARPCount    int
	GARPInterval time.Duration
	GARPRefresh  time.Duration
	// Logger receives announcements and failures; default slog.Default().
	Logger *slog.Logger
}

// DefaultLabel is the label a VIP on iface gets by default.
func DefaultLabel(iface string) string {
	for _, suffix := range []string{":vip", ":v"} {
		if len(iface)+len(suffix) <= maxLabel {
			return iface + suffix
		}
	}
	return iface
}

// VIP is one virtual address on one interface. Its methods are safe for
// concurrent use.
type VIP struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	cancel  context.CancelFunc // stops the refresh
	done    chan struct{}      // closed when the refresh has stopped
	running bool
}

// New checks cfg and fills in its defaults. It touches no interface.
func New(cfg Config) (*VIP, error) {
	if cfg.Interface == "" || len(cfg.Interface) > maxLabel {
		return nil, fmt.Errorf("VIP interface %q: want a name of 1 to %d characters", cfg.Interface, maxLabel)
	}
	if !cfg.Addr.IsValid() {
		return nil, errors.New("VIP address: missing")
	}
	cfg.Addr = netip.PrefixFrom(cfg.Addr.Addr().Unmap(), cfg.Addr.Bits())
	if a := cfg.Addr.Addr(); a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
		return nil, fmt.Errorf("VIP address %s: want a unicast address", cfg.Addr)
	}
	if cfg.Addr.Addr().Is4() {
		if cfg.Label == "" {
			cfg.Label = DefaultLabel(cfg.Interface)
		}
		if len(cfg.Label) > maxLabel || len(cfg.Label) < len(cfg.Interface) || cfg.Label[:len(cfg.Interface)] != cfg.Interface {
			return nil, fmt.Errorf("VIP label %q: want at most %d characters starting with %q", cfg.Label, maxLabel, cfg.Interface)
		}
	} else {
		cfg.Label = ""
	}
	if cfg.GARPCount < 0 {
		return nil, fmt.Errorf("GARP count %d: want 0 or more", cfg.GARPCount)
	}
	if cfg.GARPCount == 0 {
		cfg.GARPCount = DefaultGARPCount
	}
	if cfg.GARPInterval < 0 {
		return nil, fmt.Errorf("GARP interval %v: want a positive duration", cfg.GARPInterval)
	}
	if cfg.GARPInterval == 0 {
		cfg.GARPInterval = DefaultGARPInterval
	}
	if cfg.GARPRefresh == 0 {
		cfg.GARPRefresh = DefaultGARPRefresh
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &VIP{cfg: cfg, log: cfg.Logger.With("vip", cfg.Addr.String(), "iface", cfg.Interface)}, nil
}

// Config returns the VIP's configuration with its defaults filled in.
func (v *VIP) Config() Config { return v.cfg }

// Acquire adds the VIP to the interface (again, if it is there already),
// sends GARPCount announcements at once and keeps announcing every
// GARPInterval for GARPRefresh in a goroutine that ends with ctx or
// Release. An error wrapping ErrAnnounce means the address was added but
// the first announcement failed; the refresh still runs.
func (v *VIP) Acquire(ctx context.Context) error {
	v.stopRefresh()
	link, err := netlink.LinkByName(v.cfg.Interface)
	if err != nil {
		return fmt.Errorf("acquiring VIP %s: finding interface %s: %w", v.cfg.Addr, v.cfg.Interface, err)
	}
	addr := &netlink.Addr{IPNet: ipNet(v.cfg.Addr), Label: v.cfg.Label}
	if v.cfg.Addr.Addr().Is6() {
		// Usable at once: duplicate address detection would hold it
		// tentative for a second, and the twin has dropped it already.
		addr.Flags = unix.IFA_F_NODAD
	}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("adding VIP %s to %s: %w", v.cfg.Addr, v.cfg.Interface, err)
	}
	v.log.Info("VIP added", "label", v.cfg.Label)

	an, err := announce.New(v.cfg.Interface, v.cfg.Addr.Addr())
	if err != nil {
		return fmt.Errorf("%w %s on %s: %w", ErrAnnounce, v.cfg.Addr, v.cfg.Interface, err)
	}
	var burstErr error
	for range v.cfg.GARPCount {
		if err := an.Announce(); err != nil {
			burstErr = err
		}
	}
	if burstErr != nil {
		v.log.Warn("announcing the VIP", "err", burstErr)
	}
	v.startRefresh(ctx, an)
	if burstErr != nil {
		return fmt.Errorf("%w %s on %s: %w", ErrAnnounce, v.cfg.Addr, v.cfg.Interface, burstErr)
	}
	return nil
}

func (v *VIP) startRefresh(ctx context.Context, an announce.Announcer) {
	if v.cfg.GARPRefresh < 0 {
		// Closing a packet socket waits for an RCU grace period (about
		// 10 ms here): keep that off the takeover path.
		go an.Close()
		return
	}
	ctx, cancel := context.WithTimeout(ctx, v.cfg.GARPRefresh)
	done := make(chan struct{})
	v.mu.Lock()
	v.cancel, v.done, v.running = cancel, done, true
	v.mu.Unlock()
	go func() {
		// Release waits for done, not for the slow socket close.
		defer an.Close()
		defer close(done)
		defer cancel()
		tick := time.NewTicker(v.cfg.GARPInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if err := an.Announce(); err != nil {
					v.log.Warn("refreshing the VIP's announcement", "err", err)
				}
			}
		}
	}()
}

// stopRefresh stops a running refresh and waits for it.
func (v *VIP) stopRefresh() {
	v.mu.Lock()
	cancel, done, running := v.cancel, v.done, v.running
	v.running = false
	v.mu.Unlock()
	if running {
		cancel()
		<-done
	}
}

// Announce sends GARPCount announcements now, for re-announcing while
// Conflict finds another box answering for the VIP.
func (v *VIP) Announce() error {
	an, err := announce.New(v.cfg.Interface, v.cfg.Addr.Addr())
	if err != nil {
		return fmt.Errorf("%w %s on %s: %w", ErrAnnounce, v.cfg.Addr, v.cfg.Interface, err)
	}
	defer func() { go an.Close() }()
	for range v.cfg.GARPCount {
		if err := an.Announce(); err != nil {
			return fmt.Errorf("%w %s on %s: %w", ErrAnnounce, v.cfg.Addr, v.cfg.Interface, err)
		}
	}
	return nil
}

// Release stops the refresh and removes the VIP from the interface,
// whatever its label. Releasing a VIP that is not held is not an error.
func (v *VIP) Release() error {
	v.stopRefresh()
	removed, err := RemoveStale(v.cfg.Interface, v.cfg.Addr)
	if err != nil {
		return fmt.Errorf("releasing VIP: %w", err)
	}
	if removed {
		v.log.Info("VIP removed")
	}
	return nil
}

// Held reports whether the VIP's address is on the interface.
func (v *VIP) Held() (bool, error) {
	addrs, _, err := find(v.cfg.Interface, v.cfg.Addr.Addr())
	if err != nil {
		return false, fmt.Errorf("checking VIP %s: %w", v.cfg.Addr, err)
	}
	return len(addrs) > 0, nil
}

// RemoveStale removes the address of prefix from iface if it is there,
// under any label and prefix length (a VIP left by a previous life of
// this box), and says whether it was there.
func RemoveStale(iface string, prefix netip.Prefix) (bool, error) {
	addrs, link, err := find(iface, prefix.Addr())
	if err != nil {
		return false, fmt.Errorf("removing VIP %s: %w", prefix, err)
	}
	for _, a := range addrs {
		// The listed address carries its label: Linux deletes an IPv4
		// address only when the label matches too.
		if err := netlink.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return false, fmt.Errorf("removing VIP %s from %s: %w", a.IPNet, iface, err)
		}
	}
	return len(addrs) > 0, nil
}

// find lists iface's addresses equal to ip.
func find(iface string, ip netip.Addr) ([]netlink.Addr, netlink.Link, error) {
	link, err := netlink.LinkByName(iface)
	if err != nil {
		return nil, nil, fmt.Errorf("finding interface %s: %w", iface, err)
	}
	family := netlink.FAMILY_V4
	if ip.Unmap().Is6() {
		family = netlink.FAMILY_V6
	}
	all, err := netlink.AddrList(link, family)
	if err != nil {
		return nil, nil, fmt.Errorf("listing the addresses of %s: %w", iface, err)
	}
	var out []netlink.Addr
	for _, a := range all {
		if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == ip.Unmap() {
			out = append(out, a)
		}
	}
	return out, link, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}
