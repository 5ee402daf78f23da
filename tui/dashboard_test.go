package tui

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"

	"github.com/twinpbx/twinpbx/firmware/appliance"
	"github.com/twinpbx/twinpbx/firmware/cluster"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/twin"
	"github.com/twinpbx/twinpbx/hw/relay"
	"github.com/twinpbx/twinpbx/pbx"
	"github.com/twinpbx/twinpbx/pbx/b2bua"
	"github.com/twinpbx/twinpbx/pbx/location"
	"github.com/twinpbx/twinpbx/pbx/trunk"
)

type fakeBackend struct {
	status   []byte
	err      error
	cfg      []byte
	pairs    []string
	exported int
	restarts int
	reboots  []bool // factoryReset of each reboot request
	dns      string
	dnsErr   error
	domains  []string
	rolls    int
	rollErr  error
}

func (f *fakeBackend) Rollout(context.Context) (string, error) {
	f.rolls++
	if f.rollErr != nil {
		return "", f.rollErr
	}
	return "rolling update started", nil
}

func (f *fakeBackend) Restart(context.Context) (string, error) {
	f.restarts++
	return "restarting the PBX", nil
}
func (f *fakeBackend) DNSRecords(_ context.Context, domain string) (string, error) {
	f.domains = append(f.domains, domain)
	return f.dns, f.dnsErr
}
func (f *fakeBackend) Reboot(_ context.Context, reset bool) error {
	f.reboots = append(f.reboots, reset)
	return nil
}

func (f *fakeBackend) Status(context.Context) ([]byte, error) { return f.status, f.err }
func (f *fakeBackend) Config(context.Context) ([]byte, error) { return f.cfg, nil }
func (f *fakeBackend) ExportConfig(context.Context) (string, error) {
	f.exported++
	return "/data/config-export.yaml", nil
}
func (f *fakeBackend) Pair(_ context.Context, what string) (string, error) {
	f.pairs = append(f.pairs, what)
	return "done: " + what, nil
}

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

// statusJSON is the status as the appliance encodes it (appliance's
// Status and twinStatus), so the view is tested against the real names.
func statusJSON(t *testing.T, withCluster bool) []byte {
	t.Helper()
	ps := pbx.Status{
		Node:          "a",
		Listeners:     []pbx.Listener{{Transport: "udp", Addr: "10.0.0.10:5060"}},
		Registrations: []location.Binding{{AOR: "100", Contact: "sip:100@10.0.0.50"}, {AOR: "101"}},
		Calls:         []b2bua.CallInfo{{Caller: "100", Callee: "101", State: "answered", Start: t0.Add(-90 * time.Second)}},
		Trunks:        []trunk.Status{{Name: "carrier", Type: "sip", State: "failing", LastError: "403 Forbidden"}},
	}
	if !withCluster {
		b, err := json.Marshal(struct {
			Role          string `json:"role"`
			ConfigVersion uint64 `json:"config_version"`
			pbx.Status
			ISDN []appliance.SpanStatus `json:"isdn,omitempty"`
		}{"standalone", 3, ps, []appliance.SpanStatus{{Name: "bri0", Trunk: "pstn", LineUp: false, Alarms: "LOS"}}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cs := cluster.Status{Node: "a", Peer: "b", Role: cluster.Active, Reason: "twin silent", Maintenance: true,
		Twin:        cluster.TwinStatus{Heard: true, Role: cluster.Standby},
		VIPHeld:     true,
		Relay:       cluster.RelayStatus{Known: true, Side: relay.B},
		Transitions: []cluster.Transition{{At: t0, From: cluster.Standby, To: cluster.Active, Reason: "twin silent on both paths"}},
		Alarms:      []cluster.Alarm{{Text: "crossover path down", Since: t0}},
		Monitors:    []cluster.MonitorStatus{{Name: "pbx", OK: true}, {Name: "store", OK: false, Error: "disk full"}},
	}
	cs.Paths[cluster.Crossover] = cluster.PathStatus{Path: cluster.Crossover, Up: false}
	cs.Paths[cluster.LAN] = cluster.PathStatus{Path: cluster.LAN, Up: true, Latency: 420 * time.Microsecond}
	ts := twin.Status{Status: cs, Serving: true, Replication: twin.ReplicationStatus{Source: true, Connected: true, LagChanges: 7},
		Watchdog: twin.WatchdogStatus{Device: "i6300esb", Timeout: 10 * time.Second}}
	b, err := json.Marshal(struct {
		Role          string `json:"role"`
		ConfigVersion uint64 `json:"config_version"`
		pbx.Status
		Cluster twin.Status `json:"cluster"`
	}{"active", 4, ps, ts})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pinConfig(t *testing.T) []byte {
	t.Helper()
	c := config.Starter(nil)
	h, err := config.HashPIN("480613", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Console = &config.Console{AdminPIN: h}
	b, err := config.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dsend(t *testing.T, d Dashboard, keys ...string) Dashboard {
	t.Helper()
	for _, k := range keys {
		m, cmd := d.Update(key(k))
		d = m.(Dashboard)
		if cmd != nil {
			if msg := cmd(); msg != nil {
				if _, quit := msg.(tea.QuitMsg); !quit {
					m, _ = d.Update(msg)
					d = m.(Dashboard)
				}
			}
		}
	}
	return d
}

func newTestDashboard(t *testing.T, b *fakeBackend) Dashboard {
	t.Helper()
	d, err := NewDashboard(context.Background(), b, "")
	if err != nil {
		t.Fatal(err)
	}
	d.now = func() time.Time { return t0 }
	m, _ := d.Update(d.fetch()())
	return m.(Dashboard)
}

func dview(d Dashboard) string { return ansi.Strip(d.View()) }

func TestDashboardLock(t *testing.T) {
	b := &fakeBackend{status: statusJSON(t, false), cfg: pinConfig(t)}
	d := newTestDashboard(t, b)
	if v := dview(d); !strings.Contains(v, "Locked. Admin PIN:") || strings.Contains(v, "Registered phones") {
		t.Fatalf("not locked:\n%s", v)
	}
	d = dsend(t, d, "4806", "s", "enter")
	if v := dview(d); !strings.Contains(v, "Wrong PIN.") || len(b.pairs) > 0 {
		t.Fatalf("wrong PIN:\n%s", v)
	}
	d = dsend(t, d, "1", "enter", "2", "enter")
	if v := dview(d); !strings.Contains(v, "Too many wrong PINs; wait 30 s.") {
		t.Fatalf("no lockout:\n%s", v)
	}
	d = dsend(t, d, "480613", "enter")
	if !d.locked {
		t.Fatal("the right PIN unlocked during the lockout")
	}
	d.now = func() time.Time { return t0.Add(pinLockout + time.Second) }
	d = dsend(t, d, "480613", "enter")
	if v := dview(d); d.locked || !strings.Contains(v, "Registered phones: 2") {
		t.Fatalf("right PIN did not unlock:\n%s", v)
	}
	d = dsend(t, d, "l")
	if !d.locked {
		t.Error("l did not lock again")
	}
}

func TestDashboardViews(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cluster bool
		want    []string
		not     []string
	}{
		{"standalone", false, []string{"Node a   role single box   config v3", "Listening: udp:10.0.0.10:5060",
			"Registered phones: 2  100 101", "Calls in progress: 1", "100 -> 101  answered  1m30s", "Trunk carrier (sip): failing (403 Forbidden)", "ISDN bri0 (trunk pstn): LINE DOWN (LOS)", "No admin PIN is set"},
			[]string{"Twin", "Heartbeat"}},
		{"twin", true, []string{"role active   config v4", "Twin b: standby", "Heartbeat: crossover down, lan 420µs",
			"Replication: 7 changes behind", "Virtual address: held by this box", "PSTN relay: B   watchdog i6300esb ok (10s)", "Maintenance mode is on.",
			"Monitors: pbx ok, store FAIL", "Last role changes:", "STANDBY->ACTIVE twin silent on both paths",
			"Alarms:", "! crossover path down"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDashboard(t, &fakeBackend{status: statusJSON(t, tc.cluster), cfg: []byte("node: {name: a}\nsip: {listen: [\"udp:127.0.0.1:5060\"], rtp_ports: 20000-20999}\n")})
			v := dview(d)
			for _, w := range tc.want {
				if !strings.Contains(v, w) {
					t.Errorf("view lacks %q", w)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(v, w) {
					t.Errorf("view has %q", w)
				}
			}
			lines := strings.Split(strings.TrimRight(v, "\n"), "\n")
			if len(lines) > 24 {
				t.Errorf("%d lines", len(lines))
			}
			for _, l := range lines {
				if len([]rune(l)) > 80 {
					t.Errorf("line wider than 80: %q", l)
				}
			}
			if t.Failed() {
				t.Log(v)
			}
		})
	}
}

func TestDashboardActions(t *testing.T) {
	cfg := []byte("node: {name: a}\nsip: {listen: [\"udp:127.0.0.1:5060\"], rtp_ports: 20000-20999}\n")
	records := "; NAPTR and SRV records of branch.example.com\n_sip._udp.branch.example.com. 300 IN SRV 10 50 5060 pbx.branch.example.com.\n"
	for _, tc := range []struct {
		name     string
		cluster  bool
		pin      bool
		keys     []string
		want     string
		not      string
		pairs    string
		restarts int
		reboots  string // "r" reboot, "R" factory reset
		rolls    int
		rollErr  error
	}{
		{name: "export", keys: []string{"e"}, want: "Config exported to /data/config-export.yaml."},
		{name: "switchover standalone", keys: []string{"s"}, want: "Switchover: only on a twin pair."},
		{name: "restart asks", cluster: true, keys: []string{"p"}, want: "Restart PBX? Press y to confirm"},
		{name: "restart", cluster: true, keys: []string{"p", "y"}, want: "restarting the PBX", restarts: 1},
		{name: "restart cancelled", keys: []string{"p", "n"}, want: "s switchover"},
		{name: "reboot", keys: []string{"b", "y"}, want: "Rebooting…", reboots: "r"},
		{name: "reboot cancelled", keys: []string{"b", "q"}, want: "s switchover"},
		{name: "dns asks the domain", keys: []string{"d"}, want: "Domain of the site (Enter alone: the SIP realm): _"},
		{name: "dns", keys: []string{"d", "enter"}, want: "_sip._udp.branch.example.com. 300 IN SRV", not: "Registered phones"},
		{name: "dns page ends with a key", keys: []string{"d", "enter", "x"}, want: "Registered phones", not: "_sip._udp"},
		// A terminal read can hold several keys: "x" ends the page, "b" asks.
		{name: "keys read together", keys: []string{"d", "enter", "xb"}, want: "Reboot? Press y to confirm", not: "_sip._udp"},
		{name: "factory reset asks the PIN", pin: true, keys: []string{"f"}, want: "Admin PIN: _"},
		{name: "factory reset PIN hidden", pin: true, keys: []string{"f", "4806"}, want: "Admin PIN: ****_"},
		{name: "factory reset wrong PIN", pin: true, keys: []string{"f", "111111", "enter"}, want: "Wrong PIN. Factory reset cancelled."},
		{name: "factory reset asks the word", pin: true, keys: []string{"f", "480613", "enter"}, want: "Type RESET to wipe this box: _"},
		{name: "factory reset wrong word", pin: true, keys: []string{"f", "480613", "enter", "reset", "enter"}, want: "Factory reset cancelled."},
		{name: "factory reset escaped", pin: true, keys: []string{"f", "480613", "enter", "RES", "esc"}, want: "Factory reset cancelled."},
		{name: "factory reset", pin: true, keys: []string{"f", "480613", "enter", "RESET", "enter"}, want: "Wiping the data and rebooting", reboots: "R"},
		{name: "factory reset without a PIN set", keys: []string{"f", "RESET", "enter"}, want: "Wiping the data", reboots: "R"},
		{name: "switchover asks", cluster: true, keys: []string{"s"}, want: "Switchover? Press y to confirm"},
		{name: "switchover cancelled", cluster: true, keys: []string{"s", "n"}, want: "s switchover"},
		{name: "switchover", cluster: true, keys: []string{"s", "y"}, want: "done: switchover", pairs: "switchover"},
		{name: "maintenance off", cluster: true, keys: []string{"m", "y"}, want: "done: maintenance/off", pairs: "maintenance/off"},
		{name: "rolling update standalone", keys: []string{"u"}, want: "only on a twin pair"},
		{name: "rolling update asks", cluster: true, keys: []string{"u"}, want: "Rolling update of the pair to the update stick's version? Press y"},
		{name: "rolling update cancelled", cluster: true, keys: []string{"u", "n"}, want: "u update pair"},
		{name: "rolling update", cluster: true, keys: []string{"u", "y"}, want: "rolling update started", rolls: 1},
		{name: "rolling update without a stick", cluster: true, keys: []string{"u", "y"}, rollErr: errors.New("no update stick in this box"),
			want: "version failed: no update", rolls: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &fakeBackend{status: statusJSON(t, tc.cluster), cfg: cfg, dns: records, rollErr: tc.rollErr}
			keys := tc.keys
			if tc.pin {
				b.cfg = pinConfig(t)
				keys = append([]string{"480613", "enter"}, keys...)
			}
			d := dsend(t, newTestDashboard(t, b), keys...)
			v := dview(d)
			if !strings.Contains(v, tc.want) {
				t.Errorf("view lacks %q:\n%s", tc.want, v)
			}
			if tc.not != "" && strings.Contains(v, tc.not) {
				t.Errorf("view has %q:\n%s", tc.not, v)
			}
			if got := strings.Join(b.pairs, ","); got != tc.pairs {
				t.Errorf("pair requests %q, want %q", got, tc.pairs)
			}
			if b.rolls != tc.rolls {
				t.Errorf("rolling updates %d, want %d", b.rolls, tc.rolls)
			}
			if b.restarts != tc.restarts {
				t.Errorf("restarts %d, want %d", b.restarts, tc.restarts)
			}
			reboots := ""
			for _, r := range b.reboots {
				reboots += map[bool]string{false: "r", true: "R"}[r]
			}
			if reboots != tc.reboots {
				t.Errorf("reboot requests %q, want %q", reboots, tc.reboots)
			}
			lines := strings.Split(strings.TrimRight(v, "\n"), "\n")
			if len(lines) > 24 {
				t.Errorf("%d lines", len(lines))
			}
		})
	}
}

func TestDashboardUnreachable(t *testing.T) {
	d := newTestDashboard(t, &fakeBackend{err: errors.New("twinpbx is not running on this data folder"), cfg: []byte("node: {name: a}\n")})
	if v := dview(d); !strings.Contains(v, "No status: twinpbx is not running on this data folder") {
		t.Errorf("view:\n%s", v)
	}
}

func TestDashboardLines(t *testing.T) {
	b := &fakeBackend{status: statusJSON(t, true), cfg: pinConfig(t)}
	var out strings.Builder
	err := RunDashboardLines(context.Background(), b, German, strings.NewReader("111111\n480613\n\nm\ny\nq\n"), &out)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"Falsche PIN.", "Zwilling b: standby", "Wartungsmodus aus? y zum Bestätigen", "done: maintenance/off"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
}

func TestParseStatusFixtures(t *testing.T) {
	for _, f := range []string{"testdata/status-standalone.json", "testdata/status-future.json"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		v, err := ParseStatus(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if v.Node == "" || len(Render(English, v, t0)) < 4 {
			t.Errorf("%s: %+v", f, v)
		}
	}
	if _, err := ParseStatus([]byte(`{"cluster": {"Paths": "x"}}`)); err == nil {
		t.Error("a path list of the wrong type was accepted")
	}
}

// TestRenderDataAlarm: init's alarm about the data partition is shown
// under the box's first line, in either language; none, no line.
func TestRenderDataAlarm(t *testing.T) {
	const alarm = "data partition damaged (e2fsck exit 4): left untouched, running on tmpfs"
	for _, tc := range []struct {
		lang Lang
		want string
	}{{English, "! Data partition: " + alarm}, {German, "! Datenpartition: " + alarm}} {
		v, err := ParseStatus([]byte(`{"role":"standalone","node":"a","data_alarm":"` + alarm + `"}`))
		if err != nil {
			t.Fatal(err)
		}
		lines := Render(tc.lang, v, t0)
		if len(lines) < 2 || lines[1] != clip(tc.want, 80) {
			t.Errorf("lines %q, want %q second", lines, tc.want)
		}
	}
	v, err := ParseStatus([]byte(`{"role":"standalone","node":"a"}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range Render(English, v, t0) {
		if strings.Contains(l, "Data partition") {
			t.Errorf("a data partition line without an alarm: %q", l)
		}
	}
}

func FuzzParseStatus(f *testing.F) {
	for _, name := range []string{"testdata/status-standalone.json", "testdata/status-future.json"} {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"cluster":{"Relay":{"Known":true,"Side":"x"},"VIPHeld":null}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseStatus(b)
		if err != nil {
			return
		}
		for _, l := range Render(German, v, t0) {
			if len([]rune(l)) > 80 {
				t.Fatalf("line wider than 80: %q", l)
			}
		}
	})
}

func TestDashboardLinesActions(t *testing.T) {
	b := &fakeBackend{status: statusJSON(t, false), cfg: pinConfig(t), dns: "_sip._udp.example.com. 300 IN SRV 10 50 5060 pbx.example.com.\n", dnsErr: nil}
	var out strings.Builder
	in := strings.Join([]string{
		"480613",
		"d", "example.com", // DNS records printed
		"f", "111111", // wrong PIN: cancelled
		"f", "480613", "reset", // wrong word: cancelled
		"p", "", // restart not confirmed
		"f", "480613", "RESET", "q", // factory reset
	}, "\n") + "\n"
	if err := RunDashboardLines(context.Background(), b, English, strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"IN SRV 10 50 5060 pbx.example.com.", "Wrong PIN. Factory reset cancelled.", "Type RESET to wipe this box:", "Factory reset cancelled.", "Wiping the data"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
	if len(b.domains) != 1 || b.domains[0] != "example.com" {
		t.Errorf("DNS records asked for %q, want example.com", b.domains)
	}
	if len(b.reboots) != 1 || !b.reboots[0] || b.restarts != 0 {
		t.Errorf("reboots %v restarts %d, want one factory reset and no restart", b.reboots, b.restarts)
	}
}
