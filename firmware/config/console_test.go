package config

import (
	"strings"
	"testing"
)

func TestPINProblem(t *testing.T) {
	for _, tc := range []struct{ pin, want string }{
		{"", "missing"},
		{"12a456", "digits only"},
		{"12345", "at least 6 digits"},
		{"1234567890123", "at most 12 digits"},
		{"000000", "too easy to guess"},
		{"123456", "too easy to guess"},
		{"654321", "too easy to guess"},
		{"121212", "too easy to guess"},
		{"123123", "too easy to guess"},
		{"480613", ""},
		{"90817263", ""},
	} {
		if got := PINProblem(tc.pin); got != tc.want {
			t.Errorf("PINProblem(%q) = %q, want %q", tc.pin, got, tc.want)
		}
	}
}

func TestHashPIN(t *testing.T) {
	h, err := HashPIN("480613", nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(h, "480613") || !strings.HasPrefix(h, "pbkdf2-sha256$") {
		t.Fatalf("hash %q", h)
	}
	if !CheckPIN(h, "480613") {
		t.Error("the right PIN is refused")
	}
	for _, wrong := range []string{"480614", "", "4806130"} {
		if CheckPIN(h, wrong) {
			t.Errorf("PIN %q accepted", wrong)
		}
	}
	h2, _ := HashPIN("480613", nil)
	if h2 == h {
		t.Error("two hashes of one PIN are equal: no salt")
	}
	if CheckPIN("garbage", "480613") {
		t.Error("a malformed hash matched")
	}
}

func TestValidateConsole(t *testing.T) {
	pin, err := HashPIN("480613", nil)
	if err != nil {
		t.Fatal(err)
	}
	base := func() *Config {
		c := Starter(nil)
		c.Console = &Console{Language: "de", AdminPIN: pin, TimeZone: "Europe/Berlin", NTP: []string{"pool.ntp.org"},
			Emergency: []string{"110", "112"}, Trunk: &Trunk{Type: TrunkPRI, DDI: "200-299"}}
		c.Node.Network = &Network{Address: "192.168.1.21/24", Gateway: "192.168.1.1", DNS: []string{"192.168.1.1"}}
		return c
	}
	if err := base().Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"language", func(c *Config) { c.Console.Language = "fr" }, `console.language: "fr": want en or de`},
		{"plain pin", func(c *Config) { c.Console.AdminPIN = "480613" }, "console.admin_pin: not a pbkdf2-sha256"},
		{"zone", func(c *Config) { c.Console.TimeZone = "Mars/Olympus" }, "console.time_zone"},
		{"ntp", func(c *Config) { c.Console.NTP = []string{"bad host"} }, "console.ntp[0]"},
		{"emergency digits", func(c *Config) { c.Console.Emergency = []string{"11a"} }, `console.emergency[0]: "11a" is not a number`},
		{"emergency twice", func(c *Config) { c.Console.Emergency = []string{"112", "112"} }, "console.emergency[1]: 112 is listed twice"},
		{"emergency extension", func(c *Config) { c.Console.Emergency = []string{"100"} }, "extensions[0].number: 100 is an emergency number"},
		{"trunk type", func(c *Config) { c.Console.Trunk.Type = "analog" }, `console.trunk.type: "analog"`},
		{"pri no ddi", func(c *Config) { c.Console.Trunk.DDI = "" }, "console.trunk.ddi: missing"},
		{"ddi order", func(c *Config) { c.Console.Trunk.DDI = "299-200" }, "first number is above"},
		{"ddi length", func(c *Config) { c.Console.Trunk.DDI = "20-299" }, "same number of digits"},
		{"ptmp msns", func(c *Config) { c.Console.Trunk = &Trunk{Type: TrunkBRIPTMP} }, "console.trunk.msns: missing"},
		{"ptmp ddi", func(c *Config) { c.Console.Trunk = &Trunk{Type: TrunkBRIPTMP, MSNs: []string{"1"}, DDI: "1-2"} }, "a bri-ptmp trunk has MSNs"},
		{"sip missing", func(c *Config) { c.Console.Trunk = &Trunk{Type: TrunkSIP} }, "console.trunk.registrar: missing"},
		{"sip port", func(c *Config) {
			c.Console.Trunk = &Trunk{Type: TrunkSIP, Registrar: "sip.example.net:99999", User: "u", Password: "p"}
		}, "port \"99999\""},
		{"pri with sip fields", func(c *Config) { c.Console.Trunk.User = "x" }, "for a sip trunk only"},
		{"dhcp with address", func(c *Config) { c.Node.Network.DHCP = true }, "node.network.dhcp: with DHCP"},
		{"address", func(c *Config) { c.Node.Network.Address = "192.168.1.21" }, "node.network.address"},
		{"gateway subnet", func(c *Config) { c.Node.Network.Gateway = "10.0.0.1" }, "node.network.gateway: 10.0.0.1 is not another address in 192.168.1.0/24"},
		{"dns", func(c *Config) { c.Node.Network.DNS = []string{"dns"} }, "node.network.dns[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.change(c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func FuzzParsePINHash(f *testing.F) {
	f.Add("pbkdf2-sha256$200000$c2FsdHNhbHRzYWx0c2FsdA$4nA0Tq1rP1b0m3T6Q8R0l7R3b6rZ0xV1w2y3z4A5B6C")
	f.Add("pbkdf2-sha256$1$$")
	f.Add("$$$")
	f.Fuzz(func(t *testing.T, h string) {
		if _, _, iter, err := parsePINHash(h); err == nil && (iter < 1000 || iter > 10_000_000) {
			t.Fatalf("accepted iteration count %d", iter)
		}
	})
}

func FuzzParseNumberRange(f *testing.F) {
	for _, s := range []string{"200-299", "1-9", "9-1", "-", "a-b", "0100-0199"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lo, hi, err := ParseNumberRange(s)
		if err == nil && (len(lo) != len(hi) || lo > hi || lo == "") {
			t.Fatalf("%q accepted as %q-%q", s, lo, hi)
		}
	})
}
