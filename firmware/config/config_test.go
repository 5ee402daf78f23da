package config

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/bad")

// stripSrc forgets parse positions so configs can be compared.
func stripSrc(c *Config) *Config {
	out := *c
	out.src = nil
	return &out
}

func TestParseFull(t *testing.T) {
	c, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Version: 7,
		Node:    Node{Name: "branch-a"},
		SIP: SIP{
			Listen:         []string{"udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"},
			Advertise:      "192.0.2.10",
			RTPPorts:       "20000-20999",
			Realm:          "branch.example.com",
			MinExpires:     Duration(time.Minute),
			MaxExpires:     Duration(time.Hour),
			DefaultExpires: Duration(10 * time.Minute),
			RingTimeout:    Duration(45 * time.Second),
			NonceLifetime:  Duration(5 * time.Minute),
			Codecs:         []string{"G722", "PCMA", "PCMU", "telephone-event"},
		},
		Extensions: []Extension{
			{Number: "100", Name: "Reception", Secret: "Tq7vKp9mWc4xRb3n", MaxContacts: 3},
			{Number: "101", Name: "Workshop", Secret: "hJ4nXe7wPq3aTm6v"},
			{Number: "0102", Secret: "rN6kVd9sYf4gLc7u"},
		},
	}
	if got := stripSrc(c); !reflect.DeepEqual(got, want) {
		t.Errorf("Load(full.yaml) =\n%+v\nwant\n%+v", got, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate(full.yaml): %v", err)
	}
}

// TestGolden parses each broken config in testdata/bad (and validates it
// if it parses) and compares the error text with the .golden file beside it.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test configs: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Parse(filepath.Base(f), data)
			if err == nil {
				err = c.Validate()
			}
			if err == nil {
				t.Fatal("no error for a broken config")
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error is %T, want *Error: %v", err, err)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s:\ngot:\n%swant:\n%s", golden, got, want)
			}
		})
	}
}

func TestErrorLines(t *testing.T) {
	_, err := Parse("config.yaml", []byte("node:\n  name: a\nsip:\n  listen: [udp:127.0.0.1:5060]\n  rtp_ports: 20000-20999\nextensions:\n  - {number: \"100\", secert: x}\n"))
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Problems) != 1 {
		t.Fatalf("Parse: %v, want one problem", err)
	}
	want := Problem{File: "config.yaml", Line: 7, Field: "extensions[0]", Msg: `unknown field "secert"`}
	if ce.Problems[0] != want {
		t.Errorf("problem = %+v, want %+v", ce.Problems[0], want)
	}
	if got, w := err.Error(), `config.yaml:7: extensions[0]: unknown field "secert"`; got != w {
		t.Errorf("Error() = %q, want %q", got, w)
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{File: "c.yaml", Line: 3, Field: "node.name", Msg: "bad"}, "c.yaml:3: node.name: bad"},
		{Problem{File: "c.yaml", Field: "node.name", Msg: "bad"}, "c.yaml: node.name: bad"},
		{Problem{Field: "node.name", Msg: "bad"}, "node.name: bad"},
		{Problem{Line: 4, Msg: "bad"}, "line 4: bad"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.p, got, tt.want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want a not-exist error", err)
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, bytes.Repeat([]byte("#\n"), MaxFileSize), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load(big) = %v, want a size error", err)
	}
}

// valid returns a config that passes Validate, for tests to break.
func valid() *Config {
	return &Config{
		Node: Node{Name: "a"},
		SIP:  SIP{Listen: []string{"udp:127.0.0.1:5060"}, RTPPorts: "20000-20999"},
		Extensions: []Extension{
			{Number: "100", Secret: "Tq7vKp9mWc4xRb3n"},
			{Number: "101", Secret: "hJ4nXe7wPq3aTm6v"},
		},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		field  string // "" means valid
		msg    string // part of the message
	}{
		{"valid", func(c *Config) {}, "", ""},
		{"no extensions", func(c *Config) { c.Extensions = nil }, "", ""},
		{"node name max", func(c *Config) { c.Node.Name = strings.Repeat("a", 32) }, "", ""},
		{"node name empty", func(c *Config) { c.Node.Name = "" }, "node.name", "missing"},
		{"node name long", func(c *Config) { c.Node.Name = strings.Repeat("a", 33) }, "node.name", "longer than 32"},
		{"node name upper", func(c *Config) { c.Node.Name = "A" }, "node.name", "lower-case"},
		{"node name hyphen", func(c *Config) { c.Node.Name = "-a" }, "node.name", "hyphen"},
		{"listen empty", func(c *Config) { c.SIP.Listen = nil }, "sip.listen", "missing"},
		{"listen ipv6", func(c *Config) { c.SIP.Listen = []string{"udp:[::1]:5060", "tcp:[::1]:5060"} }, "", ""},
		{"listen hostname", func(c *Config) { c.SIP.Listen = []string{"tcp:pbx.example.com:5060"} }, "", ""},
		{"listen upper transport", func(c *Config) { c.SIP.Listen = []string{"UDP:127.0.0.1:5060"} }, "", ""},
		{"listen tls", func(c *Config) { c.SIP.Listen = []string{"tls:127.0.0.1:5061"} }, "", ""},
		{"listen ws", func(c *Config) { c.SIP.Listen = []string{"ws:127.0.0.1:5061"} }, "sip.listen[0]", "want udp, tcp or tls"},
		{"listen no port", func(c *Config) { c.SIP.Listen = []string{"udp:127.0.0.1"} }, "sip.listen[0]", "transport:host:port"},
		{"listen port 0", func(c *Config) { c.SIP.Listen = []string{"udp:127.0.0.1:0"} }, "sip.listen[0]", "1 to 65535"},
		{"listen port high", func(c *Config) { c.SIP.Listen = []string{"udp:127.0.0.1:65536"} }, "sip.listen[0]", "1 to 65535"},
		{"listen empty host", func(c *Config) { c.SIP.Listen = []string{"udp::5060"} }, "sip.listen[0]", "0.0.0.0"},
		{"listen bad host", func(c *Config) { c.SIP.Listen = []string{"udp:pbx_1:5060"} }, "sip.listen[0]", "neither an IP"},
		{"listen dup", func(c *Config) { c.SIP.Listen = []string{"udp:127.0.0.1:5060", "udp:127.0.0.1:5060"} }, "sip.listen[1]", "twice"},
		{"listen dup spelled", func(c *Config) { c.SIP.Listen = []string{"udp:[::ffff:127.0.0.1]:5060", "UDP:127.0.0.1:5060"} }, "sip.listen[1]", "twice"},
		{"listen wildcard clash", func(c *Config) { c.SIP.Listen = []string{"udp:127.0.0.1:5060", "udp:0.0.0.0:5060"} }, "sip.listen[1]", "conflicts"},
		{"listen same port other transport", func(c *Config) { c.SIP.Listen = []string{"udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"} }, "", ""},
		{"advertise wildcard", func(c *Config) { c.SIP.Advertise = "0.0.0.0" }, "sip.advertise", "cannot be reached"},
		{"advertise name", func(c *Config) { c.SIP.Advertise = "pbx.branch.example" }, "", ""},
		{"advertise bad", func(c *Config) { c.SIP.Advertise = "not a host" }, "sip.advertise", "neither"},
		{"rtp missing", func(c *Config) { c.SIP.RTPPorts = "" }, "sip.rtp_ports", "missing"},
		{"rtp syntax", func(c *Config) { c.SIP.RTPPorts = "20000" }, "sip.rtp_ports", "low-high"},
		{"rtp odd", func(c *Config) { c.SIP.RTPPorts = "20001-20999" }, "sip.rtp_ports", "even"},
		{"rtp low", func(c *Config) { c.SIP.RTPPorts = "1000-2000" }, "sip.rtp_ports", "below 1024"},
		{"rtp high", func(c *Config) { c.SIP.RTPPorts = "60000-70000" }, "sip.rtp_ports", "above 65535"},
		{"rtp reversed", func(c *Config) { c.SIP.RTPPorts = "20000-10000" }, "sip.rtp_ports", "not below"},
		{"rtp small", func(c *Config) { c.SIP.RTPPorts = "20000-20002" }, "sip.rtp_ports", "fewer than 4"},
		{"rtp smallest", func(c *Config) { c.SIP.RTPPorts = "20000-20003" }, "", ""},
		{"rtp holds sip", func(c *Config) { c.SIP.RTPPorts = "5000-5999" }, "sip.rtp_ports", "contains the SIP port"},
		{"realm quote", func(c *Config) { c.SIP.Realm = `a"b` }, "sip.realm", "quotes"},
		{"min expires low", func(c *Config) { c.SIP.MinExpires = Duration(9 * time.Second) }, "sip.min_expires", "outside"},
		{"min expires floor", func(c *Config) { c.SIP.MinExpires = Duration(10 * time.Second) }, "", ""},
		{"negative", func(c *Config) { c.SIP.RingTimeout = Duration(-time.Second) }, "sip.ring_timeout", "outside"},
		{"min above default", func(c *Config) { c.SIP.MinExpires = Duration(20 * time.Minute) }, "sip.min_expires", "above default_expires 10m (the default)"},
		{"default above max", func(c *Config) { c.SIP.DefaultExpires = Duration(2 * time.Hour) }, "sip.default_expires", "above max_expires 1h (the default)"},
		{"max below default", func(c *Config) { c.SIP.MaxExpires = Duration(5 * time.Minute) }, "sip.max_expires", "default_expires 10m is above"},
		{"max too high", func(c *Config) { c.SIP.MaxExpires = Duration(25 * time.Hour) }, "sip.max_expires", "outside"},
		{"ring low", func(c *Config) { c.SIP.RingTimeout = Duration(4 * time.Second) }, "sip.ring_timeout", "outside 5s..10m"},
		{"ring high", func(c *Config) { c.SIP.RingTimeout = Duration(11 * time.Minute) }, "sip.ring_timeout", "outside"},
		{"ring edges", func(c *Config) { c.SIP.RingTimeout = Duration(10 * time.Minute) }, "", ""},
		{"nonce low", func(c *Config) { c.SIP.NonceLifetime = Duration(29 * time.Second) }, "sip.nonce_lifetime", "outside 30s..1h"},
		{"nonce high", func(c *Config) { c.SIP.NonceLifetime = Duration(61 * time.Minute) }, "sip.nonce_lifetime", "outside"},
		{"codecs any case", func(c *Config) { c.SIP.Codecs = []string{"pcma", "OPUS", "Telephone-Event"} }, "", ""},
		{"codec unknown", func(c *Config) { c.SIP.Codecs = []string{"PCMU", "AMR"} }, "sip.codecs[1]", "unknown codec"},
		{"codec twice", func(c *Config) { c.SIP.Codecs = []string{"PCMU", "pcmu"} }, "sip.codecs[1]", "twice"},
		{"codec no audio", func(c *Config) { c.SIP.Codecs = []string{"telephone-event"} }, "sip.codecs", "no audio"},
		{"number missing", func(c *Config) { c.Extensions[0].Number = "" }, "extensions[0].number", "missing"},
		{"number short", func(c *Config) { c.Extensions[0].Number = "1" }, "extensions[0].number", "2 to 8 digits"},
		{"number long", func(c *Config) { c.Extensions[0].Number = "123456789" }, "extensions[0].number", "2 to 8 digits"},
		{"number letters", func(c *Config) { c.Extensions[0].Number = "1a" }, "extensions[0].number", "2 to 8 digits"},
		{"number dup", func(c *Config) { c.Extensions[1].Number = "100" }, "extensions[1].number", "also extensions[0]"},
		{"name control", func(c *Config) { c.Extensions[0].Name = "a\nb" }, "extensions[0].name", "control"},
		{"name long", func(c *Config) { c.Extensions[0].Name = strings.Repeat("x", 65) }, "extensions[0].name", "longer"},
		{"secret missing", func(c *Config) { c.Extensions[0].Secret = "" }, "extensions[0].secret", "missing"},
		{"secret short", func(c *Config) { c.Extensions[0].Secret = "Ab3#xyz" }, "extensions[0].secret", "shorter than 8"},
		{"secret long", func(c *Config) { c.Extensions[0].Secret = strings.Repeat("ab", 65) }, "extensions[0].secret", "longer"},
		{"secret is number", func(c *Config) { c.Extensions[0].Number = "12345678"; c.Extensions[0].Secret = "12345678" }, "extensions[0].secret", "extension number"},
		{"secret repeats number", func(c *Config) { c.Extensions[0].Secret = "100100100" }, "extensions[0].secret", "extension number"},
		{"secret password", func(c *Config) { c.Extensions[0].Secret = "Password" }, "extensions[0].secret", "easy to guess"},
		{"secret 12345678", func(c *Config) { c.Extensions[0].Secret = "12345678" }, "extensions[0].secret", "easy to guess"},
		{"secret run", func(c *Config) { c.Extensions[0].Secret = "987654321" }, "extensions[0].secret", "easy to guess"},
		{"secret one char", func(c *Config) { c.Extensions[0].Secret = "zzzzzzzzzz" }, "extensions[0].secret", "easy to guess"},
		{"secret fine", func(c *Config) { c.Extensions[0].Secret = "corr3ct-h0rse" }, "", ""},
		{"max contacts", func(c *Config) { c.Extensions[0].MaxContacts = 21 }, "extensions[0].max_contacts", "0..20"},
		{"max contacts negative", func(c *Config) { c.Extensions[0].MaxContacts = -1 }, "extensions[0].max_contacts", "0..20"},
		{"max contacts top", func(c *Config) { c.Extensions[0].MaxContacts = 20 }, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.change(c)
			err := c.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Validate = %v, want *Error naming %s", err, tt.field)
			}
			for _, p := range ce.Problems {
				if p.Field == tt.field && strings.Contains(p.Msg, tt.msg) {
					if p.Line != 0 || p.File != "" {
						t.Errorf("config built in code got position %s:%d", p.File, p.Line)
					}
					return
				}
			}
			t.Errorf("Validate =\n%v\nwant a problem at %s containing %q", err, tt.field, tt.msg)
		})
	}
}

// TestValidateLines checks that a problem with a field missing from the
// file points at the nearest enclosing field that is there.
func TestValidateLines(t *testing.T) {
	src := "node:\n  name: a\nsip:\n  listen: [udp:127.0.0.1:5060]\n  rtp_ports: 20000-20999\nextensions:\n  - number: \"100\"\n    name: x\n"
	c, err := Parse("c.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Problems) != 1 {
		t.Fatalf("Validate = %v, want one problem", err)
	}
	if p := ce.Problems[0]; p.Line != 7 || p.Field != "extensions[0].secret" {
		t.Errorf("problem %+v, want line 7 extensions[0].secret", p)
	}
	// WithDefaults keeps the positions.
	if err := c.WithDefaults().Validate(); err == nil || !strings.HasPrefix(err.Error(), "c.yaml:7: ") {
		t.Errorf("WithDefaults().Validate() = %v, want it at c.yaml:7", err)
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"90s", 90 * time.Second, false},
		{"10m", 10 * time.Minute, false},
		{"1h30m", 90 * time.Minute, false},
		{"90", 90 * time.Second, false},
		{"0", 0, false},
		{"1_000", 1000 * time.Second, false},
		{`"90"`, 0, true}, // a quoted number is text without a unit
		{"1.5", 0, true},
		{"soon", 0, true},
		{"99999999999999", 0, true},
		{"[1]", 0, true},
	}
	for _, tt := range tests {
		var v struct {
			D Duration `yaml:"d"`
		}
		c, err := Parse("t", []byte("node:\n  name: a\nsip:\n  ring_timeout: "+tt.in+"\n"))
		if tt.err {
			if err == nil || !strings.Contains(err.Error(), "sip.ring_timeout") {
				t.Errorf("%s: err = %v, want an error naming sip.ring_timeout", tt.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		v.D = c.SIP.RingTimeout
		if v.D.D() != tt.want {
			t.Errorf("%s: got %v, want %v", tt.in, v.D.D(), tt.want)
		}
	}
}

func TestDurationString(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{90 * time.Second, "1m30s"},
		{10 * time.Minute, "10m"},
		{time.Hour, "1h"},
		{90 * time.Minute, "1h30m"},
		{time.Hour + time.Second, "1h0m1s"},
		{1500 * time.Millisecond, "1.5s"},
	}
	for _, tt := range tests {
		if got := Duration(tt.d).String(); got != tt.want {
			t.Errorf("Duration(%v).String() = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	full, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	odd := valid()
	odd.Extensions[0].Name = "Line 1\u00a0\"quoted\": yes # no comment"
	odd.Extensions[1].Number = "0100"
	odd.Extensions[1].Secret = "1e10abcdef"
	odd.SIP.Realm = "true"
	odd.SIP.MinExpires = Duration(1500 * time.Millisecond)
	for name, c := range map[string]*Config{"full": full, "starter": Starter(nil), "odd": odd, "defaults": full.WithDefaults(), "empty": {}} {
		data, err := Marshal(c)
		if err != nil {
			t.Fatalf("%s: Marshal: %v", name, err)
		}
		back, err := Parse(name, data)
		if err != nil {
			t.Fatalf("%s: Parse(Marshal): %v\n%s", name, err, data)
		}
		if !reflect.DeepEqual(stripSrc(back), stripSrc(c)) {
			t.Errorf("%s: round trip changed the config:\n%+v\n%+v\nYAML:\n%s", name, stripSrc(back), stripSrc(c), data)
		}
	}
}

func TestEqual(t *testing.T) {
	parsed, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	built := stripSrc(parsed)
	if !parsed.Equal(built) || !built.Equal(parsed) {
		t.Error("a parsed config differs from the same config built in code")
	}
	other := stripSrc(parsed)
	other.Extensions = slices.Clone(other.Extensions)
	other.Extensions[2].Secret += "x"
	if parsed.Equal(other) {
		t.Error("configs with different secrets are Equal")
	}
	var none *Config
	if none.Equal(parsed) || !none.Equal(nil) {
		t.Error("nil handling of Equal")
	}
	if err := none.Validate(); err == nil {
		t.Error("nil config validates")
	}
}

func TestWithDefaults(t *testing.T) {
	c := valid()
	c.Extensions[1].MaxContacts = 2
	d := c.WithDefaults()
	want := SIP{
		Listen: c.SIP.Listen, RTPPorts: c.SIP.RTPPorts, Realm: "a",
		MinExpires: Duration(time.Minute), DefaultExpires: Duration(10 * time.Minute), MaxExpires: Duration(time.Hour),
		RingTimeout: Duration(time.Minute), NonceLifetime: Duration(5 * time.Minute),
	}
	if !reflect.DeepEqual(d.SIP, want) {
		t.Errorf("SIP = %+v, want %+v", d.SIP, want)
	}
	if d.Extensions[0].MaxContacts != 5 || d.Extensions[1].MaxContacts != 2 {
		t.Errorf("max_contacts = %d, %d, want 5, 2", d.Extensions[0].MaxContacts, d.Extensions[1].MaxContacts)
	}
	// The original is untouched and shares no slices with the copy.
	if c.Extensions[0].MaxContacts != 0 || c.SIP.Realm != "" {
		t.Error("WithDefaults changed its receiver")
	}
	d.SIP.Listen[0] = "changed"
	if c.SIP.Listen[0] == "changed" {
		t.Error("WithDefaults shares the listen slice")
	}
	// Set values win.
	c.SIP.Realm, c.SIP.RingTimeout = "r", Duration(time.Second*7)
	if d := c.WithDefaults(); d.SIP.Realm != "r" || d.SIP.RingTimeout.D() != 7*time.Second {
		t.Errorf("WithDefaults overrode set values: %+v", d.SIP)
	}
}

type failReader struct{}

func (failReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

type constReader byte

func (c constReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c)
	}
	return len(p), nil
}

func TestStarter(t *testing.T) {
	for name, r := range map[string]io.Reader{"crypto": nil, "failing": failReader{}, "skewed": constReader(0xff)} {
		c := Starter(r)
		if err := c.Validate(); err != nil {
			t.Errorf("%s: starter config invalid: %v", name, err)
		}
		if c.Node.Name != "a" || len(c.Extensions) != 5 || c.Extensions[0].Number != "100" || c.Extensions[4].Name != "Extension 104" {
			t.Errorf("%s: unexpected starter config %+v", name, c)
		}
		seen := map[string]bool{}
		for _, e := range c.Extensions {
			if len(e.Secret) != SecretLen || strings.Trim(e.Secret, secretAlphabet) != "" {
				t.Errorf("%s: secret %q not %d characters of the alphabet", name, e.Secret, SecretLen)
			}
			if seen[e.Secret] {
				t.Errorf("%s: secret %q given twice", name, e.Secret)
			}
			seen[e.Secret] = true
		}
	}
	// The reader decides the secrets: the same bytes give the same config.
	a, b := Starter(bytes.NewReader(bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 100))), Starter(bytes.NewReader(bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 100)))
	if !reflect.DeepEqual(a, b) {
		t.Error("Starter is not determined by its reader")
	}
	if strings.ContainsAny(secretAlphabet, "0O1lI") {
		t.Error("secret alphabet has look-alike characters")
	}
}

func FuzzParse(f *testing.F) {
	for _, g := range []string{"testdata/full.yaml", "testdata/bad/*.yaml"} {
		files, _ := filepath.Glob(g)
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("node: {name: a}\nsip: {listen: [\"udp:[::1]:5060\"], rtp_ports: 1024-1027, min_expires: 10}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("error %T without problems: %v", err, err)
			}
			return
		}
		_ = c.Validate()
		_ = c.WithDefaults().Validate()
		out, err := Marshal(c)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		back, err := Parse("f.yaml", out)
		if err != nil {
			t.Fatalf("Parse(Marshal(c)): %v\n%s", err, out)
		}
		if !reflect.DeepEqual(stripSrc(back), stripSrc(c)) {
			t.Fatalf("round trip changed the config:\n%#v\n%#v\n%s", stripSrc(back), stripSrc(c), out)
		}
	})
}
