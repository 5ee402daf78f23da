package boot

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"
	_ "time/tzdata" // the image has no zoneinfo files: the console's time zone must be known anyway

	"github.com/twinpbx/twinpbx/firmware/boxconfig"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/store"
)

// Settings are what init applies to the system from the box's config
// (the wizard's answers): the LAN address or DHCP, the DNS servers, the
// clock from the time servers and the time zone of the console.
//
// They are applied at boot, before twinpbx starts, and again when the
// wizard completes. The kernel command line's address (twinpbx.ip,
// twinpbx.gw) is only the starting point: a stored config overrides it.
type Settings struct {
	// NIC is the LAN interface: a twin's cluster.lan_interface, else the
	// board's LAN NIC.
	NIC string
	// Net is the LAN's plan; Net.Set is false when the config has none.
	Net NetPlan
	// TimeZone is the console's time zone; "" keeps UTC.
	TimeZone string
	// NTP lists the time servers; empty: the clock is left alone.
	NTP []string
}

// NetPlan is the LAN setting of node.network, checked.
type NetPlan struct {
	// Set is false when the config has no node.network: the kernel
	// command line's setting stays.
	Set  bool
	DHCP bool
	// Addr, Gateway and DNS are the static setting (DHCP false).
	Addr    netip.Prefix
	Gateway netip.Addr
	DNS     []netip.Addr
}

// SettingsOf works out the settings of cfg; boardNIC is the board's LAN
// NIC, used when the config names none. A setting that cannot be read is
// an error and nothing of it is applied.
func SettingsOf(cfg *config.Config, boardNIC string) (Settings, error) {
	s := Settings{NIC: boardNIC}
	if cfg.Cluster != nil && cfg.Cluster.LANInterface != "" {
		s.NIC = cfg.Cluster.LANInterface
	}
	if co := cfg.Console; co != nil {
		s.TimeZone, s.NTP = co.TimeZone, co.NTP
	}
	if s.TimeZone != "" {
		if _, err := time.LoadLocation(s.TimeZone); err != nil {
			return Settings{}, fmt.Errorf("console.time_zone %q: %w", s.TimeZone, err)
		}
	}
	n := cfg.Node.Network
	if n == nil {
		return s, nil
	}
	s.Net.Set = true
	if n.DHCP {
		if n.Address != "" || n.Gateway != "" || len(n.DNS) > 0 {
			return Settings{}, errors.New("node.network: DHCP with a static address, gateway or DNS")
		}
		s.Net.DHCP = true
		return s, nil
	}
	p, err := netip.ParsePrefix(n.Address)
	if err != nil || !p.Addr().Is4() {
		return Settings{}, fmt.Errorf("node.network.address %q: want an IPv4 address with prefix", n.Address)
	}
	s.Net.Addr = p
	if n.Gateway != "" {
		g, err := netip.ParseAddr(n.Gateway)
		if err != nil || !g.Is4() || !p.Masked().Contains(g) || g == p.Addr() {
			return Settings{}, fmt.Errorf("node.network.gateway %q: want another IPv4 address in %s", n.Gateway, p.Masked())
		}
		s.Net.Gateway = g
	}
	for _, d := range n.DNS {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return Settings{}, fmt.Errorf("node.network.dns %q: want an address", d)
		}
		s.Net.DNS = append(s.Net.DNS, a)
	}
	return s, nil
}

// ResolvConf is /etc/resolv.conf for the DNS servers dns.
func ResolvConf(dns []netip.Addr) []byte {
	var b bytes.Buffer
	b.WriteString("# written by twinpbx init from node.network.dns\n")
	for _, a := range dns {
		fmt.Fprintf(&b, "nameserver %s\n", a)
	}
	return b.Bytes()
}

// ConsoleEnv is the environment the console programs get from s: the
// time zone the console shows its clock in.
func (s Settings) ConsoleEnv() []string {
	if s.TimeZone == "" {
		return nil
	}
	return []string{"TZ=" + s.TimeZone}
}

// storeWait bounds StoredConfig's wait for a store another process holds.
var storeWait = 5 * time.Second

// StoredConfig is the config twinpbx will run, read before it starts: a
// twin's box file, else the newest stored version. It returns nil and no
// error when there is neither.
func StoredConfig(dir string) (*config.Config, error) {
	box := filepath.Join(dir, boxconfig.FileName)
	if _, err := os.Stat(box); err == nil {
		return config.Load(box)
	}
	if _, err := os.Stat(filepath.Join(dir, store.FileName)); err != nil {
		return nil, nil
	}
	st, err := store.Open(dir, store.Options{LockTimeout: storeWait})
	if err != nil {
		return nil, fmt.Errorf("reading the stored config: %w", err)
	}
	defer st.Close()
	text, err := boxconfig.Export(st)
	if err != nil {
		return nil, fmt.Errorf("reading the stored config: %w", err)
	}
	return config.Parse("stored config", text)
}

// StoreFirstBootConfig stores text as the first config version in the
// empty data folder dir, the way `twinpbx config import` does. twinpbx
// then starts on it without being told, and a restart of twinpbx (after
// the wizard) keeps the wizard's config instead of importing this again.
func StoreFirstBootConfig(dir string, text []byte) error {
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		return fmt.Errorf("storing the first-boot config: %w", err)
	}
	defer st.Close()
	if _, err := boxconfig.Import(st, text, "first-boot config"); err != nil {
		return fmt.Errorf("storing the first-boot config: %w", err)
	}
	return nil
}
