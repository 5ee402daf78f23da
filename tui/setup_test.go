package tui

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"

	"github.com/twinpbx/twinpbx/firmware/cluster/pairing"
	"github.com/twinpbx/twinpbx/firmware/config"
)

// testCode is a valid pairing code for box B's tests.
var testCode = func() string {
	c, err := pairing.NewPairingKey(strings.NewReader(strings.Repeat("\x42", 64)))
	if err != nil {
		panic(err)
	}
	return c
}()

func testOptions() Options {
	return Options{
		Lang: English,
		// 10.0.0.99 never answers; every other gateway does.
		GatewayAnswers: func(_ context.Context, a netip.Addr) bool { return a != netip.MustParseAddr("10.0.0.99") },
	}
}

func key(s string) tea.KeyMsg {
	switch s {
	case "enter":
		return tea.KeyMsg{Type: tea.KeyEnter}
	case "esc":
		return tea.KeyMsg{Type: tea.KeyEsc}
	case "down":
		return tea.KeyMsg{Type: tea.KeyDown}
	case "backspace":
		return tea.KeyMsg{Type: tea.KeyBackspace}
	}
	return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(s)}
}

func send(t *testing.T, m SetupModel, keys ...string) SetupModel {
	t.Helper()
	for _, k := range keys {
		nm, cmd := m.Update(key(k))
		m = nm.(SetupModel)
		if cmd != nil {
			if msg := cmd(); msg != nil {
				if _, quit := msg.(tea.QuitMsg); !quit {
					nm, _ = m.Update(msg)
					m = nm.(SetupModel)
				}
			}
		}
	}
	return m
}

// answer types a (a digit picks a choice, "" keeps the default) and
// presses Enter.
func answer(t *testing.T, m SetupModel, answers ...string) SetupModel {
	t.Helper()
	for _, a := range answers {
		if a != "" {
			m = send(t, m, a)
		}
		m = send(t, m, "enter")
	}
	return m
}

func view(m SetupModel) string { return ansi.Strip(m.View()) }

// The answers of a standalone box, a box A and a box B, up to the PIN.
var (
	singleLAN = []string{"", "1", "pbx", "1", "10.0.0.21/24", "10.0.0.1", ""}
	twinALAN  = []string{"", "2", "", "eth0", "10.0.0.21/24", "10.0.0.1", "", "", "10.0.0.22", "10.0.0.10", "", ""}
	twinBLAN  = []string{"", "3", "", "eth0", "10.0.0.22/24", "10.0.0.1", "", "", "10.0.0.21", "10.0.0.10", "", ""}
	rest      = []string{"480613", "480613", "Europe/Berlin", "", "100-103"}
)

func TestWizardPages(t *testing.T) {
	for _, tc := range []struct {
		name string
		lang string
		// answers before the page, and what the page shows
		before []string
		want   []string
	}{
		{"language", "", nil, []string{"Step 1 of", "Language", "Console language:", "> 1. English", "2. Deutsch"}},
		{"role", "", []string{""}, []string{"This box", "Which box is this?", "Box A of a twin pair", "Box B of a twin pair"}},
		{"name", "", []string{"", ""}, []string{"Host name", "Host name of this box:", "(Enter alone keeps: pbx)"}},
		{"name of A", "", []string{"", "2"}, []string{"(Enter alone keeps: a)"}},
		{"interface", "", []string{"", "2", ""}, []string{"LAN", "Network interface of the office LAN:", "eth0"}},
		{"lan mode", "", []string{"", "", ""}, []string{"How does this box get its LAN address?", "Static address", "DHCP"}},
		{"address", "", singleLAN[:4], []string{"LAN address of this box with prefix:", "192.168.1.21/24"}},
		{"gateway", "", singleLAN[:5], []string{"Gateway (the office router):", "(Enter alone keeps: 10.0.0.1)"}},
		{"dns", "", singleLAN[:6], []string{"DNS servers", "(Enter alone keeps: 10.0.0.1)"}},
		{"twin name", "", twinALAN[:7], []string{"Virtual address", "Host name of the twin:", "keeps: b"}},
		{"twin address", "", twinALAN[:8], []string{"LAN address of the twin:"}},
		{"vip", "", twinALAN[:9], []string{"Virtual address the phones use:", "third address in the LAN"}},
		{"crossover", "", twinALAN[:10], []string{"Crossover cable", "Crossover address of this box:", "keeps: 10.99.0.1"}},
		{"crossover twin", "", twinALAN[:11], []string{"Crossover address of the twin:", "keeps: 10.99.0.2"}},
		{"pairing code shown", "", twinALAN, []string{"Pairing", "Pairing code of this pair:", "Write it down now"}},
		{"pairing code typed", "", twinBLAN, []string{"Pairing code shown on box A:", "25 characters"}},
		{"pin", "", singleLAN, []string{"Admin PIN", "Admin PIN for this console:", "At least 6 digits"}},
		{"pin again", "", append(append([]string{}, singleLAN...), "480613"), []string{"The same PIN again:", "> _"}},
		{"time zone", "", append(append([]string{}, singleLAN...), rest[:2]...), []string{"Time zone:", "keeps: UTC"}},
		{"ntp", "", append(append([]string{}, singleLAN...), rest[:3]...), []string{"Time servers", "pool.ntp.org"}},
		{"extensions", "", append(append([]string{}, singleLAN...), rest[:4]...), []string{"Extensions", "Extension numbers:", "keeps: 200-219", "Not 110 or 112"}},
		{"secrets", "", append(append([]string{}, singleLAN...), rest...), []string{"SIP passwords of the extensions (shown only now):", "100 ", "103 ", "Save them as extensions.csv"}},
		{"trunk", "", append(append(append([]string{}, singleLAN...), rest...), ""), []string{"PSTN trunk", "ISDN BRI, point-to-point", "point-to-multipoint", "PRI / E1", "SIP trunk"}},
		{"msns", "", append(append(append([]string{}, singleLAN...), rest...), "", "3"), []string{"MSNs of the line"}},
		{"ddi", "", append(append(append([]string{}, singleLAN...), rest...), "", "4"), []string{"Direct-dial-in range:", "200-299"}},
		{"registrar", "", append(append(append([]string{}, singleLAN...), rest...), "", "5"), []string{"Provider's registrar:"}},
		{"trunk user", "", append(append(append([]string{}, singleLAN...), rest...), "", "5", "sip.example.net"), []string{"User name at the provider:"}},
		{"trunk password", "", append(append(append([]string{}, singleLAN...), rest...), "", "5", "sip.example.net", "u1"), []string{"Password at the provider:"}},
		{"emergency", "", append(append(append([]string{}, singleLAN...), rest...), "", ""), []string{"Emergency numbers", "keeps: 110, 112"}},
		{"review", "", append(append(append([]string{}, singleLAN...), rest...), "", "", ""), []string{
			"Review", "Please check before applying:", "A single box (no twin)", "10.0.0.21/24, gateway 10.0.0.1",
			"set (stored hashed)", "Europe/Berlin, NTP pool.ntp.org", "4 (100-103)", "None", "110, 112", "Enter: apply"}},
		{"german", "", []string{"2"}, []string{"Diese Box", "Welche Box ist das?", "Eine einzelne Box", "Enter: weiter"}},
		{"german flag", "de", nil, []string{"Schritt 1 von", "Sprache der Konsole:", "> 2. Deutsch"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions()
			if tc.lang != "" {
				o.Lang = Lang(tc.lang)
			}
			m := answer(t, NewSetupModel(context.Background(), NewWizard(o)), tc.before...)
			v := view(m)
			for _, w := range tc.want {
				if !strings.Contains(v, w) {
					t.Errorf("page does not show %q:\n%s", w, v)
				}
			}
			if m.err != "" {
				t.Errorf("unexpected error %q", m.err)
			}
			for i, l := range strings.Split(v, "\n") {
				if n := len([]rune(l)); n > 80 {
					t.Errorf("line %d is %d columns: %q", i+1, n, l)
				}
				if i >= 24 {
					t.Errorf("page is longer than 24 lines:\n%s", v)
					break
				}
			}
		})
	}
}

func TestWizardValidation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before []string
		input  string
		want   string
	}{
		{"name", []string{"", ""}, "Box_1", `"Box_1": use lower-case letters`},
		{"interface", []string{"", "2", ""}, "eth 0", `"eth 0" is not an interface name`},
		{"address", singleLAN[:4], "10.0.0.21", `"10.0.0.21" is not an address with prefix`},
		{"network address", singleLAN[:4], "10.0.0.0/24", "10.0.0.0/24 is the network itself"},
		{"gateway not in subnet", singleLAN[:5], "10.0.1.1", "10.0.1.1 is not in this box's subnet 10.0.0.0/24."},
		{"gateway is self", singleLAN[:5], "10.0.0.21", "10.0.0.21 is this box's own address."},
		{"gateway not an address", singleLAN[:5], "router", `"router" is not an IP address.`},
		{"dns", singleLAN[:6], "10.0.0.1, dns.example", `"dns.example" is not an IP address.`},
		{"twin same name", twinALAN[:7], "a", `The twin needs a name of its own, not "a".`},
		{"twin not in subnet", twinALAN[:8], "10.1.0.22", "10.1.0.22 is not in this box's subnet 10.0.0.0/24."},
		{"vip equal to node", twinALAN[:9], "10.0.0.21", "10.0.0.21 is a box's own address; the virtual address must be a third"},
		{"vip equal to twin", twinALAN[:9], "10.0.0.22", "10.0.0.22 is a box's own address"},
		{"vip equal to gateway", twinALAN[:9], "10.0.0.1", "10.0.0.1 is the gateway's address."},
		{"vip not in subnet", twinALAN[:9], "192.168.5.5", "192.168.5.5 is not in this box's subnet"},
		{"crossover in lan", twinALAN[:10], "10.0.0.50", "10.0.0.50 is in the LAN 10.0.0.0/24"},
		{"crossover same", twinALAN[:11], "10.99.0.1", "Both ends of the crossover cable need different addresses."},
		{"crossover other net", twinALAN[:11], "10.98.0.2", "10.98.0.2 is not in the same /24"},
		{"pairing typo", twinBLAN, typo(testCode), "it has a typo"},
		{"pairing length", twinBLAN, "ABCDE-FGHJK", "a pairing code has 25"},
		{"pairing letter", twinBLAN, "ABCDU", `'U' at position 5 is not a pairing code character`},
		{"pin empty", singleLAN, "", "Please enter a PIN."},
		{"pin short", singleLAN, "48061", "The PIN needs at least 6 digits."},
		{"pin letters", singleLAN, "48061x", "The PIN is digits only."},
		{"pin trivial", singleLAN, "123456", "This PIN is too easy to guess"},
		{"pin zeros", singleLAN, "000000", "This PIN is too easy to guess"},
		{"pin mismatch", append(append([]string{}, singleLAN...), "480613"), "480614", "The two PINs differ"},
		{"time zone", append(append([]string{}, singleLAN...), rest[:2]...), "Mars/Base", `"Mars/Base" is not a time zone`},
		{"ntp", append(append([]string{}, singleLAN...), rest[:3]...), "ntp..example", `"ntp..example" is neither an IP address nor a host name.`},
		{"duplicate extension", append(append([]string{}, singleLAN...), rest[:4]...), "100-110, 105", "Extension 105 is listed twice."},
		{"extension syntax", append(append([]string{}, singleLAN...), rest[:4]...), "1x0", `"1x0" is not a number or a range`},
		{"extension digits", append(append([]string{}, singleLAN...), rest[:4]...), "1", `"1": extension numbers have 2 to 8 digits.`},
		{"extension order", append(append([]string{}, singleLAN...), rest[:4]...), "119-100", `"119-100": the first number is above the last.`},
		{"too many extensions", append(append([]string{}, singleLAN...), rest[:4]...), "1000-9999", "9000 extensions: at most 1000 at once."},
		{"msns", append(append(append([]string{}, singleLAN...), rest...), "", "3"), "4930x", `"4930x" is not a number.`},
		{"msns many", append(append(append([]string{}, singleLAN...), rest...), "", "3"), "1,2,3,4,5,6,7,8,9,10,11", "at most 10 MSNs"},
		{"ddi", append(append(append([]string{}, singleLAN...), rest...), "", "4"), "20-299", `"20-299" is not a range like 200-299`},
		{"registrar", append(append(append([]string{}, singleLAN...), rest...), "", "5"), "sip example", `"sip example" is neither`},
		{"emergency is extension", append(append(append([]string{}, singleLAN...), rest...), "", ""), "110, 101", "101 is also an extension"},
		{"emergency twice", append(append(append([]string{}, singleLAN...), rest...), "", ""), "112, 112", "112 is listed twice."},
		{"german pairing typo", append([]string{"2"}, twinBLAN[1:]...), typo(testCode), "Tippfehler"},
		{"german pairing letter", append([]string{"2"}, twinBLAN[1:]...), "ABCDU", "'U' an Stelle 5"},
		{"german pairing length", append([]string{"2"}, twinBLAN[1:]...), "ABCDE", "ein Kopplungscode hat 25 Zeichen"},
		{"german message", []string{"2", ""}, "Box_1", `"Box_1": nur Kleinbuchstaben`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := answer(t, NewSetupModel(context.Background(), NewWizard(testOptions())), tc.before...)
			before := m.idx
			m = answer(t, m, tc.input)
			if m.idx != before {
				t.Fatalf("%q was accepted; now at %q", tc.input, m.w.qs[m.idx].id)
			}
			if v := view(m); !strings.Contains(v, tc.want) {
				t.Errorf("page does not say %q:\n%s", tc.want, v)
			}
		})
	}
}

// typo changes the first character of a pairing code.
func typo(code string) string {
	if code[0] == 'A' {
		return "B" + code[1:]
	}
	return "A" + code[1:]
}

func TestWizardGatewayWarning(t *testing.T) {
	m := answer(t, NewSetupModel(context.Background(), NewWizard(testOptions())), "", "", "", "", "10.0.0.21/24")
	m = answer(t, m, "10.0.0.99")
	if v := view(m); !strings.Contains(v, "Warning: the gateway 10.0.0.99 did not answer.") || !strings.Contains(v, "Press Enter again") {
		t.Fatalf("no warning:\n%s", v)
	}
	if m.w.qs[m.idx].id != "gateway" {
		t.Fatal("the warning did not stop at the gateway")
	}
	m = send(t, m, "enter")
	if m.w.qs[m.idx].id != "dns" || m.w.get("gateway") != "10.0.0.99" {
		t.Errorf("Enter again did not keep the gateway: at %s, gateway %q", m.w.qs[m.idx].id, m.w.get("gateway"))
	}
}

func TestWizardBack(t *testing.T) {
	m := answer(t, NewSetupModel(context.Background(), NewWizard(testOptions())), "", "2", "")
	if got := m.w.qs[m.idx].id; got != "iface" {
		t.Fatalf("at %s, want iface", got)
	}
	m = send(t, m, "esc")
	if got := m.w.qs[m.idx].id; got != "name" || !strings.Contains(view(m), "> a_") {
		t.Fatalf("Esc went to %s:\n%s", got, view(m))
	}
	m = send(t, m, "esc", "esc", "down", "enter")
	if got := m.w.get("lang"); got != "de" || !strings.Contains(view(m), "Welche Box") {
		t.Errorf("language %q after going back to it:\n%s", got, view(m))
	}
}

// finish answers the wizard to its end and applies.
func finish(t *testing.T, o Options, answers ...string) (SetupModel, Result) {
	t.Helper()
	var got Result
	o.Apply = func(_ context.Context, r Result) (string, error) { got = r; return "stored", nil }
	m := answer(t, NewSetupModel(context.Background(), NewWizard(o)), answers...)
	if !m.Done() || m.Failed() {
		t.Fatalf("wizard not done (at %q, error %q):\n%s", m.w.qs[min(m.idx, len(m.w.qs)-1)].id, m.err, view(m))
	}
	if err := got.Config.Validate(); err != nil {
		t.Fatal(err)
	}
	parsed, err := config.Parse("result", got.YAML)
	if err != nil {
		t.Fatal(err)
	}
	if err := parsed.Validate(); err != nil {
		t.Fatal(err)
	}
	return m, got
}

func TestWizardSingleConfig(t *testing.T) {
	answers := append(append(append([]string{}, singleLAN...), rest...), "", "5", "sip.example.net:5070", "u1", "pw-1", "110,112", "")
	m, r := finish(t, testOptions(), answers...)
	c := r.Config
	if !strings.Contains(view(m), "stored") {
		t.Errorf("done page:\n%s", view(m))
	}
	if c.Node.Name != "pbx" || c.Cluster != nil || r.Twin || !r.ExportCSV {
		t.Errorf("node %+v cluster %v twin %v csv %v", c.Node, c.Cluster, r.Twin, r.ExportCSV)
	}
	if n := c.Node.Network; n == nil || n.Address != "10.0.0.21/24" || n.Gateway != "10.0.0.1" || strings.Join(n.DNS, ",") != "10.0.0.1" {
		t.Errorf("network %+v", c.Node.Network)
	}
	if strings.Join(c.SIP.Listen, " ") != "udp:10.0.0.21:5060 tcp:10.0.0.21:5060" {
		t.Errorf("listen %v", c.SIP.Listen)
	}
	if len(c.Extensions) != 4 || c.Extensions[3].Number != "103" || len(c.Extensions[0].Secret) != config.SecretLen {
		t.Errorf("extensions %+v", c.Extensions)
	}
	co := c.Console
	if !config.CheckPIN(co.AdminPIN, "480613") || strings.Contains(string(r.YAML), "480613") {
		t.Errorf("PIN not stored hashed: %q", co.AdminPIN)
	}
	if co.TimeZone != "Europe/Berlin" || strings.Join(co.Emergency, ",") != "110,112" || strings.Join(co.NTP, ",") != "pool.ntp.org" {
		t.Errorf("console %+v", co)
	}
	if tr := co.Trunk; tr == nil || tr.Type != "sip" || tr.Registrar != "sip.example.net:5070" || tr.User != "u1" || tr.Password != "pw-1" {
		t.Errorf("trunk %+v", co.Trunk)
	}
}

func TestWizardTwinConfigs(t *testing.T) {
	o := testOptions()
	w := NewWizard(o)
	// Box A shows the code; box B types it, in lower case with spaces.
	ma, ra := finish(t, o, append(append(append(append([]string{}, twinALAN...), ""), rest...), "2", "4", "200-299", "", "")...)
	code := ra.Config.Cluster.PairingKey
	if _, err := pairing.Normalize(code); err != nil || !ra.BoxA {
		t.Fatalf("box A's key %q: %v", code, err)
	}
	_ = ma
	_ = w
	typed := strings.ToLower(strings.ReplaceAll(code, "-", " "))
	_, rb := finish(t, o, append(append(append(append([]string{}, twinBLAN...), typed), rest...), "2", "", "", "")...)
	a, b := ra.Config.Cluster, rb.Config.Cluster
	if a.PairingKey != b.PairingKey {
		t.Errorf("keys differ: %q and %q", a.PairingKey, b.PairingKey)
	}
	if a.Peer != "b" || b.Peer != "a" || a.LAN.Local != b.LAN.Peer || a.LAN.Peer != b.LAN.Local ||
		a.Crossover.Local != b.Crossover.Peer || a.Crossover.Peer != b.Crossover.Local {
		t.Errorf("the twins do not mirror each other:\nA %+v\nB %+v", a, b)
	}
	if a.VIP != "10.0.0.10/24" || a.Gateway != "10.0.0.1" || a.LANInterface != "eth0" {
		t.Errorf("A %+v", a)
	}
	if strings.Join(ra.Config.SIP.Listen, " ") != "udp:10.0.0.10:5060 tcp:10.0.0.10:5060" {
		t.Errorf("listen %v", ra.Config.SIP.Listen)
	}
	if tr := ra.Config.Console.Trunk; tr == nil || tr.Type != "pri" || tr.DDI != "200-299" {
		t.Errorf("trunk %+v", tr)
	}
	if rb.ExportCSV || rb.BoxA {
		t.Error("box B: csv or box A set")
	}
}

func TestWizardApplyError(t *testing.T) {
	o := testOptions()
	o.Apply = func(context.Context, Result) (string, error) { return "", errTest }
	m := answer(t, NewSetupModel(context.Background(), NewWizard(o)), append(append(append([]string{}, singleLAN...), rest...), "", "", "", "")...)
	if !m.Failed() || !strings.Contains(view(m), "Applying failed: test failure") {
		t.Errorf("apply error not shown:\n%s", view(m))
	}
}

type testError string

func (e testError) Error() string { return string(e) }

const errTest = testError("test failure")

func FuzzExpandNumbers(f *testing.F) {
	for _, s := range []string{"100-119", "100,101,200-205", "1-2", "0100-0199", "9-1", ",,", "100-110,105"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		nums, e := expandNumbers(s)
		if e[0] != "" {
			return
		}
		if len(nums) == 0 || len(nums) > maxExtensions {
			t.Fatalf("%q: %d numbers", s, len(nums))
		}
		seen := map[string]bool{}
		for _, n := range nums {
			if len(n) < 2 || len(n) > 8 || strings.Trim(n, "0123456789") != "" || seen[n] {
				t.Fatalf("%q gave %q", s, n)
			}
			seen[n] = true
		}
	})
}

func TestWizardSecretHidden(t *testing.T) {
	m := answer(t, NewSetupModel(context.Background(), NewWizard(testOptions())), singleLAN...)
	m = send(t, m, "4", "8", "0")
	if v := view(m); !strings.Contains(v, "> ***_") || strings.Contains(v, "480") {
		t.Errorf("the PIN is shown:\n%s", v)
	}
	m = answer(t, m, "613", "480613")
	if m.w.get("pin") != "" || m.w.get("pin2") != "" || !config.CheckPIN(m.w.pinHash, "480613") {
		t.Error("the PIN is kept in plain after hashing")
	}
}
