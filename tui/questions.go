package tui

import (
	"context"
	"net/netip"
	"strings"
	"time"

	"github.com/twinpbx/twinpbx/firmware/cluster/pairing"
	"github.com/twinpbx/twinpbx/firmware/config"
)

func isTwin(w *Wizard) bool   { return w.twin() }
func notTwin(w *Wizard) bool  { return !w.twin() }
func noStatic(w *Wizard) bool { return w.dhcp() }

// questions is the wizard, page by page.
func questions() []question {
	return []question{
		{id: "lang", page: "page.lang", kind: kindChoice,
			choices: func(*Wizard) []choice { return []choice{{"en", "English"}, {"de", "Deutsch"}} },
			def:     func(w *Wizard) string { return string(w.lang) }},
		{id: "role", page: "page.role", kind: kindChoice, help: "h.role",
			choices: func(*Wizard) []choice {
				return []choice{{"single", "role.single"}, {"a", "role.a"}, {"b", "role.b"}}
			},
			def: func(*Wizard) string { return "single" }},
		{id: "name", page: "page.name", help: "h.name", def: func(w *Wizard) string {
			switch w.get("role") {
			case "a":
				return "a"
			case "b":
				return "b"
			}
			return "pbx"
		}, check: checkNodeName},
		{id: "iface", page: "page.lan", help: "h.iface", skip: notTwin,
			def: func(*Wizard) string { return "eth0" }, check: checkIface},
		{id: "lanmode", page: "page.lan", kind: kindChoice, skip: isTwin,
			choices: func(*Wizard) []choice { return []choice{{"static", "lan.static"}, {"dhcp", "lan.dhcp"}} },
			def:     func(*Wizard) string { return "static" }},
		{id: "addr", page: "page.lan", help: "h.addr", skip: noStatic, check: checkLANPrefix},
		{id: "gateway", page: "page.lan", skip: noStatic, def: func(w *Wizard) string {
			if p, ok := w.lanPrefix(); ok && p.Addr().Is4() {
				a := p.Masked().Addr().As4()
				a[3]++
				if g := netip.AddrFrom4(a); g != p.Addr() {
					return g.String()
				}
			}
			return ""
		}, check: checkGateway},
		{id: "dns", page: "page.lan", skip: noStatic, def: func(w *Wizard) string { return w.get("gateway") }, check: checkAddrList},
		{id: "peer", page: "page.vip", skip: notTwin, def: func(w *Wizard) string {
			if w.get("role") == "a" {
				return "b"
			}
			return "a"
		}, check: checkPeerName},
		{id: "peeraddr", page: "page.vip", skip: notTwin, check: checkPeerAddr},
		{id: "vip", page: "page.vip", help: "h.vip", skip: notTwin, check: checkVIP},
		{id: "xlocal", page: "page.crossover", help: "h.cross", skip: notTwin, def: func(w *Wizard) string {
			if w.get("role") == "b" {
				return "10.99.0.2"
			}
			return "10.99.0.1"
		}, check: checkCrossLocal},
		{id: "xpeer", page: "page.crossover", help: "h.cross", skip: notTwin, def: func(w *Wizard) string {
			if w.get("role") == "b" {
				return "10.99.0.1"
			}
			return "10.99.0.2"
		}, check: checkCrossPeer},
		{id: "pairshow", page: "page.pairing", kind: kindInfo, help: "h.pairshow",
			skip: func(w *Wizard) bool { return w.get("role") != "a" },
			body: func(w *Wizard) []string { return []string{"", "    " + w.PairingCode(), ""} }},
		{id: "pairtype", page: "page.pairing", help: "h.pairtype",
			skip: func(w *Wizard) bool { return w.get("role") != "b" }, check: checkPairing},
		{id: "pin", page: "page.pin", kind: kindSecret, help: "h.pin", check: checkPIN},
		{id: "pin2", page: "page.pin", kind: kindSecret, check: checkPIN2},
		{id: "tz", page: "page.time", help: "h.tz", def: func(w *Wizard) string {
			if w.lang == German {
				return "Europe/Berlin"
			}
			return "UTC"
		}, check: checkZone},
		{id: "ntp", page: "page.time", def: func(*Wizard) string { return "pool.ntp.org" }, check: checkHostList},
		{id: "ext", page: "page.ext", help: "h.ext", def: func(*Wizard) string { return "200-219" }, check: checkExtensions},
		{id: "csv", page: "page.ext", kind: kindChoice,
			choices: func(*Wizard) []choice { return []choice{{"yes", "yes"}, {"no", "no"}} },
			def:     func(*Wizard) string { return "yes" },
			body:    func(w *Wizard) []string { return append([]string{w.t("q.secrets")}, w.secretLines(10)...) }},
		{id: "trunk", page: "page.trunk", kind: kindChoice,
			choices: func(*Wizard) []choice {
				return []choice{{"none", "trunk.none"}, {config.TrunkBRIPTP, "trunk.bri-ptp"},
					{config.TrunkBRIPTMP, "trunk.bri-ptmp"}, {config.TrunkPRI, "trunk.pri"}, {config.TrunkSIP, "trunk.sip"}}
			},
			def: func(*Wizard) string { return "none" }},
		{id: "msns", page: "page.trunk", skip: func(w *Wizard) bool { return w.get("trunk") != config.TrunkBRIPTMP }, check: checkMSNs},
		{id: "ddi", page: "page.trunk", help: "h.ddi", skip: func(w *Wizard) bool {
			t := w.get("trunk")
			return t != config.TrunkBRIPTP && t != config.TrunkPRI
		}, check: checkDDI},
		{id: "registrar", page: "page.trunk", skip: notSIPTrunk, check: checkRegistrar},
		{id: "user", page: "page.trunk", skip: notSIPTrunk, check: checkNonEmpty},
		{id: "password", page: "page.trunk", kind: kindSecret, skip: notSIPTrunk, check: checkNonEmpty},
		{id: "emergency", page: "page.emergency", def: func(*Wizard) string { return "110, 112" }, check: checkEmergency},
		{id: "review", page: "page.review", kind: kindReview, body: (*Wizard).review},
	}
}

func notSIPTrunk(w *Wizard) bool { return w.get("trunk") != config.TrunkSIP }

func checkNonEmpty(w *Wizard, v string) (string, string, string) {
	if v == "" || strings.ContainsFunc(v, func(r rune) bool { return r < ' ' }) {
		return "", w.t("e.empty"), ""
	}
	return v, "", ""
}

func checkNodeName(w *Wizard, v string) (string, string, string) {
	c := config.Config{Node: config.Node{Name: v}}
	if err := c.Validate(); err != nil && strings.Contains(err.Error(), "node.name") {
		return "", w.t("e.name", v), ""
	}
	return v, "", ""
}

func checkPeerName(w *Wizard, v string) (string, string, string) {
	if v == w.get("name") {
		return "", w.t("e.samepeer", v), ""
	}
	return checkNodeName(w, v)
}

func checkIface(w *Wizard, v string) (string, string, string) {
	if v == "" || len(v) > 15 || strings.ContainsAny(v, " /\t:") {
		return "", w.t("e.iface", v), ""
	}
	return v, "", ""
}

func checkLANPrefix(w *Wizard, v string) (string, string, string) {
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return "", w.t("e.prefix", v), ""
	}
	if p.Addr() == p.Masked().Addr() && p.Bits() < p.Addr().BitLen()-1 {
		return "", w.t("e.prefixnet", v), ""
	}
	return p.String(), "", ""
}

// inSubnet parses v as an address in this box's LAN subnet, other than
// this box's own.
func inSubnet(w *Wizard, v string) (netip.Addr, string) {
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Addr{}, w.t("e.addr", v)
	}
	p, ok := w.lanPrefix()
	if !ok {
		return a, ""
	}
	if !p.Masked().Contains(a) {
		return netip.Addr{}, w.t("e.subnet", a, p.Masked())
	}
	if a == p.Addr() {
		return netip.Addr{}, w.t("e.isself", a)
	}
	return a, ""
}

func checkGateway(w *Wizard, v string) (string, string, string) {
	a, msg := inSubnet(w, v)
	if msg != "" {
		return "", msg, ""
	}
	if f := w.opts.GatewayAnswers; f != nil {
		ctx, cancel := context.WithTimeout(context.Background(), gatewayTimeout)
		defer cancel()
		if !f(ctx, a) {
			return a.String(), "", w.t("w.gateway", a)
		}
	}
	return a.String(), "", ""
}

func checkAddrList(w *Wizard, v string) (string, string, string) {
	for _, s := range splitList(v) {
		if _, err := netip.ParseAddr(s); err != nil {
			return "", w.t("e.addr", s), ""
		}
	}
	return strings.Join(splitList(v), ", "), "", ""
}

func checkPeerAddr(w *Wizard, v string) (string, string, string) {
	a, msg := inSubnet(w, v)
	if msg != "" {
		return "", msg, ""
	}
	if a.String() == w.get("gateway") {
		return "", w.t("e.vipgw", a), ""
	}
	return a.String(), "", ""
}

func checkVIP(w *Wizard, v string) (string, string, string) {
	if p, err := netip.ParsePrefix(v); err == nil {
		v = p.Addr().String()
	}
	if own, ok := w.lanPrefix(); ok && v == own.Addr().String() || v == w.get("peeraddr") {
		return "", w.t("e.vipnode", v), ""
	}
	a, msg := inSubnet(w, v)
	if msg != "" {
		return "", msg, ""
	}
	if a.String() == w.get("gateway") {
		return "", w.t("e.vipgw", a), ""
	}
	return a.String(), "", ""
}

func checkCrossLocal(w *Wizard, v string) (string, string, string) {
	a, err := netip.ParseAddr(v)
	if err != nil {
		return "", w.t("e.addr", v), ""
	}
	if p, ok := w.lanPrefix(); ok && p.Masked().Contains(a) {
		return "", w.t("e.xlan", a, p.Masked()), ""
	}
	return a.String(), "", ""
}

func checkCrossPeer(w *Wizard, v string) (string, string, string) {
	val, e, _ := checkCrossLocal(w, v)
	if e != "" {
		return "", e, ""
	}
	if val == w.get("xlocal") {
		return "", w.t("e.xsame"), ""
	}
	a, l := netip.MustParseAddr(val), netip.MustParseAddr(w.get("xlocal"))
	if a.Is4() && l.Is4() {
		if net, _ := l.Prefix(24); !net.Contains(a) {
			return "", w.t("e.xnet", a, l), ""
		}
	}
	return val, "", ""
}

func checkPairing(w *Wizard, v string) (string, string, string) {
	c, err := pairing.Normalize(v)
	if err == nil {
		return c, "", ""
	}
	if w.lang == English {
		return "", err.Error(), ""
	}
	// pairing words its messages in English; say the same in the
	// console's language.
	msg := err.Error()
	switch {
	case strings.Contains(msg, "typo"):
		return "", w.t("e.pair.typo"), ""
	case strings.Contains(msg, "not a pairing code character"):
		for i, r := range []rune(v) {
			if !strings.ContainsRune("0123456789ABCDEFGHJKMNPQRSTVWXYZabcdefghjkmnpqrstvwxyzOoIiLl -_.\t", r) {
				return "", w.t("e.pair.char", r, i+1), ""
			}
		}
	}
	return "", w.t("e.pair.len"), ""
}

func checkPIN(w *Wizard, v string) (string, string, string) {
	switch config.PINProblem(v) {
	case "":
		return v, "", ""
	case "missing":
		return "", w.t("e.pin.missing"), ""
	case "digits only":
		return "", w.t("e.pin.digits"), ""
	case "too easy to guess":
		return "", w.t("e.pin.weak"), ""
	}
	if len(v) < config.MinPINDigits {
		return "", w.t("e.pin.short"), ""
	}
	return "", w.t("e.pin.long"), ""
}

func checkPIN2(w *Wizard, v string) (string, string, string) {
	if v != w.get("pin") {
		return "", w.t("e.pin.mismatch"), ""
	}
	return v, "", ""
}

func checkZone(w *Wizard, v string) (string, string, string) {
	if _, err := time.LoadLocation(v); err != nil || v == "" || strings.ContainsAny(v, " \t") || v == "Local" {
		return "", w.t("e.tz", v), ""
	}
	return v, "", ""
}

func checkHostList(w *Wizard, v string) (string, string, string) {
	hosts := splitList(v)
	if v == "-" {
		return "", "", ""
	}
	for _, h := range hosts {
		c := config.Config{Console: &config.Console{NTP: []string{h}}}
		if err := c.Validate(); err != nil && strings.Contains(err.Error(), "console.ntp") {
			return "", w.t("e.host", h), ""
		}
	}
	return strings.Join(hosts, ", "), "", ""
}

func checkExtensions(w *Wizard, v string) (string, string, string) {
	if _, e := expandNumbers(v); e[0] != "" {
		if e[0] == "e.empty" {
			return "", w.t(e[0]), ""
		}
		if e[0] == "e.ext.many" {
			return "", w.t(e[0], atoi(e[1]), maxExtensions), ""
		}
		return "", w.t(e[0], e[1]), ""
	}
	return v, "", ""
}

func atoi(s string) int {
	n := 0
	for _, r := range s {
		n = n*10 + int(r-'0')
	}
	return n
}

func checkNumbers(w *Wizard, v string) ([]string, string) {
	list := splitList(v)
	seen := map[string]bool{}
	for _, n := range list {
		if n == "" || len(n) > 20 || strings.Trim(n, "0123456789") != "" {
			return nil, w.t("e.number", n)
		}
		if seen[n] {
			return nil, w.t("e.em.dup", n)
		}
		seen[n] = true
	}
	return list, ""
}

func checkMSNs(w *Wizard, v string) (string, string, string) {
	list, e := checkNumbers(w, v)
	switch {
	case e != "":
		return "", e, ""
	case len(list) == 0:
		return "", w.t("e.empty"), ""
	case len(list) > 10:
		return "", w.t("e.msn.many"), ""
	}
	return strings.Join(list, ", "), "", ""
}

func checkDDI(w *Wizard, v string) (string, string, string) {
	lo, hi, err := config.ParseNumberRange(v)
	if err != nil {
		return "", w.t("e.ddi", v), ""
	}
	return lo + "-" + hi, "", ""
}

func checkRegistrar(w *Wizard, v string) (string, string, string) {
	c := config.Config{Console: &config.Console{Trunk: &config.Trunk{Type: config.TrunkSIP, Registrar: v, User: "u", Password: "p"}}}
	if v == "" {
		return "", w.t("e.empty"), ""
	}
	if err := c.Validate(); err != nil && strings.Contains(err.Error(), "console.trunk.registrar") {
		return "", w.t("e.host", v), ""
	}
	return v, "", ""
}

func checkEmergency(w *Wizard, v string) (string, string, string) {
	list, e := checkNumbers(w, v)
	if e != "" {
		return "", e, ""
	}
	for _, n := range list {
		for _, x := range w.exts {
			if x.Number == n {
				return "", w.t("e.em.ext", n), ""
			}
		}
	}
	return strings.Join(list, ", "), "", ""
}
