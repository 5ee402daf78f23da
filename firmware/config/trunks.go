package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Trunk line types (TrunkLine.Type).
const (
	LineSIP  = "sip"
	LineISDN = "isdn"
)

// Trunk defaults and limits.
const (
	DefaultTrunkExpires = 600 * time.Second
	MinTrunkExpires     = 60 * time.Second
	MaxTrunkExpires     = 24 * time.Hour
	MaxPatternLen       = 40
	MaxTrunks           = 16
	MaxRoutes           = 64
	// DerivedTrunkName is the name of the trunk derived from console.trunk.
	DerivedTrunkName = "pstn"
	// DefaultISDNGateway is where the ISDN gateway of this box listens for
	// SIP (loopback); a trunk derived from an ISDN console.trunk goes there.
	DefaultISDNGateway = "127.0.0.1:5062"
	// BRIChannels and PRIChannels are the B channels of an ISDN basic
	// rate line and of a primary rate line (E1): the most calls the line
	// carries at once, and an isdn trunk's default channels.
	BRIChannels = 2
	PRIChannels = 30
	// MaxTrunkChannels bounds trunks[].channels.
	MaxTrunkChannels = 10000
)

// TrunkLine is one line to the telephone network: a SIP provider (type
// sip), or the box's ISDN gateway, which speaks SIP on loopback (type
// isdn: no DNS, no registration, trusted by its address).
type TrunkLine struct {
	// Name identifies the trunk in routes, CDRs and the status.
	Name string `yaml:"name"`
	// Type is sip (default) or isdn.
	Type string `yaml:"type,omitempty"`
	// Host is where requests go: a domain resolved per RFC 3263
	// (NAPTR, SRV, A/AAAA), or host:port (A/AAAA only), or an address.
	Host string `yaml:"host"`
	// Transport forces udp, tcp or tls; empty: as RFC 3263 finds it.
	Transport string `yaml:"transport,omitempty"`
	// TLSCA and TLSInsecure say how a tls trunk's certificate is checked (tls.go).
	TLSCA       string `yaml:"tls_ca,omitempty"`
	TLSInsecure bool   `yaml:"tls_insecure,omitempty"`
	// Domain is the host part of From, To and Request-URIs and of the
	// registration's address of record. Empty: Host without its port.
	Domain string `yaml:"domain,omitempty"`
	// User is the account at the provider: the user of the registration's
	// address of record and of Contact.
	User string `yaml:"user,omitempty"`
	// AuthUser is the digest user name, when the provider gives one
	// apart from User. Empty: User.
	AuthUser string `yaml:"auth_user,omitempty"`
	// Password answers the provider's digest challenges.
	Password string `yaml:"password,omitempty"`
	// Register makes the PBX register User at the provider.
	Register bool `yaml:"register,omitempty"`
	// Expires is the registration time asked for.
	Expires Duration `yaml:"expires,omitempty"`
	// CallerID is the number sent in From of outbound calls. Empty: User.
	CallerID string `yaml:"caller_id,omitempty"`
	// DIDs map called numbers of inbound calls to extensions.
	DIDs []DID `yaml:"dids,omitempty"`
	// DDI is a direct-dial-in range "low-high": an inbound call whose
	// called number ends in a number of that range rings the extension
	// of that number.
	DDI string `yaml:"ddi,omitempty"`
	// Extension takes the inbound calls that no DID or DDI matches (an
	// operator). Empty: such calls get 404.
	Extension string `yaml:"extension,omitempty"`
	// Trusted lists addresses or prefixes ("192.0.2.0/24") from which
	// INVITEs are taken as this trunk's inbound calls. Empty: the
	// addresses Host resolves to.
	Trusted []string `yaml:"trusted,omitempty"`
	// Channels is how many calls, inbound and outbound together, may run
	// over the trunk at once; a route skips a trunk whose channels are
	// all in use. 0: no limit for a sip trunk; for an isdn trunk the B
	// channels of the line (TrunksAndRoutes fills them in).
	Channels int `yaml:"channels,omitempty"`
}

// ISDNChannels is the number of B channels of a console.trunk type: 30
// for a PRI, 2 for a BRI (and for anything else: every board's span is
// a BRI unless the wizard was told otherwise).
func ISDNChannels(consoleType string) int {
	if consoleType == TrunkPRI {
		return PRIChannels
	}
	return BRIChannels
}

// EmergencyChannels is how many calls the trunk may carry when the new
// one is an emergency call: no limit (0) on a sip trunk, whatever its
// channels (the provider's contract limit does not stop a call to the
// fire brigade; a provider that refuses it sends the call on to the
// next trunk); on an isdn trunk every B channel of the line, which the
// hardware cannot exceed: its channels, but at least a BRI's two.
func (t TrunkLine) EmergencyChannels() int {
	if t.Type != LineISDN {
		return 0
	}
	return max(t.Channels, BRIChannels)
}

// DID maps one called number of a trunk to an extension.
type DID struct {
	Number    string `yaml:"number"`
	Extension string `yaml:"extension"`
}

// Route is one outbound dialling rule: a dialled number that matches
// Pattern goes out over Trunks, in order, after Strip and Add.
type Route struct {
	// Pattern of the dialled number: digits, * and # stand for
	// themselves; X is any digit, Z 1-9, N 2-9, [1-4] or [137] a class;
	// a final "." is one or more further characters, a final "!" zero
	// or more. "0." is the usual outside line.
	Pattern string `yaml:"pattern"`
	// Strip removes this many characters from the front of the number.
	Strip int `yaml:"strip,omitempty"`
	// Add is put in front of the number after Strip.
	Add string `yaml:"add,omitempty"`
	// Trunks are tried in this order. Empty for an emergency route:
	// every trunk.
	Trunks []string `yaml:"trunks,omitempty"`
	// Emergency routes are matched before extensions and other routes,
	// and are tried over every trunk after their own.
	Emergency bool `yaml:"emergency,omitempty"`
}

// TrunksAndRoutes returns the trunks and routes that the PBX uses. This is
// the one place where they are derived from the wizard's settings:
//
//   - trunks: given: as written (Type defaulting to sip, Expires to 10m,
//     an isdn trunk's Channels to the B channels of console.trunk's
//     line type, a BRI's when it names none; TrunksAndRoutesOn takes
//     the board's spans first);
//     absent: one trunk named "pstn" from console.trunk, when set (a sip
//     trunk registers at its registrar with its user and password; an
//     ISDN trunk goes to the ISDN gateway at DefaultISDNGateway); the
//     console's DDI range or MSNs are its inbound numbers;
//   - routes: given: as written; absent: one emergency route per number
//     of console.emergency (the number itself and 0 followed by it, sent
//     as the number, over every trunk), then "0." over every trunk with
//     the 0 stripped.
func (c *Config) TrunksAndRoutes() ([]TrunkLine, []Route) { return c.TrunksAndRoutesOn(nil) }

// TrunksAndRoutesOn is TrunksAndRoutes on a board whose ISDN spans have
// spanChannels B channels each, in the board's order (0: not known). An
// isdn trunk whose config gives no channels gets its span's (the i-th
// isdn trunk is on the i-th span, as the appliance starts their
// gateways); a trunk beyond the spans, or on a span of unknown type, gets
// console.trunk's type's, else a BRI's.
func (c *Config) TrunksAndRoutesOn(spanChannels []int) ([]TrunkLine, []Route) {
	var trunks []TrunkLine
	consoleType := ""
	if c.Console != nil && c.Console.Trunk != nil {
		consoleType = c.Console.Trunk.Type
	}
	span := 0 // the span of the next isdn trunk
	for _, t := range c.Trunks {
		t.DIDs = append([]DID(nil), t.DIDs...)
		t.Trusted = append([]string(nil), t.Trusted...)
		if t.Type == "" {
			t.Type = LineSIP
		}
		if t.Expires == 0 {
			t.Expires = Duration(DefaultTrunkExpires)
		}
		if t.Type == LineISDN {
			if t.Channels == 0 && span < len(spanChannels) {
				t.Channels = spanChannels[span]
			}
			if t.Channels == 0 {
				t.Channels = ISDNChannels(consoleType)
			}
			span++
		}
		trunks = append(trunks, t)
	}
	if len(c.Trunks) == 0 && c.Console != nil && c.Console.Trunk != nil {
		trunks = append(trunks, derivedTrunk(c.Console.Trunk, c.Extensions))
	}
	if len(c.Routes) > 0 {
		routes := make([]Route, len(c.Routes))
		for i, r := range c.Routes {
			r.Trunks = append([]string(nil), r.Trunks...)
			routes[i] = r
		}
		return trunks, routes
	}
	var routes []Route
	if c.Console != nil {
		for _, n := range c.Console.Emergency {
			routes = append(routes,
				Route{Pattern: n, Emergency: true},
				Route{Pattern: "0" + n, Strip: 1, Emergency: true})
		}
	}
	if len(trunks) > 0 {
		names := make([]string, len(trunks))
		for i, t := range trunks {
			names[i] = t.Name
		}
		routes = append(routes, Route{Pattern: "0.", Strip: 1, Trunks: names})
	}
	return trunks, routes
}

// derivedTrunk turns the wizard's console.trunk into a trunk line.
func derivedTrunk(ct *Trunk, exts []Extension) TrunkLine {
	t := TrunkLine{Name: DerivedTrunkName, Expires: Duration(DefaultTrunkExpires), DDI: ct.DDI}
	switch ct.Type {
	case TrunkSIP:
		t.Type = LineSIP
		t.Host = ct.Registrar
		t.User = ct.User
		t.Password = ct.Password
		t.Register = true
	default:
		t.Type = LineISDN
		t.Host = DefaultISDNGateway
		t.Channels = ISDNChannels(ct.Type)
	}
	// MSNs of a point-to-multipoint line ring the first extension: the
	// wizard does not ask which extension takes which MSN.
	if len(ct.MSNs) > 0 && len(exts) > 0 {
		for _, m := range ct.MSNs {
			t.DIDs = append(t.DIDs, DID{Number: m, Extension: exts[0].Number})
		}
	}
	return t
}

func (c *Config) validateTrunks(ps *problems) {
	if len(c.Trunks) > MaxTrunks {
		ps.add("trunks", "%d trunks: at most %d", len(c.Trunks), MaxTrunks)
	}
	names := map[string]int{}
	exts := map[string]bool{}
	for _, e := range c.Extensions {
		exts[e.Number] = true
	}
	for i, t := range c.Trunks {
		f := fmt.Sprintf("trunks[%d]", i)
		switch {
		case t.Name == "":
			ps.add(f+".name", "missing: name the trunk, e.g. provider")
		case !isName(t.Name):
			ps.add(f+".name", "%q may hold only lower-case letters, digits and hyphens (at most 32)", t.Name)
		default:
			if j, dup := names[t.Name]; dup {
				ps.add(f+".name", "%s is also trunks[%d]", t.Name, j)
			} else {
				names[t.Name] = i
			}
		}
		typ := t.Type
		switch typ {
		case "", LineSIP, LineISDN:
		default:
			ps.add(f+".type", "%q: want sip or isdn", t.Type)
		}
		if t.Host == "" {
			ps.add(f+".host", "missing: the provider's domain (e.g. sip.example.net) or host:port")
		} else if err := checkTrunkTarget(t.Host); err != nil {
			ps.add(f+".host", "%v", err)
		} else if typ == LineISDN && !strings.Contains(t.Host, ":") {
			ps.add(f+".host", "an isdn trunk needs host:port of the ISDN gateway, e.g. %s", DefaultISDNGateway)
		}
		switch strings.ToLower(t.Transport) {
		case "", "udp", "tcp", "tls":
		default:
			ps.add(f+".transport", "%q: want udp, tcp or tls", t.Transport)
		}
		if t.Domain != "" {
			if err := checkHost(t.Domain); err != nil {
				ps.add(f+".domain", "%v", err)
			}
		}
		for _, u := range []struct{ field, v string }{{"user", t.User}, {"auth_user", t.AuthUser}} {
			if strings.ContainsFunc(u.v, func(r rune) bool {
				return unicode.IsControl(r) || unicode.IsSpace(r) || strings.ContainsRune("<>\"@:;", r)
			}) {
				ps.add(f+"."+u.field, "must not contain spaces, control characters or any of <>\"@:;")
			}
		}
		switch {
		case len(t.Password) > MaxSecretLen:
			ps.add(f+".password", "longer than %d characters", MaxSecretLen)
		case strings.ContainsFunc(t.Password, unicode.IsControl):
			ps.add(f+".password", "must not contain control characters")
		}
		if t.Register {
			switch {
			case typ == LineISDN:
				ps.add(f+".register", "an isdn trunk does not register")
			case t.User == "":
				ps.add(f+".register", "needs user: the user name the provider gave")
			}
		}
		if t.Expires != 0 && (t.Expires.D() < MinTrunkExpires || t.Expires.D() > MaxTrunkExpires) {
			ps.add(f+".expires", "%s is outside %s..%s", t.Expires, Duration(MinTrunkExpires), Duration(MaxTrunkExpires))
		}
		if t.CallerID != "" && !dialString(t.CallerID) {
			ps.add(f+".caller_id", "%q is not a number (digits, optionally a leading +)", t.CallerID)
		}
		seen := map[string]int{}
		for j, d := range t.DIDs {
			df := fmt.Sprintf("%s.dids[%d]", f, j)
			if !dialString(d.Number) {
				ps.add(df+".number", "%q is not a number (digits, optionally a leading +)", d.Number)
			} else if k, dup := seen[d.Number]; dup {
				ps.add(df+".number", "%s is also %s.dids[%d]", d.Number, f, k)
			} else {
				seen[d.Number] = j
			}
			if !exts[d.Extension] {
				ps.add(df+".extension", "%q is not an extension of this config", d.Extension)
			}
		}
		if t.DDI != "" {
			if _, _, err := ParseNumberRange(t.DDI); err != nil {
				ps.add(f+".ddi", "%v", err)
			}
		}
		if t.Extension != "" && !exts[t.Extension] {
			ps.add(f+".extension", "%q is not an extension of this config", t.Extension)
		}
		for j, tr := range t.Trusted {
			if _, err := parseTrusted(tr); err != nil {
				ps.add(fmt.Sprintf("%s.trusted[%d]", f, j), "%v", err)
			}
		}
		switch {
		case t.Channels < 0 || t.Channels > MaxTrunkChannels:
			ps.add(f+".channels", "%d is outside 0..%d (0: no limit)", t.Channels, MaxTrunkChannels)
		case typ == LineISDN && t.Channels > PRIChannels:
			ps.add(f+".channels", "%d: an ISDN line has at most %d B channels (a PRI)", t.Channels, PRIChannels)
		}
	}
	if len(c.Routes) > MaxRoutes {
		ps.add("routes", "%d routes: at most %d", len(c.Routes), MaxRoutes)
	}
	trunks, _ := c.TrunksAndRoutes()
	known := map[string]bool{}
	for _, t := range trunks {
		known[t.Name] = true
	}
	for i, r := range c.Routes {
		f := fmt.Sprintf("routes[%d]", i)
		p, err := ParsePattern(r.Pattern)
		if err != nil {
			ps.add(f+".pattern", "%v", err)
		}
		if r.Strip < 0 || r.Strip > MaxPatternLen {
			ps.add(f+".strip", "%d is outside 0..%d", r.Strip, MaxPatternLen)
		} else if err == nil && r.Strip > p.MinLen() {
			ps.add(f+".strip", "strips %d characters, but the pattern matches numbers of %d", r.Strip, p.MinLen())
		}
		if r.Add != "" && !dialString(r.Add) {
			ps.add(f+".add", "%q is not a number (digits, optionally a leading +)", r.Add)
		}
		if len(r.Trunks) == 0 && !r.Emergency {
			ps.add(f+".trunks", "missing: list the trunks to try, in order")
		}
		dup := map[string]bool{}
		for j, name := range r.Trunks {
			tf := fmt.Sprintf("%s.trunks[%d]", f, j)
			switch {
			case !known[name]:
				ps.add(tf, "%q is not a trunk of this config", name)
			case dup[name]:
				ps.add(tf, "%q is listed twice", name)
			}
			dup[name] = true
		}
	}
}

// parseTrusted parses an address or a prefix.
func parseTrusted(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or a prefix like 192.0.2.0/24", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or a prefix like 192.0.2.0/24", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParseTrusted parses a trunk's trusted entry (an address or a prefix) as
// Validate accepts it.
func ParseTrusted(s string) (netip.Prefix, error) { return parseTrusted(s) }

// checkTrunkTarget accepts "host", "host:port", "[v6]" and "[v6]:port".
func checkTrunkTarget(s string) error {
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return fmt.Errorf("%q: missing ]", s)
		}
		if _, err := netip.ParseAddr(s[1:end]); err != nil {
			return fmt.Errorf("%q: %q is not an IPv6 address", s, s[1:end])
		}
		rest := s[end+1:]
		if rest == "" {
			return nil
		}
		if !strings.HasPrefix(rest, ":") {
			return fmt.Errorf("%q: want [address]:port", s)
		}
		return checkPort(s, rest[1:])
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Is6() {
		return nil
	}
	return checkTrunkHost(s)
}

func checkPort(s, p string) error {
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %q is not 1-65535", s, p)
	}
	return nil
}

func isName(s string) bool {
	if s == "" || len(s) > MaxNodeName || strings.HasPrefix(s, "-") || strings.HasSuffix(s, "-") {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// dialString is a number as sent to a network: digits, optionally a
// leading +, at most 32.
func dialString(s string) bool {
	s = strings.TrimPrefix(s, "+")
	return s != "" && len(s) <= 32 && strings.Trim(s, "0123456789") == ""
}
