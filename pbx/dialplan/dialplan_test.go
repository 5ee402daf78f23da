package dialplan

import (
	"reflect"
	"strings"
	"testing"

	"github.com/twinpbx/twinpbx/firmware/config"
)

func testPlan(t testing.TB) *Plan {
	t.Helper()
	trunks := []config.TrunkLine{
		{Name: "provider", DIDs: []config.DID{{Number: "+4930123456", Extension: "100"}}, DDI: "100-199"},
		{Name: "isdn", DDI: "200-299", Extension: "101"},
		{Name: "backup"},
	}
	routes := []config.Route{
		{Pattern: "0.", Strip: 1, Trunks: []string{"provider", "isdn"}},
		{Pattern: "112", Emergency: true, Trunks: []string{"isdn"}},
		{Pattern: "9ZXX", Strip: 1, Add: "+4930", Trunks: []string{"backup"}},
		{Pattern: "0112", Strip: 1, Emergency: true},
	}
	p, err := New(trunks, routes, []string{"100", "101", "112", "150", "201"}, []string{"110", "112", "19222"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDecide(t *testing.T) {
	p := testPlan(t)
	for _, tc := range []struct {
		dialled string
		want    Decision
	}{
		{"100", Decision{Kind: Extension, Extension: "100", Route: -1}},
		{"030123", Decision{Kind: Outbound, Number: "30123", Trunks: []string{"provider", "isdn"}, Route: 0}},
		// Emergency routes come before an extension of the same number,
		// and before the outside line that would also take 0112.
		{"112", Decision{Kind: Emergency, Number: "112", Trunks: []string{"isdn", "provider", "backup"}, Route: 1}},
		{"0112", Decision{Kind: Emergency, Number: "112", Trunks: []string{"provider", "isdn", "backup"}, Route: 3}},
		// Emergency numbers without a route: every trunk, as dialled.
		{"110", Decision{Kind: Emergency, Number: "110", Trunks: []string{"provider", "isdn", "backup"}, Route: -1}},
		{"19222", Decision{Kind: Emergency, Number: "19222", Trunks: []string{"provider", "isdn", "backup"}, Route: -1}},
		{"9123", Decision{Kind: Outbound, Number: "+4930123", Trunks: []string{"backup"}, Route: 2}},
		{"0", Decision{Kind: Incomplete, Route: -1}},
		{"91", Decision{Kind: Incomplete, Route: -1}},
		{"11", Decision{Kind: Incomplete, Route: -1}},
		{"90123", Decision{Kind: NotFound, Route: -1}},
		{"555", Decision{Kind: NotFound, Route: -1}},
		{"", Decision{Kind: NotFound, Route: -1}},
		{"0abc", Decision{Kind: NotFound, Route: -1}},
	} {
		if got := p.Decide(tc.dialled); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Decide(%q) = %+v, want %+v", tc.dialled, got, tc.want)
		}
	}
}

func TestInbound(t *testing.T) {
	p := testPlan(t)
	for _, tc := range []struct {
		trunk, called, ext string
		ok                 bool
	}{
		{"provider", "4930123456", "100", true},
		{"provider", "+4930123456", "100", true},
		{"provider", "4930123150", "150", true},
		{"provider", "4930123160", "", false}, // in the range, not an extension
		{"provider", "4930123201", "", false}, // another trunk's range
		{"isdn", "201", "201", true},
		{"isdn", "999", "101", true}, // the operator
		{"isdn", "", "101", true},
		{"backup", "100", "", false},
		{"nosuch", "100", "", false},
	} {
		ext, ok := p.Inbound(tc.trunk, tc.called)
		if ext != tc.ext || ok != tc.ok {
			t.Errorf("Inbound(%s, %q) = %q, %v; want %q, %v", tc.trunk, tc.called, ext, ok, tc.ext, tc.ok)
		}
	}
}

func TestFromConfigWizard(t *testing.T) {
	c := config.Starter(nil)
	c.Console = &config.Console{Emergency: []string{"110", "112"},
		Trunk: &config.Trunk{Type: config.TrunkSIP, Registrar: "sip.example.test", User: "u", Password: "p", DDI: "100-199"}}
	p, err := FromConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	for dialled, want := range map[string]Decision{
		"112":     {Kind: Emergency, Number: "112", Trunks: []string{"pstn"}, Route: 2},
		"0110":    {Kind: Emergency, Number: "110", Trunks: []string{"pstn"}, Route: 1},
		"0301234": {Kind: Outbound, Number: "301234", Trunks: []string{"pstn"}, Route: 4},
		"101":     {Kind: Extension, Extension: "101", Route: -1},
	} {
		if got := p.Decide(dialled); !reflect.DeepEqual(got, want) {
			t.Errorf("Decide(%q) = %+v, want %+v", dialled, got, want)
		}
	}
	if ext, ok := p.Inbound("pstn", "4930555103"); !ok || ext != "103" {
		t.Errorf("Inbound = %q, %v; want 103", ext, ok)
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		trunks []config.TrunkLine
		routes []config.Route
		want   string
	}{
		{"bad pattern", nil, []config.Route{{Pattern: "0.1"}}, "routes[0]"},
		{"unknown trunk", []config.TrunkLine{{Name: "a"}}, []config.Route{{Pattern: "0.", Trunks: []string{"b"}}}, `no trunk "b"`},
		{"bad ddi", []config.TrunkLine{{Name: "a", DDI: "9-10"}}, nil, "trunk a: ddi"},
		{"negative strip", nil, []config.Route{{Pattern: "0.", Strip: -1}}, "strip -1"},
	} {
		_, err := New(tc.trunks, tc.routes, nil, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

// FuzzDecide checks that any dialled number gets a decision that makes
// sense: emergency numbers always go out over every trunk, outbound ones
// name trunks and a number, and nothing panics.
func FuzzDecide(f *testing.F) {
	for _, s := range []string{"100", "030123", "112", "0112", "110", "9123", "0", "", "0abc", "+49", "*#"} {
		f.Add(s, "4930123150")
	}
	p := testPlan(f)
	f.Fuzz(func(t *testing.T, dialled, called string) {
		d := p.Decide(dialled)
		switch d.Kind {
		case Emergency:
			if len(d.Trunks) != 3 || d.Number == "" {
				t.Fatalf("%q: emergency decision %+v", dialled, d)
			}
		case Outbound:
			if len(d.Trunks) == 0 || d.Number == "" {
				t.Fatalf("%q: outbound decision %+v", dialled, d)
			}
		case Extension:
			if d.Extension != dialled {
				t.Fatalf("%q: extension %+v", dialled, d)
			}
		}
		if ext, ok := p.Inbound("provider", called); ok && ext == "" {
			t.Fatalf("Inbound(%q) ok with no extension", called)
		}
	})
}
