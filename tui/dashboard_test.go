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

	"github.com/twinpbx/twinpbx/firmware/cluster"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/twin"
	"github.com/twinpbx/twinpbx/hw/relay"
	"github.com/twinpbx/twinpbx/pbx"
	"github.com/twinpbx/twinpbx/pbx/b2bua"
	"github.com/twinpbx/twinpbx/pbx/location"
)

type fakeBackend struct {
	status   []byte
	err      error
	cfg      []byte
	pairs    []string
	exported int
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
	}
	if !withCluster {
		b, err := json.Marshal(struct {
			Role          string `json:"role"`
			ConfigVersion uint64 `json:"config_version"`
			pbx.Status
		}{"standalone", 3, ps})
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
	ts := twin.Status{Status: cs, Serving: true, Replication: twin.ReplicationStatus{Source: true, Connected: true, LagChanges: 7}}
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
			"Registered phones: 2  100 101", "Calls in progress: 1", "100 -> 101  answered  1m30s", "No admin PIN is set"},
			[]string{"Twin", "Heartbeat"}},
		{"twin", true, []string{"role active   config v4", "Twin b: standby", "Heartbeat: crossover down, lan 420µs",
			"Replication: 7 changes behind", "Virtual address: held by this box", "PSTN relay: B", "Maintenance mode is on.",
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
	for _, tc := range []struct {
		name    string
		cluster bool
		keys    []string
		want    string
		pairs   string
	}{
		{"export", false, []string{"e"}, "Config exported to /data/config-export.yaml.", ""},
		{"switchover standalone", false, []string{"s"}, "Switchover: not available on this box yet.", ""},
		{"restart", true, []string{"p"}, "Restart PBX: not available on this box yet.", ""},
		{"reboot", true, []string{"b"}, "Reboot: not available on this box yet.", ""},
		{"dns", true, []string{"d"}, "DNS SRV records: not available on this box yet.", ""},
		{"factory reset", true, []string{"f"}, "Factory reset: not available on this box yet.", ""},
		{"switchover asks", true, []string{"s"}, "Switchover? Press y to confirm", ""},
		{"switchover cancelled", true, []string{"s", "n"}, "s switchover", ""},
		{"switchover", true, []string{"s", "y"}, "done: switchover", "switchover"},
		{"maintenance off", true, []string{"m", "y"}, "done: maintenance/off", "maintenance/off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &fakeBackend{status: statusJSON(t, tc.cluster), cfg: cfg}
			d := dsend(t, newTestDashboard(t, b), tc.keys...)
			if v := dview(d); !strings.Contains(v, tc.want) {
				t.Errorf("view lacks %q:\n%s", tc.want, v)
			}
			if got := strings.Join(b.pairs, ","); got != tc.pairs {
				t.Errorf("pair requests %q, want %q", got, tc.pairs)
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
