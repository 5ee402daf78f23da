package config

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Console holds what the setup wizard asks beyond the PBX itself: the
// console's language and admin PIN, the clock, the PSTN trunk and the
// emergency numbers. It is shared by both twins. The PIN locks the
// console, init applies the time zone and NTP servers on the box, and
// the trunk and emergency numbers become a trunk and routes when the
// config has no trunks section of its own (TrunksAndRoutes).
type Console struct {
	// Language of the console: "en" or "de".
	Language string `yaml:"language,omitempty"`
	// AdminPIN is the console admin PIN, hashed (see HashPIN); never the
	// PIN itself.
	AdminPIN string `yaml:"admin_pin,omitempty"`
	// TimeZone is an IANA zone name, e.g. "Europe/Berlin".
	TimeZone string `yaml:"time_zone,omitempty"`
	// NTP lists the time servers (host names or addresses).
	NTP []string `yaml:"ntp,omitempty"`
	// Emergency numbers always go to the PSTN trunk.
	Emergency []string `yaml:"emergency,omitempty"`
	// Trunk is the line to the telephone network; absent: none.
	Trunk *Trunk `yaml:"trunk,omitempty"`
}

// Trunk types.
const (
	TrunkBRIPTP  = "bri-ptp"
	TrunkBRIPTMP = "bri-ptmp"
	TrunkPRI     = "pri"
	TrunkSIP     = "sip"
)

// Trunk is the PSTN line: an ISDN BRI in point-to-point mode with a DDI
// range, a BRI in point-to-multipoint mode with MSNs, a PRI (E1) with a DDI
// range, or a SIP trunk at a provider.
type Trunk struct {
	Type string `yaml:"type"`
	// MSNs are the numbers of a BRI point-to-multipoint line.
	MSNs []string `yaml:"msns,omitempty"`
	// DDI is the direct-dial-in range "low-high" of a point-to-point BRI
	// or a PRI, e.g. "200-299".
	DDI string `yaml:"ddi,omitempty"`
	// Registrar, User and Password of a SIP trunk.
	Registrar string `yaml:"registrar,omitempty"`
	User      string `yaml:"user,omitempty"`
	Password  string `yaml:"password,omitempty"`
}

// Network is a box's own LAN setting. Absent: the operating system's.
type Network struct {
	// DHCP: the address, gateway and DNS come from a DHCP server; the
	// three fields below must then be empty.
	DHCP bool `yaml:"dhcp,omitempty"`
	// Address is the box's static LAN address with its prefix.
	Address string   `yaml:"address,omitempty"`
	Gateway string   `yaml:"gateway,omitempty"`
	DNS     []string `yaml:"dns,omitempty"`
}

// Admin PIN limits.
const (
	MinPINDigits = 6
	MaxPINDigits = 12
	pinScheme    = "pbkdf2-sha256"
	pinIter      = 200_000
)

// PINProblem says what is wrong with an admin PIN as typed, or "".
func PINProblem(pin string) string {
	switch {
	case pin == "":
		return "missing"
	case strings.Trim(pin, "0123456789") != "":
		return "digits only"
	case len(pin) < MinPINDigits:
		return fmt.Sprintf("at least %d digits", MinPINDigits)
	case len(pin) > MaxPINDigits:
		return fmt.Sprintf("at most %d digits", MaxPINDigits)
	case oneChar(pin) || sequential(pin) || repeatsPair(pin):
		return "too easy to guess"
	}
	return ""
}

// repeatsPair reports PINs like "121212" or "123123".
func repeatsPair(s string) bool {
	for n := 2; n <= len(s)/2; n++ {
		if len(s)%n == 0 && strings.Repeat(s[:n], len(s)/n) == s {
			return true
		}
	}
	return false
}

// HashPIN returns the stored form of an admin PIN: a salted PBKDF2-SHA256
// hash, "pbkdf2-sha256$ITER$SALT$HASH" (base64). rnd is the salt's source;
// nil means crypto/rand.
func HashPIN(pin string, rnd io.Reader) (string, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	salt := make([]byte, 16)
	if _, err := io.ReadFull(rnd, salt); err != nil {
		return "", fmt.Errorf("hashing the admin PIN: reading a salt: %w", err)
	}
	return hashPIN(pin, salt, pinIter)
}

func hashPIN(pin string, salt []byte, iter int) (string, error) {
	key, err := pbkdf2.Key(sha256.New, pin, salt, iter, 32)
	if err != nil {
		return "", fmt.Errorf("hashing the admin PIN: %w", err)
	}
	enc := base64.RawStdEncoding
	return fmt.Sprintf("%s$%d$%s$%s", pinScheme, iter, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// parsePINHash splits a stored PIN hash.
func parsePINHash(h string) (salt, key []byte, iter int, err error) {
	parts := strings.Split(h, "$")
	if len(parts) != 4 || parts[0] != pinScheme {
		return nil, nil, 0, fmt.Errorf("not a %s$ITER$SALT$HASH hash (write it with `twinpbx setup`)", pinScheme)
	}
	iter, err = strconv.Atoi(parts[1])
	if err != nil || iter < 1000 || iter > 10_000_000 {
		return nil, nil, 0, fmt.Errorf("iteration count %q is not between 1000 and 10000000", parts[1])
	}
	enc := base64.RawStdEncoding
	if salt, err = enc.DecodeString(parts[2]); err != nil || len(salt) < 8 {
		return nil, nil, 0, fmt.Errorf("salt is not base64 of at least 8 bytes")
	}
	if key, err = enc.DecodeString(parts[3]); err != nil || len(key) != 32 {
		return nil, nil, 0, fmt.Errorf("hash is not base64 of 32 bytes")
	}
	return salt, key, iter, nil
}

// CheckPIN reports whether pin matches the stored hash.
func CheckPIN(hash, pin string) bool {
	salt, key, iter, err := parsePINHash(hash)
	if err != nil {
		return false
	}
	got, err := pbkdf2.Key(sha256.New, pin, salt, iter, len(key))
	return err == nil && subtle.ConstantTimeCompare(got, key) == 1
}

// ParseNumberRange parses "low-high" of digit strings of the same length
// (e.g. "200-299") and returns the bounds.
func ParseNumberRange(s string) (low, high string, err error) {
	lo, hi, ok := strings.Cut(s, "-")
	lo, hi = strings.TrimSpace(lo), strings.TrimSpace(hi)
	if !ok || lo == "" || hi == "" || strings.Trim(lo+hi, "0123456789") != "" {
		return "", "", fmt.Errorf("%q is not a range of numbers like 200-299", s)
	}
	if len(lo) != len(hi) || len(lo) > 15 {
		return "", "", fmt.Errorf("%q: both ends must have the same number of digits (at most 15)", s)
	}
	if lo > hi {
		return "", "", fmt.Errorf("%q: the first number is above the second", s)
	}
	return lo, hi, nil
}

func phoneNumber(s string) bool {
	return s != "" && len(s) <= 20 && strings.Trim(s, "0123456789") == ""
}

func (c *Config) validateConsole(ps *problems) {
	if n := c.Node.Network; n != nil {
		if n.DHCP {
			if n.Address != "" || n.Gateway != "" || len(n.DNS) > 0 {
				ps.add("node.network.dhcp", "with DHCP, address, gateway and dns come from the DHCP server: leave them out")
			}
		} else {
			p, err := netip.ParsePrefix(n.Address)
			switch {
			case n.Address == "":
				ps.add("node.network.address", "missing: this box's address with its prefix, e.g. 192.168.1.21/24 (or dhcp: true)")
			case err != nil:
				ps.add("node.network.address", "%q is not an address with a prefix, e.g. 192.168.1.21/24", n.Address)
			case n.Gateway != "":
				g, err := netip.ParseAddr(n.Gateway)
				if err != nil {
					ps.add("node.network.gateway", "%q is not an IP address", n.Gateway)
				} else if !p.Masked().Contains(g) || g == p.Addr() {
					ps.add("node.network.gateway", "%s is not another address in %s", g, p.Masked())
				}
			}
			for i, d := range n.DNS {
				if _, err := netip.ParseAddr(d); err != nil {
					ps.add(fmt.Sprintf("node.network.dns[%d]", i), "%q is not an IP address", d)
				}
			}
		}
	}
	co := c.Console
	if co == nil {
		return
	}
	switch co.Language {
	case "", "en", "de":
	default:
		ps.add("console.language", "%q: want en or de", co.Language)
	}
	if co.AdminPIN != "" {
		if _, _, _, err := parsePINHash(co.AdminPIN); err != nil {
			ps.add("console.admin_pin", "%v", err)
		}
	}
	if co.TimeZone != "" {
		if _, err := time.LoadLocation(co.TimeZone); err != nil || strings.ContainsAny(co.TimeZone, " \t") {
			ps.add("console.time_zone", "%q is not a time zone name like Europe/Berlin", co.TimeZone)
		}
	}
	for i, h := range co.NTP {
		if err := checkHost(h); err != nil {
			ps.add(fmt.Sprintf("console.ntp[%d]", i), "%v", err)
		}
	}
	seen := map[string]bool{}
	for i, e := range co.Emergency {
		f := fmt.Sprintf("console.emergency[%d]", i)
		switch {
		case !phoneNumber(e):
			ps.add(f, "%q is not a number of digits", e)
		case seen[e]:
			ps.add(f, "%s is listed twice", e)
		}
		seen[e] = true
	}
	for i, x := range c.Extensions {
		if seen[x.Number] {
			ps.add(fmt.Sprintf("extensions[%d].number", i), "%s is an emergency number (console.emergency)", x.Number)
		}
	}
	if t := co.Trunk; t != nil {
		c.validateTrunk(ps, t)
	}
}

func (c *Config) validateTrunk(ps *problems, t *Trunk) {
	sipOnly := func() {
		if t.Registrar != "" || t.User != "" || t.Password != "" {
			ps.add("console.trunk.registrar", "registrar, user and password are for a sip trunk only")
		}
	}
	ddi := func(need bool) {
		if t.DDI == "" {
			if need {
				ps.add("console.trunk.ddi", "missing: the direct-dial-in range, e.g. 200-299")
			}
			return
		}
		if _, _, err := ParseNumberRange(t.DDI); err != nil {
			ps.add("console.trunk.ddi", "%v", err)
		}
	}
	switch t.Type {
	case TrunkBRIPTP, TrunkPRI:
		ddi(true)
		sipOnly()
		if len(t.MSNs) > 0 {
			ps.add("console.trunk.msns", "MSNs are for a bri-ptmp trunk; a %s trunk has a ddi range", t.Type)
		}
	case TrunkBRIPTMP:
		sipOnly()
		if t.DDI != "" {
			ps.add("console.trunk.ddi", "a bri-ptmp trunk has MSNs, not a ddi range")
		}
		if len(t.MSNs) == 0 {
			ps.add("console.trunk.msns", "missing: the line's numbers (MSNs)")
		}
		if len(t.MSNs) > 10 {
			ps.add("console.trunk.msns", "%d MSNs: a BRI line has at most 10", len(t.MSNs))
		}
		for i, m := range t.MSNs {
			if !phoneNumber(m) {
				ps.add(fmt.Sprintf("console.trunk.msns[%d]", i), "%q is not a number of digits", m)
			}
		}
	case TrunkSIP:
		ddi(false)
		if len(t.MSNs) > 0 {
			ps.add("console.trunk.msns", "MSNs are for a bri-ptmp trunk")
		}
		if t.Registrar == "" {
			ps.add("console.trunk.registrar", "missing: the provider's registrar, e.g. sip.example.net")
		} else if err := checkTrunkHost(t.Registrar); err != nil {
			ps.add("console.trunk.registrar", "%v", err)
		}
		if t.User == "" {
			ps.add("console.trunk.user", "missing: the user name the provider gave")
		} else if strings.ContainsFunc(t.User, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) {
			ps.add("console.trunk.user", "must not contain spaces or control characters")
		}
		switch {
		case t.Password == "":
			ps.add("console.trunk.password", "missing: the password the provider gave")
		case len(t.Password) > MaxSecretLen:
			ps.add("console.trunk.password", "longer than %d characters", MaxSecretLen)
		case strings.ContainsFunc(t.Password, unicode.IsControl):
			ps.add("console.trunk.password", "must not contain control characters")
		}
	case "":
		ps.add("console.trunk.type", "missing: bri-ptp, bri-ptmp, pri or sip")
	default:
		ps.add("console.trunk.type", "%q: want bri-ptp, bri-ptmp, pri or sip", t.Type)
	}
}

// checkTrunkHost accepts "host" or "host:port".
func checkTrunkHost(s string) error {
	host := s
	if h, p, ok := strings.Cut(s, ":"); ok && !strings.Contains(p, ":") {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: port %q is not 1-65535", s, p)
		}
		host = h
	}
	return checkHost(host)
}
