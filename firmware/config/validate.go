package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Limits that Validate enforces, in one place so docs/CONFIG.md can quote them.
const (
	MaxNodeName        = 32
	MaxExtensionName   = 64
	MinSecretLen       = 8
	MaxSecretLen       = 128
	MaxContactsLimit   = 20
	MinRTPPorts        = 4
	LowestRTPPort      = 1024
	MinExpiresFloor    = 10 * time.Second
	MaxExpiresCeiling  = 24 * time.Hour
	MinRingTimeout     = 5 * time.Second
	MaxRingTimeout     = 10 * time.Minute
	MinNonceLifetime   = 30 * time.Second
	MaxNonceLifetime   = time.Hour
	minExtensionDigits = 2
	maxExtensionDigits = 8
)

// KnownCodecs are the RTP encoding names a config may list, in the spelling
// used on the wire. Codecs in a config are matched case-insensitively.
var KnownCodecs = []string{"PCMU", "PCMA", "G722", "G729", "opus", "telephone-event", "GSM", "iLBC", "speex"}

// Listen is one parsed sip.listen entry.
type Listen struct {
	Transport string // "udp", "tcp" or "tls"
	Host      string // IP address or host name, without brackets
	Port      int
}

// Addr returns "host:port" (IPv6 in brackets), for net.Listen.
func (l Listen) Addr() string { return net.JoinHostPort(l.Host, strconv.Itoa(l.Port)) }

// String returns the entry as written in the config: "udp:host:port".
func (l Listen) String() string { return l.Transport + ":" + l.Addr() }

// ParseListen parses a "transport:host:port" entry such as
// "udp:0.0.0.0:5060" or "tcp:[2001:db8::1]:5060". The transport is udp or
// tcp (any case); the host an IP address or a host name.
func ParseListen(s string) (Listen, error) {
	tr, hp, ok := strings.Cut(s, ":")
	if !ok {
		return Listen{}, fmt.Errorf("%q is not transport:host:port (e.g. udp:0.0.0.0:5060)", s)
	}
	tr = strings.ToLower(tr)
	if tr != "udp" && tr != "tcp" && tr != "tls" {
		return Listen{}, fmt.Errorf("transport %q in %q: want udp, tcp or tls", tr, s)
	}
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return Listen{}, fmt.Errorf("%q is not transport:host:port (e.g. udp:0.0.0.0:5060; IPv6 in brackets)", s)
	}
	if host == "" {
		return Listen{}, fmt.Errorf("no host in %q: write 0.0.0.0 or [::] to listen on every address", s)
	}
	if err := checkHost(host); err != nil {
		return Listen{}, fmt.Errorf("host in %q: %w", s, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return Listen{}, fmt.Errorf("port %q in %q: want a number from 1 to 65535", port, s)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		host = a.Unmap().WithZone("").String()
		if a.Zone() != "" {
			host += "%" + a.Zone()
		}
	} else {
		host = strings.ToLower(host)
	}
	return Listen{Transport: tr, Host: host, Port: p}, nil
}

// checkHost accepts an IP address or a DNS host name.
func checkHost(h string) error {
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	if len(h) > 253 {
		return fmt.Errorf("host name longer than 253 characters")
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q is neither an IP address nor a host name", h)
		}
		for i, r := range label {
			ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' && i > 0 && i < len(label)-1
			if !ok {
				return fmt.Errorf("%q is neither an IP address nor a host name", h)
			}
		}
	}
	return nil
}

// ParsePortRange parses "low-high" as used by sip.rtp_ports, without the
// rules of Validate.
func ParsePortRange(s string) (low, high int, err error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not low-high (e.g. 20000-20999)", s)
	}
	low, err1 := strconv.Atoi(strings.TrimSpace(a))
	high, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%q is not low-high (e.g. 20000-20999)", s)
	}
	return low, high, nil
}

// Validate checks every rule of docs/CONFIG.md and returns all problems as
// an *Error (nil when the config is good). Problems name the line of the
// field when the config came from Parse or Load. Defaults are taken into
// account: a min_expires above the default max_expires is a problem.
func (c *Config) Validate() error {
	if c == nil {
		return &Error{Problems: []Problem{{Msg: "no config"}}}
	}
	ps := &problems{src: c.src}
	eff := c.WithDefaults()
	c.validateNode(ps)
	c.validateSIP(ps, eff)
	c.validateExtensions(ps)
	c.validateCluster(ps, eff)
	c.validateConsole(ps)
	c.validateDispatcher(ps)
	c.validateSite(ps)
	c.validateTrunks(ps)
	c.validateTLS(ps)
	c.validatePSTN(ps)
	c.validateVoicemail(ps)
	return ps.err()
}

func (c *Config) validateNode(ps *problems) {
	n := c.Node.Name
	switch {
	case n == "":
		ps.add("node.name", "missing: name this box (e.g. a or pbx-1)")
	case len(n) > MaxNodeName:
		ps.add("node.name", "%q is longer than %d characters", n, MaxNodeName)
	case strings.HasPrefix(n, "-") || strings.HasSuffix(n, "-"):
		ps.add("node.name", "%q must not begin or end with a hyphen", n)
	default:
		for _, r := range n {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				ps.add("node.name", "%q may hold only lower-case letters, digits and hyphens", n)
				break
			}
		}
	}
}

func (c *Config) validateSIP(ps *problems, eff *Config) {
	s := c.SIP
	if len(s.Listen) == 0 {
		ps.add("sip.listen", "missing: list at least one listener, e.g. udp:0.0.0.0:5060")
	}
	var ls []Listen
	seen := map[string]int{}
	for i, e := range s.Listen {
		f := fmt.Sprintf("sip.listen[%d]", i)
		l, err := ParseListen(e)
		if err != nil {
			ps.add(f, "%s", err.Error())
			continue
		}
		if j, dup := seen[l.String()]; dup {
			ps.add(f, "%s is listed twice (also sip.listen[%d])", l, j)
			continue
		}
		seen[l.String()] = i
		for j, o := range ls {
			if o.Transport == l.Transport && o.Port == l.Port && (isWildcard(o.Host) || isWildcard(l.Host)) {
				ps.add(f, "%s conflicts with %s (an address that listens on every address takes the port on all of them)", l, s.Listen[j])
			}
		}
		ls = append(ls, l)
	}
	if s.Advertise != "" {
		if err := checkHost(s.Advertise); err != nil {
			ps.add("sip.advertise", "%s", err.Error())
		} else if a, err := netip.ParseAddr(s.Advertise); err == nil && (a.IsUnspecified() || a.IsMulticast()) {
			ps.add("sip.advertise", "%s cannot be reached by phones: give the address they should send to", s.Advertise)
		}
	}
	if s.RTPPorts == "" {
		if c.Dispatcher == nil { // a dispatcher relays no media
			ps.add("sip.rtp_ports", "missing: give the media port range, e.g. 20000-20999")
		}
	} else if low, high, err := ParsePortRange(s.RTPPorts); err != nil {
		ps.add("sip.rtp_ports", "%s", err.Error())
	} else {
		switch {
		case low < LowestRTPPort:
			ps.add("sip.rtp_ports", "lowest port %d is below %d", low, LowestRTPPort)
		case high > 65535:
			ps.add("sip.rtp_ports", "highest port %d is above 65535", high)
		case low >= high:
			ps.add("sip.rtp_ports", "lowest port %d is not below highest port %d", low, high)
		case low%2 != 0:
			ps.add("sip.rtp_ports", "lowest port %d must be even (RTP takes the even port, RTCP the next odd one)", low)
		case high-low+1 < MinRTPPorts:
			ps.add("sip.rtp_ports", "range %d-%d holds fewer than %d ports (one call leg needs 2)", low, high, MinRTPPorts)
		default:
			for i, l := range ls {
				if l.Transport == "udp" && l.Port >= low && l.Port <= high {
					ps.add("sip.rtp_ports", "range %d-%d contains the SIP port of sip.listen[%d] (%s)", low, high, i, s.Listen[i])
				}
			}
		}
	}
	if strings.ContainsFunc(s.Realm, func(r rune) bool { return r == '"' || r == '\\' || unicode.IsControl(r) }) {
		ps.add("sip.realm", "must not contain quotes, backslashes or control characters")
	}

	durs := []struct {
		field    string
		set, eff Duration
		min, max time.Duration
	}{
		{"sip.min_expires", s.MinExpires, eff.SIP.MinExpires, MinExpiresFloor, MaxExpiresCeiling},
		{"sip.default_expires", s.DefaultExpires, eff.SIP.DefaultExpires, MinExpiresFloor, MaxExpiresCeiling},
		{"sip.max_expires", s.MaxExpires, eff.SIP.MaxExpires, MinExpiresFloor, MaxExpiresCeiling},
		{"sip.ring_timeout", s.RingTimeout, eff.SIP.RingTimeout, MinRingTimeout, MaxRingTimeout},
		{"sip.nonce_lifetime", s.NonceLifetime, eff.SIP.NonceLifetime, MinNonceLifetime, MaxNonceLifetime},
	}
	bad := map[string]bool{}
	for _, d := range durs {
		if d.set < 0 || d.set != 0 && (d.set.D() < d.min || d.set.D() > d.max) {
			ps.add(d.field, "%s is outside %s..%s", d.set, Duration(d.min), Duration(d.max))
			bad[d.field] = true
		}
	}
	// The order of the expiry bounds, once each is sane on its own.
	mn, df, mx := eff.SIP.MinExpires, eff.SIP.DefaultExpires, eff.SIP.MaxExpires
	if !bad["sip.min_expires"] && !bad["sip.default_expires"] && mn > df {
		ps.add(blame(s.MinExpires, "sip.min_expires", "sip.default_expires"), "min_expires %s is above default_expires %s%s", mn, df, dflt(s.DefaultExpires))
	}
	if !bad["sip.default_expires"] && !bad["sip.max_expires"] && df > mx {
		ps.add(blame(s.DefaultExpires, "sip.default_expires", "sip.max_expires"), "default_expires %s is above max_expires %s%s", df, mx, dflt(s.MaxExpires))
	}

	known := map[string]bool{}
	for _, k := range KnownCodecs {
		known[strings.ToLower(k)] = true
	}
	seenCodec := map[string]int{}
	audio := false
	for i, name := range s.Codecs {
		f := fmt.Sprintf("sip.codecs[%d]", i)
		lc := strings.ToLower(name)
		if !known[lc] {
			ps.add(f, "unknown codec %q (known: %s)", name, strings.Join(KnownCodecs, ", "))
			continue
		}
		if j, dup := seenCodec[lc]; dup {
			ps.add(f, "codec %q is listed twice (also sip.codecs[%d])", name, j)
			continue
		}
		seenCodec[lc] = i
		if lc != "telephone-event" {
			audio = true
		}
	}
	if len(s.Codecs) > 0 && !audio && len(seenCodec) == len(s.Codecs) {
		ps.add("sip.codecs", "lists no audio codec: calls would have no sound (add PCMU or PCMA)")
	}
	seenAlg := map[string]int{}
	for i, a := range s.DigestAlgorithms {
		f := fmt.Sprintf("sip.digest_algorithms[%d]", i)
		ua := strings.ToUpper(a)
		if ua != "MD5" && ua != "SHA-256" {
			ps.add(f, "unknown digest algorithm %q (known: MD5, SHA-256)", a)
			continue
		}
		if j, dup := seenAlg[ua]; dup {
			ps.add(f, "digest algorithm %q is listed twice (also sip.digest_algorithms[%d])", a, j)
			continue
		}
		seenAlg[ua] = i
	}
}

// blame picks the field to point at for an ordering problem: the one the
// installer set, rather than one left to its default.
func blame(set Duration, field, other string) string {
	if set != 0 {
		return field
	}
	return other
}

func dflt(set Duration) string {
	if set == 0 {
		return " (the default)"
	}
	return ""
}

func isWildcard(h string) bool {
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsUnspecified()
}

func (c *Config) validateExtensions(ps *problems) {
	seen := map[string]int{}
	for i, e := range c.Extensions {
		f := fmt.Sprintf("extensions[%d]", i)
		switch {
		case e.Number == "":
			ps.add(f+".number", "missing: give the extension number, e.g. 100")
		case len(e.Number) < minExtensionDigits || len(e.Number) > maxExtensionDigits || strings.Trim(e.Number, "0123456789") != "":
			ps.add(f+".number", "%q is not %d to %d digits", e.Number, minExtensionDigits, maxExtensionDigits)
		default:
			if j, dup := seen[e.Number]; dup {
				ps.add(f+".number", "%s is also extensions[%d]", e.Number, j)
			} else {
				seen[e.Number] = i
			}
		}
		if len(e.Name) > MaxExtensionName {
			ps.add(f+".name", "longer than %d characters", MaxExtensionName)
		} else if strings.ContainsFunc(e.Name, unicode.IsControl) {
			ps.add(f+".name", "must not contain control characters")
		}
		if msg := secretProblem(e.Secret, e.Number); msg != "" {
			ps.add(f+".secret", "%s", msg)
		}
		if e.MaxContacts < 0 || e.MaxContacts > MaxContactsLimit {
			ps.add(f+".max_contacts", "%d is outside 0..%d", e.MaxContacts, MaxContactsLimit)
		}
	}
}

// weakSecrets are passwords that scanners on the internet try first.
var weakSecrets = map[string]bool{
	"password": true, "password1": true, "passw0rd": true, "12345678": true, "123456789": true,
	"1234567890": true, "87654321": true, "qwertyui": true, "qwertyuiop": true, "qwertz123": true,
	"abcd1234": true, "changeme": true, "letmein1": true, "iloveyou": true, "sunshine": true,
	"welcome1": true, "secret123": true, "asterisk": true, "voip1234": true, "admin123": true,
	"trustno1": true, "11223344": true, "abcdefgh": true, "p@ssw0rd": true,
}

// secretProblem says what is wrong with a SIP secret, or "".
func secretProblem(secret, number string) string {
	switch {
	case secret == "":
		return "missing: give a SIP password of at least 8 characters"
	case len(secret) < MinSecretLen:
		return fmt.Sprintf("shorter than %d characters", MinSecretLen)
	case len(secret) > MaxSecretLen:
		return fmt.Sprintf("longer than %d characters", MaxSecretLen)
	case strings.ContainsFunc(secret, unicode.IsControl):
		return "must not contain control characters"
	case number != "" && strings.Count(secret, number)*len(number) == len(secret):
		return "must not be the extension number"
	case weakSecrets[strings.ToLower(secret)] || oneChar(secret) || sequential(secret):
		return "too easy to guess: scanners try it first"
	}
	return ""
}

func oneChar(s string) bool { return strings.Trim(s, s[:1]) == "" }

// sequential reports runs like "12345678", "87654321" or "abcdefgh".
func sequential(s string) bool {
	up, down := true, true
	for i := 1; i < len(s); i++ {
		up = up && s[i] == s[i-1]+1
		down = down && s[i] == s[i-1]-1
	}
	return up || down
}
