// Package tui is the box's console: the setup wizard (`twinpbx setup`) that
// a person on site answers in ten minutes without a config file or a shell,
// and the status dashboard (`twinpbx console`). Both run full screen with
// bubbletea, or line by line on a dumb serial console. The wizard's pages
// are one list of questions (Wizard) that both front ends walk.
package tui

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twinpbx/twinpbx/firmware/cluster/pairing"
	"github.com/twinpbx/twinpbx/firmware/config"
)

// kind is how a question is answered.
type kind int

const (
	kindText   kind = iota
	kindSecret      // typed, not echoed
	kindChoice      // one of a list
	kindInfo        // shown, confirmed with Enter
	kindReview      // the last page: Enter applies
)

// choice is one option of a choice question: the stored value and the
// catalogue key of its label.
type choice struct{ value, label string }

// question is one step of the wizard.
type question struct {
	id   string
	page string // catalogue key of the page title
	kind kind
	help string // catalogue key, optional
	// choices of a kindChoice question.
	choices func(w *Wizard) []choice
	// def is the value taken when Enter is pressed on an empty line.
	def func(w *Wizard) string
	// skip hides the question given earlier answers.
	skip func(w *Wizard) bool
	// check returns the value to store, or a message why v is wrong
	// (errMsg blocks, warn asks for confirmation).
	check func(w *Wizard, v string) (val, errMsg, warn string)
	// body is the text shown above the prompt (info and review pages).
	body func(w *Wizard) []string
}

// Options configure a Wizard.
type Options struct {
	// Lang is the language the wizard starts in.
	Lang Lang
	// Rand is the source of secrets, the pairing code and the PIN's salt;
	// nil means crypto/rand.
	Rand io.Reader
	// GatewayAnswers reports whether an address answers (an ARP or ping
	// attempt); nil skips the check.
	GatewayAnswers func(ctx context.Context, a netip.Addr) bool
	// Apply stores the finished config and returns what to tell the user.
	Apply func(ctx context.Context, r Result) (string, error)
}

// Result is what the wizard produced.
type Result struct {
	Config *config.Config
	// YAML is Config marshalled, as stored.
	YAML []byte
	// ExportCSV: the user asked for the extensions' secrets as CSV.
	ExportCSV bool
	// Twin: the config has a cluster section (the box's own file must
	// be kept too).
	Twin bool
	// BoxA: this is box A of a pair, whose code box B still needs.
	BoxA bool
}

// Wizard is the state of one setup: the answers so far.
type Wizard struct {
	opts    Options
	lang    Lang
	answers map[string]string
	// pairingCode is made once for box A.
	pairingCode string
	// exts are the extensions with their generated secrets; extsFor is
	// the answer they were made for.
	exts    []config.Extension
	extsFor string
	pinHash string
	qs      []question
}

// NewWizard returns a wizard at its first question.
func NewWizard(o Options) *Wizard {
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Lang == "" {
		o.Lang = English
	}
	w := &Wizard{opts: o, lang: o.Lang, answers: map[string]string{}}
	w.qs = questions()
	return w
}

// Lang is the language chosen so far.
func (w *Wizard) Lang() Lang { return w.lang }

func (w *Wizard) t(key string, args ...any) string { return w.lang.T(key, args...) }

func (w *Wizard) get(id string) string { return w.answers[id] }

func (w *Wizard) twin() bool { r := w.get("role"); return r == "a" || r == "b" }

func (w *Wizard) dhcp() bool { return !w.twin() && w.get("lanmode") == "dhcp" }

// lanPrefix is this box's address with its prefix, if answered.
func (w *Wizard) lanPrefix() (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(w.get("addr"))
	return p, err == nil
}

// visible reports whether question i is asked given the answers so far.
func (w *Wizard) visible(i int) bool {
	q := w.qs[i]
	return q.skip == nil || !q.skip(w)
}

// next returns the index of the first visible question after i, or
// len(qs).
func (w *Wizard) next(i int) int {
	for i++; i < len(w.qs) && !w.visible(i); i++ {
	}
	return i
}

// prev returns the index of the last visible question before i, or i when
// there is none.
func (w *Wizard) prev(i int) int {
	for j := i - 1; j >= 0; j-- {
		if w.visible(j) {
			return j
		}
	}
	return i
}

// position returns the step number of question i and how many steps are
// visible now.
func (w *Wizard) position(i int) (n, total int) {
	for j := range w.qs {
		if w.visible(j) {
			total++
			if j <= i {
				n++
			}
		}
	}
	return n, total
}

// defaultFor is question i's default answer.
func (w *Wizard) defaultFor(i int) string {
	if d := w.qs[i].def; d != nil {
		return d(w)
	}
	return ""
}

// answer checks v for question i and stores it. It returns a message why
// v is refused (errMsg) or needs confirmation (warn); with confirmed, a
// warning is accepted.
func (w *Wizard) answer(ctx context.Context, i int, v string, confirmed bool) (errMsg, warn string) {
	q := w.qs[i]
	v = strings.TrimSpace(v)
	if v == "" && q.kind != kindSecret {
		v = w.defaultFor(i)
	}
	if q.kind == kindChoice {
		cs := q.choices(w)
		if !slices.ContainsFunc(cs, func(c choice) bool { return c.value == v }) {
			return w.t("e.choice", len(cs)), ""
		}
	}
	if q.check != nil {
		val, e, wn := q.check(w, v)
		if e != "" {
			return e, ""
		}
		if wn != "" && !confirmed {
			return "", wn
		}
		v = val
	}
	w.answers[q.id] = v
	switch q.id {
	case "lang":
		w.lang = Lang(v)
	case "ext":
		if v != w.extsFor {
			w.makeExtensions(v)
		}
	case "pin2":
		h, err := config.HashPIN(v, w.opts.Rand)
		if err != nil {
			return err.Error(), ""
		}
		w.pinHash = h
		// Neither PIN is kept once hashed.
		w.answers["pin"], w.answers["pin2"] = "", ""
	}
	_ = ctx
	return "", ""
}

// makeExtensions expands the extension answer (already checked) and gives
// each a new secret.
func (w *Wizard) makeExtensions(v string) {
	nums, _ := expandNumbers(v)
	w.exts = w.exts[:0]
	for _, n := range nums {
		w.exts = append(w.exts, config.Extension{Number: n, Name: "Extension " + n, Secret: config.NewSecret(w.opts.Rand)})
	}
	w.extsFor = v
}

// Extensions returns the extensions made, with their secrets.
func (w *Wizard) Extensions() []config.Extension { return slices.Clone(w.exts) }

// PairingCode returns box A's pairing code (made on first use).
func (w *Wizard) PairingCode() string {
	if w.pairingCode == "" {
		c, err := pairing.NewPairingKey(w.opts.Rand)
		if err != nil {
			c, _ = pairing.NewPairingKey(nil)
		}
		w.pairingCode = c
	}
	return w.pairingCode
}

// maxExtensions bounds one range so a typo like 100-99999 does not make
// a config of a hundred thousand accounts.
const maxExtensions = 1000

// expandNumbers expands "100-119, 200" into numbers. On error it returns a
// catalogue key and its argument.
func expandNumbers(s string) ([]string, [2]string) {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		lo, hi = strings.TrimSpace(lo), strings.TrimSpace(hi)
		if !isRange {
			hi = lo
		}
		for _, n := range []string{lo, hi} {
			if n == "" || strings.Trim(n, "0123456789") != "" {
				return nil, [2]string{"e.ext.syntax", part}
			}
			if len(n) < 2 || len(n) > 8 {
				return nil, [2]string{"e.ext.digits", part}
			}
		}
		if len(lo) != len(hi) {
			return nil, [2]string{"e.ext.syntax", part}
		}
		a, _ := strconv.Atoi(lo)
		b, _ := strconv.Atoi(hi)
		if a > b {
			return nil, [2]string{"e.ext.range", part}
		}
		if b-a >= maxExtensions || len(out)+b-a >= maxExtensions {
			return nil, [2]string{"e.ext.many", strconv.Itoa(len(out) + b - a + 1)}
		}
		for x := a; x <= b; x++ {
			out = append(out, fmt.Sprintf("%0*d", len(lo), x))
		}
	}
	if len(out) == 0 {
		return nil, [2]string{"e.empty", ""}
	}
	seen := map[string]bool{}
	for _, n := range out {
		if seen[n] {
			return nil, [2]string{"e.ext.dup", n}
		}
		seen[n] = true
	}
	return out, [2]string{}
}

// splitList splits a comma- or space-separated list.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == ';' })
}

// Build returns the config the answers describe, validated.
func (w *Wizard) Build() (*config.Config, error) {
	c := &config.Config{
		Node: config.Node{Name: w.get("name")},
		SIP:  config.SIP{RTPPorts: "20000-20999"},
	}
	p, _ := w.lanPrefix()
	switch {
	case w.twin():
		vip := netip.MustParseAddr(w.get("vip"))
		c.Node.Network = &config.Network{Address: p.String(), Gateway: w.get("gateway"), DNS: splitList(w.get("dns"))}
		c.SIP.Listen = []string{"udp:" + vip.String() + ":5060", "tcp:" + vip.String() + ":5060"}
		c.Cluster = &config.Cluster{
			Peer:         w.get("peer"),
			PairingKey:   w.pairingKey(),
			Crossover:    config.Path{Local: w.get("xlocal"), Peer: w.get("xpeer")},
			LAN:          config.Path{Local: p.Addr().String(), Peer: w.get("peeraddr")},
			LANInterface: w.get("iface"),
			VIP:          netip.PrefixFrom(vip, p.Bits()).String(),
			Gateway:      w.get("gateway"),
		}
	case w.dhcp():
		c.Node.Network = &config.Network{DHCP: true}
		c.SIP.Listen = []string{"udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"}
	default:
		c.Node.Network = &config.Network{Address: p.String(), Gateway: w.get("gateway"), DNS: splitList(w.get("dns"))}
		a := p.Addr().String()
		if p.Addr().Is6() {
			a = "[" + a + "]"
		}
		c.SIP.Listen = []string{"udp:" + a + ":5060", "tcp:" + a + ":5060"}
	}
	c.Extensions = w.Extensions()
	co := &config.Console{
		Language:  string(w.lang),
		AdminPIN:  w.pinHash,
		TimeZone:  w.get("tz"),
		NTP:       splitList(w.get("ntp")),
		Emergency: splitList(w.get("emergency")),
	}
	switch tt := w.get("trunk"); tt {
	case "", "none":
	case config.TrunkBRIPTMP:
		co.Trunk = &config.Trunk{Type: tt, MSNs: splitList(w.get("msns"))}
	case config.TrunkSIP:
		co.Trunk = &config.Trunk{Type: tt, Registrar: w.get("registrar"), User: w.get("user"), Password: w.get("password")}
	default:
		co.Trunk = &config.Trunk{Type: tt, DDI: w.get("ddi")}
	}
	c.Console = co
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("checking the new config: %w", err)
	}
	return c, nil
}

// pairingKey is the pair's key: box A's code, or the code typed on box B.
func (w *Wizard) pairingKey() string {
	if w.get("role") == "a" {
		return w.PairingCode()
	}
	return w.get("pairtype")
}

// Result builds the config and marshals it.
func (w *Wizard) Result() (Result, error) {
	c, err := w.Build()
	if err != nil {
		return Result{}, err
	}
	y, err := config.Marshal(c)
	if err != nil {
		return Result{}, fmt.Errorf("writing the new config: %w", err)
	}
	return Result{Config: c, YAML: y, ExportCSV: w.get("csv") == "yes", Twin: c.Cluster != nil, BoxA: w.get("role") == "a"}, nil
}

// review is the summary shown before applying.
func (w *Wizard) review() []string {
	var out []string
	line := func(k, v string) { out = append(out, fmt.Sprintf("%-17s %s", w.t(k)+":", v)) }
	role := map[string]string{"single": "role.single", "a": "role.a", "b": "role.b"}[w.get("role")]
	line("r.role", w.t(role))
	line("r.name", w.get("name"))
	if w.dhcp() {
		line("r.lan", "DHCP")
	} else {
		lan := w.get("addr")
		if g := w.get("gateway"); g != "" {
			lan += ", " + w.t("r.gw", g)
		}
		if d := w.get("dns"); d != "" {
			lan += ", " + w.t("r.dns", d)
		}
		line("r.lan", lan)
	}
	if w.twin() {
		line("r.twin", w.get("peer")+" "+w.get("peeraddr")+" ("+w.get("iface")+")")
		line("r.vip", w.get("vip"))
		line("r.cross", w.get("xlocal")+" <-> "+w.get("xpeer"))
		line("r.pairing", w.pairingKey())
	}
	line("r.pin", w.t("r.pinset"))
	t := w.get("tz")
	if n := w.get("ntp"); n != "" {
		t += ", NTP " + n
	}
	line("r.time", t)
	line("r.ext", w.t("r.count", len(w.exts), w.get("ext")))
	tr := w.get("trunk")
	switch tr {
	case config.TrunkBRIPTMP:
		tr += " MSN " + w.get("msns")
	case config.TrunkBRIPTP, config.TrunkPRI:
		tr += " DDI " + w.get("ddi")
	case config.TrunkSIP:
		tr += " " + w.get("user") + "@" + w.get("registrar")
	default:
		tr = w.t("trunk.none")
	}
	line("r.trunk", tr)
	line("r.emergency", w.get("emergency"))
	return out
}

// secretLines shows the extensions' secrets in columns that fit 80
// columns, at most rows lines.
func (w *Wizard) secretLines(rows int) []string {
	const col = 27
	per := 3
	var out []string
	n := len(w.exts)
	maxShown := rows * per
	shown := min(n, maxShown)
	if n > maxShown {
		shown = maxShown - 1
	}
	lines := (shown + per - 1) / per
	for r := range lines {
		var b strings.Builder
		for c := range per {
			i := c*lines + r
			if i >= shown {
				break
			}
			cell := fmt.Sprintf("%-8s %s", w.exts[i].Number, w.exts[i].Secret)
			if c < per-1 {
				cell = fmt.Sprintf("%-*s", col, cell)
			}
			b.WriteString(cell)
		}
		out = append(out, strings.TrimRight(b.String(), " "))
	}
	if shown < n {
		out = append(out, w.t("more", n-shown))
	}
	return out
}

// gatewayTimeout bounds the reachability check of the gateway.
const gatewayTimeout = 2 * time.Second
