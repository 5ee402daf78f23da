package tui

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/term"

	"github.com/twinpbx/twinpbx/firmware/boxconfig"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/control"
	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/firmware/update"
	"github.com/twinpbx/twinpbx/init/boot/request"
)

// Backend is what the dashboard needs of a box.
type Backend interface {
	// Status is the running appliance's status JSON.
	Status(ctx context.Context) ([]byte, error)
	// Config is the current config YAML (running or stored).
	Config(ctx context.Context) ([]byte, error)
	// ExportConfig saves the current config to a file and names it.
	ExportConfig(ctx context.Context) (string, error)
	// Pair sends a twin-pair request ("switchover", "maintenance/on",
	// "maintenance/off") and returns the box's answer.
	Pair(ctx context.Context, what string) (string, error)
	// Restart restarts the PBX and returns the box's answer.
	Restart(ctx context.Context) (string, error)
	// DNSRecords returns the site's DNS records for domain ("": the SIP
	// realm) as `twinpbx dns-records` prints them.
	DNSRecords(ctx context.Context, domain string) (string, error)
	// Reboot asks the box to reboot, wiping its data first when
	// factoryReset is set. It fails where the console cannot reboot the
	// machine (anywhere but on the box's own console).
	Reboot(ctx context.Context, factoryReset bool) error
	// Rollout starts a rolling update of the pair to the bundle on the
	// update stick in this box (firmware/rollout: from the active, the
	// standby first; from the standby, this box first) and returns the
	// box's answer.
	Rollout(ctx context.Context) (string, error)
}

// DataDirBackend is the Backend of the box running on data folder dir.
func DataDirBackend(dir string) Backend { return dataDir(dir) }

type dataDir string

func (d dataDir) Status(context.Context) ([]byte, error) {
	c, err := control.Dial(string(d))
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := c.Status(&b); err != nil {
		return nil, fmt.Errorf("reading the status: %w", err)
	}
	return b.Bytes(), nil
}

func (d dataDir) Config(context.Context) ([]byte, error) {
	c, err := control.Dial(string(d))
	if err == nil {
		var b bytes.Buffer
		if err := c.Config(&b); err != nil {
			return nil, fmt.Errorf("reading the config: %w", err)
		}
		return b.Bytes(), nil
	}
	if !errors.Is(err, control.ErrNotRunning) {
		return nil, err
	}
	if _, err := os.Stat(string(d)); err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	st, err := store.Open(string(d), store.Options{})
	if err != nil {
		return nil, fmt.Errorf("opening the store: %w", err)
	}
	defer st.Close()
	return boxconfig.Export(st)
}

func (d dataDir) ExportConfig(ctx context.Context) (string, error) {
	text, err := d.Config(ctx)
	if err != nil {
		return "", err
	}
	p := filepath.Join(string(d), "config-export-"+time.Now().UTC().Format("20060102-150405")+".yaml")
	if err := writeFileAtomic(p, text); err != nil {
		return "", err
	}
	return p, nil
}

func (d dataDir) Pair(_ context.Context, what string) (string, error) {
	c, err := control.Dial(string(d))
	if err != nil {
		return "", err
	}
	return c.Pair(what)
}

func (d dataDir) Rollout(context.Context) (string, error) {
	dev := update.BoxDisk.Stick()
	if dev == "" {
		return "", errors.New("no update stick in this box: write the bundle onto a stick (dd) and plug it in")
	}
	c, err := control.Dial(string(d))
	if err != nil {
		return "", err
	}
	return c.StartRollout(dev)
}

func (d dataDir) Restart(context.Context) (string, error) {
	c, err := control.Dial(string(d))
	if err != nil {
		return "", err
	}
	return c.Restart()
}

// DNSRecords runs `twinpbx dns-records` on the data folder: the same
// binary, so the records are the ones the command prints.
func (d dataDir) DNSRecords(ctx context.Context, domain string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding twinpbx: %w", err)
	}
	var out, errOut bytes.Buffer
	args := []string{"dns-records", "--data", string(d)}
	if domain != "" {
		args = append(args, "--domain", domain)
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(errOut.String()); msg != "" {
			return "", errors.New(strings.TrimPrefix(msg, "twinpbx: "))
		}
		return "", fmt.Errorf("running twinpbx dns-records: %w", err)
	}
	return out.String(), nil
}

func (dataDir) Reboot(_ context.Context, factoryReset bool) error {
	return request.Reboot(factoryReset)
}

// StatusView is the part of the status JSON the dashboard shows. Every
// field is optional: a standalone box has no cluster object, and fields a
// newer firmware adds are ignored.
type StatusView struct {
	Role          string `json:"role"`
	ConfigVersion uint64 `json:"config_version"`
	Node          string `json:"node"`
	// DataAlarm is init's alarm about the data partition, if any.
	DataAlarm string `json:"data_alarm"`
	Listeners []struct {
		Transport string `json:"transport"`
		Addr      string `json:"addr"`
	} `json:"listeners"`
	Registrations []struct {
		AOR     string    `json:"aor"`
		Contact string    `json:"contact"`
		Expires time.Time `json:"expires"`
	} `json:"registrations"`
	Calls []struct {
		Caller string    `json:"caller"`
		Callee string    `json:"callee"`
		State  string    `json:"state"`
		Start  time.Time `json:"start"`
	} `json:"calls"`
	Trunks []struct {
		Name      string `json:"name"`
		Type      string `json:"type"`
		State     string `json:"state"`
		LastError string `json:"last_error"`
		InUse     int    `json:"in_use"`
	} `json:"trunks"`
	// ISDN is each ISDN span's layer 1 (appliance.SpanStatus).
	ISDN []struct {
		Name   string `json:"name"`
		Trunk  string `json:"trunk"`
		LineUp bool   `json:"line_up"`
		Alarms string `json:"alarms"`
		Error  string `json:"error"`
	} `json:"isdn"`
	Cluster *ClusterView `json:"cluster"`
}

// ClusterView is the twin pair as the status JSON reports it.
type ClusterView struct {
	Peer   string    `json:"Peer"`
	Role   string    `json:"Role"`
	Since  time.Time `json:"Since"`
	Reason string    `json:"Reason"`
	Twin   *struct {
		Heard   bool   `json:"Heard"`
		Role    string `json:"Role"`
		Healthy bool   `json:"Healthy"`
	} `json:"Twin"`
	Paths []struct {
		Path    string `json:"Path"`
		Up      bool   `json:"Up"`
		Latency int64  `json:"Latency"`
	} `json:"Paths"`
	VIPHeld  *bool  `json:"VIPHeld"`
	VIPError string `json:"VIPError"`
	Relay    *struct {
		Known bool            `json:"Known"`
		Side  json.RawMessage `json:"Side"`
		Error string          `json:"Error"`
	} `json:"Relay"`
	Transitions []struct {
		At       time.Time `json:"At"`
		From, To string
		Reason   string `json:"Reason"`
	} `json:"Transitions"`
	Alarms []struct {
		Text  string    `json:"Text"`
		Since time.Time `json:"Since"`
	} `json:"Alarms"`
	Monitors []struct {
		Name     string `json:"Name"`
		OK       bool   `json:"OK"`
		Error    string `json:"Error"`
		Restarts int    `json:"Restarts"`
	} `json:"Monitors"`
	Maintenance bool `json:"Maintenance"`
	Replication *struct {
		Source     bool   `json:"source"`
		Connected  bool   `json:"connected"`
		InSync     bool   `json:"in_sync"`
		LagChanges uint64 `json:"lag_changes"`
	} `json:"replication"`
	Serving  bool `json:"serving"`
	Watchdog *struct {
		Device  string `json:"device"`
		Timeout int64  `json:"timeout"`
		Fenced  bool   `json:"fenced"`
	} `json:"watchdog"`
}

// ParseStatus decodes the status JSON tolerantly: unknown fields are
// ignored, a field of an unexpected type is an error.
func ParseStatus(b []byte) (*StatusView, error) {
	var v StatusView
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("decoding the status: %w", err)
	}
	return &v, nil
}

// Render draws a status in lines of at most 80 columns.
func Render(l Lang, v *StatusView, now time.Time) []string {
	var out []string
	add := func(s string) { out = append(out, clip(s, 80)) }
	role := v.Role
	if role == "standalone" {
		role = l.T("d.standalone")
	}
	add(l.T("d.node", v.Node, role, v.ConfigVersion))
	if v.DataAlarm != "" {
		add("! " + l.T("d.data", v.DataAlarm))
	}
	var ls []string
	for _, x := range v.Listeners {
		ls = append(ls, x.Transport+":"+x.Addr)
	}
	add(l.T("d.listeners", strings.Join(ls, " ")))
	phones := map[string]bool{}
	for _, r := range v.Registrations {
		phones[r.AOR] = true
	}
	add(l.T("d.phones", len(v.Registrations)) + "  " + strings.Join(sortedKeys(phones), " "))
	add(l.T("d.calls", len(v.Calls)))
	for i, c := range v.Calls {
		if i == 3 {
			add(l.T("more", len(v.Calls)-3))
			break
		}
		add(fmt.Sprintf("  %s -> %s  %s  %s", c.Caller, c.Callee, c.State, now.Sub(c.Start).Truncate(time.Second)))
	}
	for i, tr := range v.Trunks {
		if i == 3 {
			add(l.T("d.more", len(v.Trunks)-3))
			break
		}
		t := l.T("d.trunk", tr.Name, tr.Type, tr.State)
		if tr.InUse > 0 {
			t += l.T("d.trunk.calls", tr.InUse)
		}
		if tr.LastError != "" {
			t += " (" + tr.LastError + ")"
		}
		add(t)
	}
	for _, sp := range v.ISDN {
		state := l.T("d.isdn.up")
		switch {
		case sp.Error != "":
			state = l.T("d.isdn.err", sp.Error)
		case !sp.LineUp && sp.Alarms != "":
			state = l.T("d.isdn.down", " ("+sp.Alarms+")")
		case !sp.LineUp:
			state = l.T("d.isdn.down", "")
		}
		add(l.T("d.isdn", sp.Name, sp.Trunk, state))
	}
	c := v.Cluster
	if c == nil {
		return out
	}
	tw := l.T("d.twin.silent")
	if c.Twin != nil && c.Twin.Heard {
		tw = strings.ToLower(c.Twin.Role)
	}
	add(l.T("d.twin", c.Peer, tw))
	var ps []string
	for _, p := range c.Paths {
		if p.Up {
			ps = append(ps, l.T("d.path.up", p.Path, time.Duration(p.Latency).Round(10*time.Microsecond)))
		} else {
			ps = append(ps, l.T("d.path.down", p.Path))
		}
	}
	add(l.T("d.paths", strings.Join(ps, ", ")))
	if r := c.Replication; r != nil {
		s := l.T("d.repl.off")
		switch {
		case r.Connected && r.InSync:
			s = l.T("d.repl.sync")
		case r.Connected:
			s = l.T("d.repl.lag", r.LagChanges)
		}
		add(l.T("d.repl", s))
	}
	vip := l.T("d.unknown")
	if c.VIPHeld != nil {
		vip = l.T("d.vip.there")
		if *c.VIPHeld {
			vip = l.T("d.vip.here")
		}
	}
	if c.VIPError != "" {
		vip += " (" + c.VIPError + ")"
	}
	add(l.T("d.vip", vip))
	relay := l.T("d.unknown")
	if r := c.Relay; r != nil && r.Known {
		relay = strings.Trim(string(r.Side), `"`)
		switch relay {
		case "0":
			relay = "A"
		case "1":
			relay = "B"
		}
	}
	line := l.T("d.relay", relay)
	if w := c.Watchdog; w != nil {
		switch {
		case w.Device == "none" || w.Device == "":
			line += "   " + l.T("d.wd.none")
		case w.Fenced:
			line += "   " + l.T("d.wd.fenced", w.Device, time.Duration(w.Timeout))
		default:
			line += "   " + l.T("d.wd", w.Device, time.Duration(w.Timeout))
		}
	}
	add(line)
	if c.Maintenance {
		add(l.T("d.maint"))
	}
	var mons []string
	for _, m := range c.Monitors {
		s := m.Name + " ok"
		if !m.OK {
			s = m.Name + " FAIL"
		}
		mons = append(mons, s)
	}
	if len(mons) > 0 {
		add(l.T("d.watchdog", strings.Join(mons, ", ")))
	}
	if len(c.Transitions) > 0 {
		add(l.T("d.failovers"))
		start := max(0, len(c.Transitions)-3)
		for _, t := range c.Transitions[start:] {
			add(fmt.Sprintf("  %s %s->%s %s", t.At.Local().Format("01-02 15:04:05"), t.From, t.To, t.Reason))
		}
	}
	if len(c.Alarms) == 0 {
		add(l.T("d.noalarm"))
	} else {
		add(l.T("d.alarms"))
		for i, a := range c.Alarms {
			if i == 3 {
				add(l.T("more", len(c.Alarms)-3))
				break
			}
			add("  ! " + a.Text)
		}
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	if len(out) > 12 {
		out = append(out[:12], "…")
	}
	return out
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// maxPINTries wrong PINs in a row lock the console for pinLockout.
const (
	maxPINTries = 3
	pinLockout  = 30 * time.Second
)

// actKind is what an action does.
type actKind int

const (
	actNA      actKind = iota // not available on this box
	actPair                   // a twin-pair request, confirmed
	actExport                 // the config export, at once
	actRestart                // restart the PBX, confirmed
	actReboot                 // reboot, confirmed
	actDNS                    // show the DNS records, at once
	actReset                  // factory reset: PIN and a typed word
	actRollout                // rolling update of the pair from the update stick, confirmed
)

// resetWord is what the operator types to confirm a factory reset.
const resetWord = "RESET"

// action is one dashboard action.
type action struct {
	key, label string
	kind       actKind
	// pair is the twin-pair request of actPair.
	pair string
	// domain is the site's domain of actDNS.
	domain string
}

func (d Dashboard) actions() []action {
	maint := "maintenance/on"
	label := "a.maint.on"
	if d.st != nil && d.st.Cluster != nil && d.st.Cluster.Maintenance {
		maint, label = "maintenance/off", "a.maint.off"
	}
	pairKind, rollKind := actNA, actNA
	if d.st != nil && d.st.Cluster != nil {
		pairKind, rollKind = actPair, actRollout
	}
	return []action{
		{key: "s", label: "a.switchover", kind: pairKind, pair: "switchover"},
		{key: "m", label: label, kind: pairKind, pair: maint},
		{key: "u", label: "a.rollout", kind: rollKind},
		{key: "e", label: "a.export", kind: actExport},
		{key: "p", label: "a.restart", kind: actRestart},
		{key: "b", label: "a.reboot", kind: actReboot},
		{key: "d", label: "a.dns", kind: actDNS},
		{key: "f", label: "a.reset", kind: actReset},
	}
}

// ask is a question typed on the dashboard: the site's domain for the
// DNS records, or the factory reset's PIN (step 0) and confirmation word
// (step 1).
type ask struct {
	kind actKind
	step int
	text []rune
}

// Dashboard is the status console's bubbletea model.
type Dashboard struct {
	b    Backend
	ctx  context.Context
	lang Lang
	now  func() time.Time

	pinHash   string
	locked    bool
	pin       []rune
	pinMsg    string
	fails     int
	lockUntil time.Time

	st      *StatusView
	stErr   string
	confirm *action
	ask     *ask
	// page, when set, is shown instead of the status (the DNS records)
	// until the next key.
	page    []string
	message string
}

// NewDashboard reads the box's config for its admin PIN and language
// (lang "" means the config's) and returns the dashboard, locked when a
// PIN is set.
func NewDashboard(ctx context.Context, b Backend, lang Lang) (Dashboard, error) {
	d := Dashboard{b: b, ctx: ctx, lang: lang, now: time.Now}
	text, err := b.Config(ctx)
	if err != nil {
		return d, fmt.Errorf("reading the admin PIN from the config: %w", err)
	}
	cfg, err := config.Parse("current config", text)
	if err != nil {
		return d, err
	}
	if co := cfg.Console; co != nil {
		d.pinHash = co.AdminPIN
		if d.lang == "" {
			d.lang, _ = ParseLang(co.Language)
		}
	}
	if d.lang == "" {
		d.lang = English
	}
	d.locked = d.pinHash != ""
	if !d.locked {
		d.message = d.lang.T("d.nopin")
	}
	return d, nil
}

type statusMsg struct {
	v   *StatusView
	err error
}

type tickMsg struct{}

type actionMsg struct{ text string }

type pageMsg struct {
	lines []string
	err   string
}

func (d Dashboard) fetch() tea.Cmd {
	b, ctx := d.b, d.ctx
	return func() tea.Msg {
		raw, err := b.Status(ctx)
		if err != nil {
			return statusMsg{err: err}
		}
		v, err := ParseStatus(raw)
		return statusMsg{v: v, err: err}
	}
}

func tick() tea.Cmd { return tea.Tick(time.Second, func(time.Time) tea.Msg { return tickMsg{} }) }

func (d Dashboard) Init() tea.Cmd { return tea.Batch(d.fetch(), tick()) }

func (d Dashboard) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tickMsg:
		return d, tea.Batch(d.fetch(), tick())
	case statusMsg:
		if msg.err != nil {
			d.stErr = msg.err.Error()
		} else {
			d.st, d.stErr = msg.v, ""
		}
		return d, nil
	case actionMsg:
		d.message = msg.text
		return d, nil
	case pageMsg:
		d.page, d.message = msg.lines, msg.err
		return d, nil
	case tea.KeyMsg:
		if msg.Type == tea.KeyCtrlC {
			return d, tea.Quit
		}
		if d.locked {
			return d.unlockKey(msg), nil
		}
		if msg.Type == tea.KeyRunes && len(msg.Runes) > 1 && !msg.Paste {
			// Keys typed faster than the terminal is read arrive as one
			// message ("xb"): each is a key of its own here.
			var m tea.Model = d
			var cmds []tea.Cmd
			for _, r := range msg.Runes {
				var cmd tea.Cmd
				m, cmd = m.(Dashboard).Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}, Alt: msg.Alt})
				cmds = append(cmds, cmd)
			}
			return m, tea.Batch(cmds...)
		}
		return d.key(msg)
	}
	return d, nil
}

func (d Dashboard) unlockKey(k tea.KeyMsg) Dashboard {
	switch k.Type {
	case tea.KeyEnter:
		if wait := d.lockUntil.Sub(d.now()); wait > 0 {
			d.pinMsg = d.lang.T("d.lockout", int(wait.Seconds()+0.999))
			d.pin = nil
			return d
		}
		if config.CheckPIN(d.pinHash, string(d.pin)) {
			d.locked, d.fails, d.pinMsg = false, 0, ""
		} else {
			d.fails++
			d.pinMsg = d.lang.T("d.badpin")
			if d.fails >= maxPINTries {
				d.fails = 0
				d.lockUntil = d.now().Add(pinLockout)
				d.pinMsg = d.lang.T("d.lockout", int(pinLockout.Seconds()))
			}
		}
		d.pin = nil
	case tea.KeyBackspace:
		if len(d.pin) > 0 {
			d.pin = d.pin[:len(d.pin)-1]
		}
	case tea.KeyRunes:
		if len(d.pin) < 32 {
			d.pin = append(d.pin, k.Runes...)
		}
	}
	return d
}

func (d Dashboard) key(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	s := k.String()
	if d.ask != nil {
		return d.askKey(k)
	}
	if d.page != nil {
		d.page = nil
		return d, nil
	}
	if d.confirm != nil {
		a := *d.confirm
		d.confirm = nil
		if s != "y" && s != "j" {
			d.message = ""
			return d, nil
		}
		return d, d.run(a)
	}
	switch s {
	case "q", "esc":
		return d, tea.Quit
	case "l":
		if d.pinHash != "" {
			d.locked = true
		}
		return d, nil
	}
	for _, a := range d.actions() {
		if a.key != s {
			continue
		}
		switch a.kind {
		case actExport:
			d.message = ""
			return d, d.run(a)
		case actDNS:
			d.ask, d.message = &ask{kind: actDNS}, ""
		case actPair, actRestart, actReboot, actRollout:
			d.confirm = &a
			d.message = d.lang.T("d.confirm", d.lang.T(a.label))
		case actReset:
			d.ask = &ask{kind: actReset}
			if d.pinHash == "" {
				d.ask.step = 1
			}
			d.message = d.lang.T("d.reset.warn")
		default:
			d.message = d.lang.T("d.na", d.lang.T(a.label))
		}
		return d, nil
	}
	return d, nil
}

// askKey takes a key of a question: the domain of the DNS records, or
// the factory reset's admin PIN and then the word RESET (anything wrong
// cancels the reset).
func (d Dashboard) askKey(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	a := d.ask
	label := "a.reset"
	if a.kind == actDNS {
		label = "a.dns"
	}
	switch k.Type {
	case tea.KeyEsc:
		d.ask, d.message = nil, d.lang.T("d.cancelled", d.lang.T(label))
	case tea.KeyBackspace:
		if len(a.text) > 0 {
			a.text = a.text[:len(a.text)-1]
		}
	case tea.KeyRunes, tea.KeySpace:
		if len(a.text) < 32 {
			a.text = append(a.text, k.Runes...)
		}
	case tea.KeyEnter:
		text := strings.TrimSpace(string(a.text))
		a.text = nil
		switch {
		case a.kind == actDNS:
			d.ask = nil
			return d, d.run(action{label: "a.dns", kind: actDNS, domain: text})
		case a.step == 0 && config.CheckPIN(d.pinHash, text):
			a.step = 1
		case a.step == 0:
			d.ask, d.message = nil, d.lang.T("d.badpin")+" "+d.lang.T("d.cancelled", d.lang.T("a.reset"))
		case text == resetWord:
			d.ask, d.message = nil, ""
			return d, d.run(action{label: "a.reset", kind: actReset})
		default:
			d.ask, d.message = nil, d.lang.T("d.cancelled", d.lang.T("a.reset"))
		}
	}
	return d, nil
}

// askPrompt is the question asked now.
func (d Dashboard) askPrompt() string {
	if d.ask.kind == actDNS {
		return d.lang.T("d.dns.domain")
	}
	if d.ask.step == 0 {
		return d.lang.T("d.reset.pin")
	}
	return d.lang.T("d.reset.word", resetWord)
}

// run carries out an action and reports what happened.
func (d Dashboard) run(a action) tea.Cmd {
	b, ctx, l := d.b, d.ctx, d.lang
	failed := func(err error) tea.Msg { return actionMsg{l.T("d.failed", l.T(a.label), err.Error())} }
	return func() tea.Msg {
		switch a.kind {
		case actExport:
			p, err := b.ExportConfig(ctx)
			if err != nil {
				return failed(err)
			}
			return actionMsg{l.T("d.exported", p)}
		case actRestart:
			text, err := b.Restart(ctx)
			if err != nil {
				return failed(err)
			}
			return actionMsg{text}
		case actReboot, actReset:
			if err := b.Reboot(ctx, a.kind == actReset); err != nil {
				return failed(err)
			}
			if a.kind == actReset {
				return actionMsg{l.T("d.resetting")}
			}
			return actionMsg{l.T("d.rebooting")}
		case actRollout:
			text, err := b.Rollout(ctx)
			if err != nil {
				return failed(err)
			}
			return actionMsg{text}
		case actDNS:
			text, err := b.DNSRecords(ctx, a.domain)
			if err != nil {
				return pageMsg{err: l.T("d.failed", l.T(a.label), err.Error())}
			}
			return pageMsg{lines: strings.Split(strings.TrimRight(text, "\n"), "\n")}
		}
		text, err := b.Pair(ctx, a.pair)
		if err != nil {
			return failed(err)
		}
		return actionMsg{text}
	}
}

// View draws the dashboard in at most 80×24.
func (d Dashboard) View() string {
	var b strings.Builder
	line := func(s string) { b.WriteString(clip(s, 80)); b.WriteByte('\n') }
	line(d.lang.T("d.title") + " · " + d.now().Format("2006-01-02 15:04:05"))
	line(strings.Repeat("-", 40))
	if d.locked {
		line("")
		line(d.lang.T("d.locked") + " " + strings.Repeat("*", len(d.pin)) + "_")
		if d.pinMsg != "" {
			line(d.pinMsg)
		}
		return b.String()
	}
	switch {
	case d.page != nil:
		page := d.page
		if len(page) > 18 {
			page = append(page[:17:17], d.lang.T("d.more", len(d.page)-17))
		}
		for _, l := range page {
			line(l)
		}
		line("")
		line(d.lang.T("d.page.back"))
		return b.String()
	case d.stErr != "":
		line(d.lang.T("d.unreachable", d.stErr))
	case d.st == nil:
		line(d.lang.T("d.connecting"))
	default:
		lines := Render(d.lang, d.st, d.now())
		if len(lines) > 17 {
			lines = lines[:17]
		}
		for _, l := range lines {
			line(l)
		}
	}
	line("")
	if d.message != "" {
		for _, l := range wrap(d.message, 78) {
			line(l)
		}
	}
	if d.ask != nil {
		shown := string(d.ask.text)
		if d.ask.kind == actReset && d.ask.step == 0 {
			shown = strings.Repeat("*", len(d.ask.text))
		}
		line(d.askPrompt() + " " + shown + "_")
		line(d.lang.T("d.reset.esc"))
		return b.String()
	}
	for _, l := range wrap(d.lang.T("d.keys"), 78) {
		line(l)
	}
	return b.String()
}

// RunDashboardLines is the dashboard line by line: it asks for the PIN,
// prints the status, and then reads one action letter per line (Enter
// alone prints the status again, q quits).
func RunDashboardLines(ctx context.Context, b Backend, lang Lang, in io.Reader, out io.Writer) error {
	d, err := NewDashboard(ctx, b, lang)
	if err != nil {
		return err
	}
	r := bufio.NewReader(in)
	read := func() (string, error) {
		s, err := r.ReadString('\n')
		if err != nil && s == "" {
			return "", err
		}
		return strings.TrimSpace(s), nil
	}
	// A PIN is read without echo when in is a terminal.
	readPIN := func() (string, error) {
		if f, ok := in.(*os.File); ok && r.Buffered() == 0 && term.IsTerminal(f.Fd()) {
			p, err := term.ReadPassword(f.Fd())
			fmt.Fprintln(out)
			return strings.TrimSpace(string(p)), err
		}
		return read()
	}
	for d.locked {
		fmt.Fprint(out, d.lang.T("d.locked")+" ")
		s, err := readPIN()
		if err != nil {
			return nil
		}
		d = d.unlockKey(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(s)})
		d = d.unlockKey(tea.KeyMsg{Type: tea.KeyEnter})
		if d.pinMsg != "" {
			fmt.Fprintln(out, d.pinMsg)
		}
	}
	if d.message != "" {
		fmt.Fprintln(out, d.message)
	}
	for {
		if raw, err := b.Status(ctx); err != nil {
			fmt.Fprintln(out, d.lang.T("d.unreachable", err.Error()))
		} else if v, err := ParseStatus(raw); err != nil {
			fmt.Fprintln(out, d.lang.T("d.unreachable", err.Error()))
		} else {
			d.st = v
			for _, l := range Render(d.lang, v, time.Now()) {
				fmt.Fprintln(out, l)
			}
		}
		fmt.Fprintln(out, d.lang.T("d.keys"))
		fmt.Fprint(out, "> ")
		s, err := read()
		if err != nil || s == "q" {
			return nil
		}
		if s == "" {
			continue
		}
		m, cmd := d.key(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(s[:1])})
		d = m.(Dashboard)
		for d.ask != nil {
			if d.message != "" {
				fmt.Fprintln(out, d.message)
				d.message = ""
			}
			fmt.Fprint(out, d.askPrompt()+" ")
			rd := read
			if d.ask.kind == actReset && d.ask.step == 0 {
				rd = readPIN
			}
			s, err := rd()
			if err != nil {
				return nil
			}
			if s != "" {
				m, _ = d.askKey(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(s)})
				d = m.(Dashboard)
			}
			m, cmd = d.askKey(tea.KeyMsg{Type: tea.KeyEnter})
			d = m.(Dashboard)
		}
		if d.confirm != nil {
			fmt.Fprint(out, d.message+" ")
			s, err := read()
			if err != nil {
				return nil
			}
			if s == "" {
				s = "n"
			}
			m, cmd = d.key(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(s[:1])})
			d = m.(Dashboard)
		}
		if cmd != nil {
			switch msg := cmd().(type) {
			case actionMsg:
				d.message = msg.text
			case pageMsg:
				for _, l := range msg.lines {
					fmt.Fprintln(out, l)
				}
				d.message = msg.err
			}
		}
		if d.message != "" {
			fmt.Fprintln(out, d.message)
		}
	}
}
