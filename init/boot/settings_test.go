package boot

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/boxconfig"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/store"
)

func TestSettingsOf(t *testing.T) {
	static := &config.Network{Address: "192.168.1.21/24", Gateway: "192.168.1.1", DNS: []string{"192.168.1.1", "9.9.9.9"}}
	tests := []struct {
		name    string
		cfg     config.Config
		want    Settings
		wantErr string
	}{
		{name: "nothing set", want: Settings{NIC: "eth0"}},
		{name: "static", cfg: config.Config{Node: config.Node{Network: static}, Console: &config.Console{TimeZone: "Europe/Berlin", NTP: []string{"pool.ntp.org"}}},
			want: Settings{NIC: "eth0", TimeZone: "Europe/Berlin", NTP: []string{"pool.ntp.org"}, Net: NetPlan{Set: true,
				Addr: netip.MustParsePrefix("192.168.1.21/24"), Gateway: netip.MustParseAddr("192.168.1.1"),
				DNS: []netip.Addr{netip.MustParseAddr("192.168.1.1"), netip.MustParseAddr("9.9.9.9")}}}},
		{name: "dhcp", cfg: config.Config{Node: config.Node{Network: &config.Network{DHCP: true}}},
			want: Settings{NIC: "eth0", Net: NetPlan{Set: true, DHCP: true}}},
		{name: "twin's LAN interface", cfg: config.Config{Node: config.Node{Network: &config.Network{Address: "10.0.0.2/24"}}, Cluster: &config.Cluster{LANInterface: "eth1"}},
			want: Settings{NIC: "eth1", Net: NetPlan{Set: true, Addr: netip.MustParsePrefix("10.0.0.2/24")}}},
		{name: "dhcp and static", cfg: config.Config{Node: config.Node{Network: &config.Network{DHCP: true, Address: "10.0.0.2/24"}}}, wantErr: "DHCP with a static"},
		{name: "no prefix", cfg: config.Config{Node: config.Node{Network: &config.Network{Address: "10.0.0.2"}}}, wantErr: "node.network.address"},
		{name: "IPv6", cfg: config.Config{Node: config.Node{Network: &config.Network{Address: "fd00::2/64"}}}, wantErr: "IPv4"},
		{name: "gateway outside", cfg: config.Config{Node: config.Node{Network: &config.Network{Address: "10.0.0.2/24", Gateway: "10.0.1.1"}}}, wantErr: "node.network.gateway"},
		{name: "gateway is the box", cfg: config.Config{Node: config.Node{Network: &config.Network{Address: "10.0.0.2/24", Gateway: "10.0.0.2"}}}, wantErr: "node.network.gateway"},
		{name: "DNS name", cfg: config.Config{Node: config.Node{Network: &config.Network{Address: "10.0.0.2/24", DNS: []string{"dns.example"}}}}, wantErr: "node.network.dns"},
		{name: "unknown zone", cfg: config.Config{Console: &config.Console{TimeZone: "Mars/Olympus"}}, wantErr: "console.time_zone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SettingsOf(&tt.cfg, "eth0")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("SettingsOf = %+v, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.NIC != tt.want.NIC || got.TimeZone != tt.want.TimeZone || !slices.Equal(got.NTP, tt.want.NTP) ||
				got.Net.Set != tt.want.Net.Set || got.Net.DHCP != tt.want.Net.DHCP || got.Net.Addr != tt.want.Net.Addr ||
				got.Net.Gateway != tt.want.Net.Gateway || !slices.Equal(got.Net.DNS, tt.want.Net.DNS) {
				t.Errorf("SettingsOf =\n%+v, want\n%+v", got, tt.want)
			}
		})
	}
}

func TestResolvConfAndEnv(t *testing.T) {
	got := string(ResolvConf([]netip.Addr{netip.MustParseAddr("10.0.2.3"), netip.MustParseAddr("9.9.9.9")}))
	if !strings.HasSuffix(got, "nameserver 10.0.2.3\nnameserver 9.9.9.9\n") || !strings.HasPrefix(got, "#") {
		t.Errorf("resolv.conf:\n%s", got)
	}
	if env := (Settings{TimeZone: "Europe/Berlin"}).ConsoleEnv(); !slices.Equal(env, []string{"TZ=Europe/Berlin"}) {
		t.Errorf("env %q", env)
	}
	if env := (Settings{}).ConsoleEnv(); env != nil {
		t.Errorf("env without a zone %q", env)
	}
}

func TestStoredConfig(t *testing.T) {
	dir := t.TempDir()
	if c, err := StoredConfig(dir); c != nil || err != nil {
		t.Fatalf("empty folder: %v, %v; want nothing", c, err)
	}
	text, err := FirstBootConfig(nil, netip.MustParseAddr("10.0.2.15"))
	if err != nil {
		t.Fatal(err)
	}
	if err := StoreFirstBootConfig(dir, text); err != nil {
		t.Fatal(err)
	}
	c, err := StoredConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c == nil || !slices.Contains(c.SIP.Listen, "udp:0.0.0.0:5060") || c.SIP.Advertise != "10.0.2.15" {
		t.Fatalf("stored config %+v, want the first-boot config", c)
	}
	// A twin's box file comes first: it holds the node's own section.
	box := "node:\n  name: b\n  network: {address: 10.0.0.22/24, gateway: 10.0.0.1}\n"
	if err := os.WriteFile(filepath.Join(dir, boxconfig.FileName), []byte(box), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = StoredConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := SettingsOf(c, "eth0")
	if err != nil || c.Node.Name != "b" || s.Net.Addr != netip.MustParsePrefix("10.0.0.22/24") {
		t.Fatalf("box file: %+v %+v %v", c.Node, s.Net, err)
	}
	if err := StoreFirstBootConfig(filepath.Join(dir, boxconfig.FileName), text); err == nil {
		t.Error("storing into a file instead of a folder: no error")
	}
}

func FuzzSettingsOf(f *testing.F) {
	f.Add("192.168.1.21/24", "192.168.1.1", "9.9.9.9", "Europe/Berlin", false)
	f.Add("", "", "", "", true)
	f.Add("fd00::1/64", "fd00::", "::1", "Local", false)
	f.Add("10.0.0.2/33", "10.0.0.256", "x", "../../etc/passwd", false)
	f.Fuzz(func(t *testing.T, addr, gw, dns, tz string, dhcp bool) {
		c := config.Config{
			Node:    config.Node{Network: &config.Network{DHCP: dhcp, Address: addr, Gateway: gw, DNS: []string{dns}}},
			Console: &config.Console{TimeZone: tz},
		}
		s, err := SettingsOf(&c, "eth0")
		if err != nil {
			return
		}
		if !s.Net.DHCP && (!s.Net.Addr.IsValid() || !s.Net.Addr.Addr().Is4()) {
			t.Fatalf("accepted a static setting without an IPv4 address: %+v", s.Net)
		}
		if s.Net.Gateway.IsValid() && !s.Net.Addr.Masked().Contains(s.Net.Gateway) {
			t.Fatalf("accepted a gateway outside the subnet: %+v", s.Net)
		}
		_ = ResolvConf(s.Net.DNS)
	})
}

// A store another process holds gives an error after a bounded wait, not
// a hang and not a config.
func TestStoredConfigLocked(t *testing.T) {
	dir := t.TempDir()
	text, err := FirstBootConfig(nil, netip.MustParseAddr("10.0.2.15"))
	if err != nil {
		t.Fatal(err)
	}
	if err := StoreFirstBootConfig(dir, text); err != nil {
		t.Fatal(err)
	}
	holder, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Close() })
	old := storeWait
	storeWait = 50 * time.Millisecond
	t.Cleanup(func() { storeWait = old })
	c, err := StoredConfig(dir)
	if err == nil || c != nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("StoredConfig of a held store: %v, %v; want a lock error", c, err)
	}
}
