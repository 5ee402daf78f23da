package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestParsePattern(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		err     string
		min     int
		numbers map[string]Match
	}{
		{pattern: "0.", min: 2, numbers: map[string]Match{"": Partial, "0": Partial, "00": Full, "030123": Full, "1": NoMatch, "0a": NoMatch}},
		{pattern: "112", min: 3, numbers: map[string]Match{"1": Partial, "11": Partial, "112": Full, "1121": NoMatch, "113": NoMatch}},
		{pattern: "0!", min: 1, numbers: map[string]Match{"0": Full, "01": Full, "1": NoMatch}},
		{pattern: "0ZXX", min: 4, numbers: map[string]Match{"0100": Full, "0010": NoMatch, "012": Partial, "01234": NoMatch}},
		{pattern: "n[1-3]x", min: 3, numbers: map[string]Match{"215": Full, "245": NoMatch, "115": NoMatch}},
		{pattern: "[137]#", min: 2, numbers: map[string]Match{"3#": Full, "2#": NoMatch}},
		{pattern: "+49.", min: 4, numbers: map[string]Match{"+4930": Full, "4930": NoMatch}},
		{pattern: ".", min: 1, numbers: map[string]Match{"": Partial, "5": Full}},
		{pattern: "", err: "missing"},
		{pattern: "!", err: "matches every number"},
		{pattern: "0.1", err: "may only end"},
		{pattern: "0[12", err: "without ]"},
		{pattern: "0[]", err: "empty"},
		{pattern: "0[3-1]", err: "not a range"},
		{pattern: "0[a]", err: "only digits"},
		{pattern: "0Y", err: "not allowed"},
		{pattern: strings.Repeat("1", MaxPatternLen+1), err: "longer than"},
	} {
		p, err := ParsePattern(tc.pattern)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParsePattern(%q) = %v, want an error with %q", tc.pattern, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePattern(%q): %v", tc.pattern, err)
			continue
		}
		if p.MinLen() != tc.min {
			t.Errorf("%q: MinLen %d, want %d", tc.pattern, p.MinLen(), tc.min)
		}
		for n, want := range tc.numbers {
			if got := p.Match(n); got != want {
				t.Errorf("%q.Match(%q) = %d, want %d", tc.pattern, n, got, want)
			}
		}
	}
}

func FuzzParsePattern(f *testing.F) {
	for _, s := range []string{"0.", "112", "0ZXX", "n[1-3]x!", "[137]#", "+49.", "0[12", "0[3-1]"} {
		f.Add(s, "0301234")
	}
	f.Fuzz(func(t *testing.T, pattern, number string) {
		p, err := ParsePattern(pattern)
		if err != nil {
			return
		}
		m := p.Match(number)
		if m == Full && len(number) < p.MinLen() {
			t.Fatalf("%q matched %q, shorter than MinLen %d", pattern, number, p.MinLen())
		}
		if m == Full && len(number) > 0 && p.Match(number[:len(number)-1]) == NoMatch {
			t.Fatalf("%q matches %q but not its beginning", pattern, number)
		}
	})
}

func trunkBase() *Config {
	c := Starter(nil)
	c.Trunks = []TrunkLine{
		{Name: "provider", Host: "sip.example.test", User: "4930123", Password: "pw-provider-1", Register: true,
			DIDs: []DID{{Number: "4930123100", Extension: "100"}}, DDI: "100-104", Trusted: []string{"192.0.2.0/24"}},
		{Name: "isdn", Type: LineISDN, Host: "127.0.0.1:5062"},
	}
	c.Routes = []Route{
		{Pattern: "112", Emergency: true},
		{Pattern: "0.", Strip: 1, Trunks: []string{"provider", "isdn"}},
	}
	return c
}

func TestValidateTrunks(t *testing.T) {
	if err := trunkBase().Validate(); err != nil {
		t.Fatalf("base config: %v", err)
	}
	for _, tc := range []struct {
		name  string
		edit  func(c *Config)
		field string
		msg   string
	}{
		{"no name", func(c *Config) { c.Trunks[0].Name = "" }, "trunks[0].name", "missing"},
		{"bad name", func(c *Config) { c.Trunks[0].Name = "Pro vider" }, "trunks[0].name", "lower-case"},
		{"same name", func(c *Config) { c.Trunks[1].Name = "provider" }, "trunks[1].name", "also trunks[0]"},
		{"bad type", func(c *Config) { c.Trunks[0].Type = "pots" }, "trunks[0].type", "want sip or isdn"},
		{"no host", func(c *Config) { c.Trunks[0].Host = "" }, "trunks[0].host", "missing"},
		{"bad host", func(c *Config) { c.Trunks[0].Host = "sip_example" }, "trunks[0].host", "neither"},
		{"bad port", func(c *Config) { c.Trunks[0].Host = "sip.example.test:70000" }, "trunks[0].host", "port"},
		{"isdn without port", func(c *Config) { c.Trunks[1].Host = "127.0.0.1" }, "trunks[1].host", "host:port"},
		{"bad transport", func(c *Config) { c.Trunks[0].Transport = "sctp" }, "trunks[0].transport", "udp, tcp or tls"},
		{"user with @", func(c *Config) { c.Trunks[0].User = "a@b" }, "trunks[0].user", "must not contain"},
		{"register without user", func(c *Config) { c.Trunks[0].User = "" }, "trunks[0].register", "needs user"},
		{"isdn registers", func(c *Config) { c.Trunks[1].Register = true }, "trunks[1].register", "does not register"},
		{"short expires", func(c *Config) { c.Trunks[0].Expires = Duration(MinTrunkExpires / 2) }, "trunks[0].expires", "outside"},
		{"bad caller id", func(c *Config) { c.Trunks[0].CallerID = "12a" }, "trunks[0].caller_id", "not a number"},
		{"bad did", func(c *Config) { c.Trunks[0].DIDs[0].Number = "x" }, "trunks[0].dids[0].number", "not a number"},
		{"did to nowhere", func(c *Config) { c.Trunks[0].DIDs[0].Extension = "999" }, "trunks[0].dids[0].extension", "not an extension"},
		{"bad ddi", func(c *Config) { c.Trunks[0].DDI = "100-99" }, "trunks[0].ddi", "same number of digits"},
		{"bad operator", func(c *Config) { c.Trunks[0].Extension = "999" }, "trunks[0].extension", "not an extension"},
		{"bad trusted", func(c *Config) { c.Trunks[0].Trusted = []string{"example.test"} }, "trunks[0].trusted[0]", "not an address"},
		{"negative channels", func(c *Config) { c.Trunks[0].Channels = -1 }, "trunks[0].channels", "outside 0..10000"},
		{"too many channels", func(c *Config) { c.Trunks[0].Channels = MaxTrunkChannels + 1 }, "trunks[0].channels", "outside"},
		{"isdn beyond a PRI", func(c *Config) { c.Trunks[1].Channels = 31 }, "trunks[1].channels", "at most 30 B channels"},
		{"bad pattern", func(c *Config) { c.Routes[1].Pattern = "0.1" }, "routes[1].pattern", "may only end"},
		{"strip too much", func(c *Config) { c.Routes[1].Strip = 3 }, "routes[1].strip", "strips 3"},
		{"bad add", func(c *Config) { c.Routes[1].Add = "0-" }, "routes[1].add", "not a number"},
		{"no trunks", func(c *Config) { c.Routes[1].Trunks = nil }, "routes[1].trunks", "missing"},
		{"unknown trunk", func(c *Config) { c.Routes[1].Trunks[1] = "gone" }, "routes[1].trunks[1]", "not a trunk"},
		{"trunk twice", func(c *Config) { c.Routes[1].Trunks[1] = "provider" }, "routes[1].trunks[1]", "twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := trunkBase()
			tc.edit(c)
			err := c.Validate()
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("Validate = %v, want a problem with %s", err, tc.field)
			}
			for _, p := range e.Problems {
				if p.Field == tc.field && strings.Contains(p.Msg, tc.msg) {
					return
				}
			}
			t.Fatalf("problems %v, want %s: …%s…", e, tc.field, tc.msg)
		})
	}
}

func TestValidateTrunksLines(t *testing.T) {
	src := `node: {name: a}
sip: {listen: ["udp:127.0.0.1:5060"], rtp_ports: "20000-20999"}
trunks:
  - name: provider
    host: sip.example.test
    register: true
routes:
  - pattern: "0."
    trunks: [provider, other]
`
	c, err := Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	want := []string{
		"t.yaml:6: trunks[0].register: needs user: the user name the provider gave",
		`t.yaml:9: routes[0].trunks[1]: "other" is not a trunk of this config`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Fatalf("Validate:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}

func TestTrunksAndRoutes(t *testing.T) {
	exts := []Extension{{Number: "100"}, {Number: "101"}}
	for _, tc := range []struct {
		name       string
		c          Config
		spans      []int // the board's spans' B channels
		wantTrunks []TrunkLine
		wantRoutes []Route
	}{
		{name: "nothing", c: Config{Extensions: exts}},
		{
			name: "wizard sip trunk",
			c: Config{Extensions: exts, Console: &Console{Emergency: []string{"110", "112"},
				Trunk: &Trunk{Type: TrunkSIP, Registrar: "sip.example.test", User: "u1", Password: "p1", DDI: "100-199"}}},
			wantTrunks: []TrunkLine{{Name: "pstn", Type: LineSIP, Host: "sip.example.test", User: "u1", Password: "p1",
				Register: true, Expires: Duration(DefaultTrunkExpires), DDI: "100-199"}},
			wantRoutes: []Route{
				{Pattern: "110", Emergency: true}, {Pattern: "0110", Strip: 1, Emergency: true},
				{Pattern: "112", Emergency: true}, {Pattern: "0112", Strip: 1, Emergency: true},
				{Pattern: "0.", Strip: 1, Trunks: []string{"pstn"}},
			},
		},
		{
			name: "wizard bri-ptmp",
			c:    Config{Extensions: exts, Console: &Console{Trunk: &Trunk{Type: TrunkBRIPTMP, MSNs: []string{"555", "556"}}}},
			wantTrunks: []TrunkLine{{Name: "pstn", Type: LineISDN, Host: DefaultISDNGateway, Expires: Duration(DefaultTrunkExpires),
				DIDs: []DID{{"555", "100"}, {"556", "100"}}, Channels: BRIChannels}},
			wantRoutes: []Route{{Pattern: "0.", Strip: 1, Trunks: []string{"pstn"}}},
		},
		{
			name: "trunks win over the wizard's",
			c: Config{Extensions: exts, Console: &Console{Trunk: &Trunk{Type: TrunkPRI, DDI: "100-199"}}, Trunks: []TrunkLine{
				{Name: "a", Host: "a.test"}, {Name: "b", Type: LineISDN, Host: "127.0.0.1:5070"}}},
			wantTrunks: []TrunkLine{{Name: "a", Type: LineSIP, Host: "a.test", Expires: Duration(DefaultTrunkExpires)},
				{Name: "b", Type: LineISDN, Host: "127.0.0.1:5070", Expires: Duration(DefaultTrunkExpires), Channels: PRIChannels}},
			wantRoutes: []Route{{Pattern: "0.", Strip: 1, Trunks: []string{"a", "b"}}},
		},
		{
			name: "wizard pri",
			c:    Config{Extensions: exts, Console: &Console{Trunk: &Trunk{Type: TrunkPRI, DDI: "100-199"}}},
			wantTrunks: []TrunkLine{{Name: "pstn", Type: LineISDN, Host: DefaultISDNGateway, Expires: Duration(DefaultTrunkExpires),
				DDI: "100-199", Channels: PRIChannels}},
			wantRoutes: []Route{{Pattern: "0.", Strip: 1, Trunks: []string{"pstn"}}},
		},
		{
			name: "channels as written; an isdn trunk without a wizard line is a BRI",
			c: Config{Extensions: exts, Trunks: []TrunkLine{
				{Name: "a", Host: "a.test", Channels: 4}, {Name: "b", Type: LineISDN, Host: "127.0.0.1:5070"},
				{Name: "c", Type: LineISDN, Host: "127.0.0.1:5071", Channels: 1}}},
			wantTrunks: []TrunkLine{{Name: "a", Type: LineSIP, Host: "a.test", Expires: Duration(DefaultTrunkExpires), Channels: 4},
				{Name: "b", Type: LineISDN, Host: "127.0.0.1:5070", Expires: Duration(DefaultTrunkExpires), Channels: BRIChannels},
				{Name: "c", Type: LineISDN, Host: "127.0.0.1:5071", Expires: Duration(DefaultTrunkExpires), Channels: 1}},
			wantRoutes: []Route{{Pattern: "0.", Strip: 1, Trunks: []string{"a", "b", "c"}}},
		},
		{
			name:  "isdn trunks without channels take their span's, in order",
			spans: []int{PRIChannels, BRIChannels},
			c: Config{Extensions: exts, Trunks: []TrunkLine{
				{Name: "a", Host: "a.test"}, {Name: "b", Type: LineISDN, Host: "127.0.0.1:5070"},
				{Name: "c", Type: LineISDN, Host: "127.0.0.1:5071", Channels: 1},
				{Name: "d", Type: LineISDN, Host: "127.0.0.1:5072"}}},
			wantTrunks: []TrunkLine{{Name: "a", Type: LineSIP, Host: "a.test", Expires: Duration(DefaultTrunkExpires)},
				{Name: "b", Type: LineISDN, Host: "127.0.0.1:5070", Expires: Duration(DefaultTrunkExpires), Channels: PRIChannels},
				{Name: "c", Type: LineISDN, Host: "127.0.0.1:5071", Expires: Duration(DefaultTrunkExpires), Channels: 1},
				{Name: "d", Type: LineISDN, Host: "127.0.0.1:5072", Expires: Duration(DefaultTrunkExpires), Channels: BRIChannels}},
			wantRoutes: []Route{{Pattern: "0.", Strip: 1, Trunks: []string{"a", "b", "c", "d"}}},
		},
		{
			name:  "beyond the spans or on one of unknown type: the wizard's line",
			spans: []int{0},
			c: Config{Extensions: exts, Console: &Console{Trunk: &Trunk{Type: TrunkPRI, DDI: "100-199"}}, Trunks: []TrunkLine{
				{Name: "b", Type: LineISDN, Host: "127.0.0.1:5070"}, {Name: "c", Type: LineISDN, Host: "127.0.0.1:5071"}}},
			wantTrunks: []TrunkLine{{Name: "b", Type: LineISDN, Host: "127.0.0.1:5070", Expires: Duration(DefaultTrunkExpires), Channels: PRIChannels},
				{Name: "c", Type: LineISDN, Host: "127.0.0.1:5071", Expires: Duration(DefaultTrunkExpires), Channels: PRIChannels}},
			wantRoutes: []Route{{Pattern: "0.", Strip: 1, Trunks: []string{"b", "c"}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trunks, routes := tc.c.TrunksAndRoutesOn(tc.spans)
			for i := range trunks {
				if len(trunks[i].DIDs) == 0 {
					trunks[i].DIDs = nil
				}
				if len(trunks[i].Trusted) == 0 {
					trunks[i].Trusted = nil
				}
			}
			if !reflect.DeepEqual(trunks, tc.wantTrunks) {
				t.Errorf("trunks\n%+v\nwant\n%+v", trunks, tc.wantTrunks)
			}
			if !reflect.DeepEqual(routes, tc.wantRoutes) {
				t.Errorf("routes\n%+v\nwant\n%+v", routes, tc.wantRoutes)
			}
		})
	}
}

func TestEmergencyChannels(t *testing.T) {
	for _, tc := range []struct {
		line TrunkLine
		want int
	}{
		{TrunkLine{Type: LineSIP, Channels: 2}, 0},
		{TrunkLine{Type: LineSIP}, 0},
		{TrunkLine{Type: LineISDN, Channels: 1}, BRIChannels},
		{TrunkLine{Type: LineISDN, Channels: 2}, 2},
		{TrunkLine{Type: LineISDN, Channels: 30}, 30},
	} {
		if got := tc.line.EmergencyChannels(); got != tc.want {
			t.Errorf("%s trunk with channels %d: EmergencyChannels = %d, want %d", tc.line.Type, tc.line.Channels, got, tc.want)
		}
	}
}
