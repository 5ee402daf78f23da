package bench

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var quickRun = flag.Bool("bench.quickrun", false, "run the harness briefly against kamailio")

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/install-deps.sh test bench)", tool)
		}
	}
}

// TestScriptsSyntax: the benchmark scripts and the helpers they share
// parse.
func TestScriptsSyntax(t *testing.T) {
	need(t, "bash")
	for _, f := range []string{"run.sh", "dispatch.sh", "regpair.sh", "startup.sh", "lib.sh", filepath.Join("failover", "run.sh")} {
		if out, err := exec.Command("bash", "-n", f).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", f, err, out)
		}
	}
}

func TestKamailioConfigsParse(t *testing.T) {
	need(t, "kamailio")
	for _, cfg := range []string{"registrar.cfg", "proxy.cfg"} {
		t.Run(cfg, func(t *testing.T) {
			// -c only checks the config; the listener keeps it off the
			// machine's real addresses.
			out, err := exec.Command("kamailio", "-c", "-f", filepath.Join("kamailio", cfg),
				"-l", "udp:127.0.0.1:25999").CombinedOutput()
			if err != nil || !bytes.Contains(out, []byte("config file ok")) {
				t.Fatalf("kamailio -c %s: %v\n%s", cfg, err, out)
			}
		})
	}
}

// scenario is the part of a sipp scenario the checks below look at.
type scenario struct {
	Steps []struct {
		XMLName  xml.Name
		Request  string `xml:"request,attr"`
		Response string `xml:"response,attr"`
		Auth     string `xml:"auth,attr"`
		Body     string `xml:",chardata"`
	} `xml:",any"`
}

var callID = regexp.MustCompile(`(?m)^\s*Call-ID:\s*(.*)$`)

func TestSippScenarios(t *testing.T) {
	tests := []struct {
		file string
		// client scenarios write their own Call-ID; a server copies it.
		client bool
		// the response codes that must be expected, in order.
		responses []string
	}{
		{"register.xml", true, []string{"401", "200"}},
		{"uac_call.xml", true, []string{"100", "407", "100", "180", "183", "200", "180", "200"}},
		{"uas_call.xml", false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("sipp", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			// sipp's DTD is not shipped with the scenarios.
			dec := xml.NewDecoder(bytes.NewReader(raw))
			dec.Strict = true
			dec.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
			var sc scenario
			if err := dec.Decode(&sc); err != nil {
				t.Fatalf("%s is not well-formed: %v", tt.file, err)
			}
			var responses []string
			sends := 0
			for _, s := range sc.Steps {
				switch s.XMLName.Local {
				case "recv":
					if s.Response != "" {
						responses = append(responses, s.Response)
					}
				case "send":
					sends++
					body := strings.TrimLeft(s.Body, " \t\n")
					if strings.HasPrefix(body, "SIP/2.0") {
						continue
					}
					// sipp discards replies unless a request's Call-ID is
					// exactly [call_id].
					m := callID.FindStringSubmatch(body)
					if tt.client && (m == nil || strings.TrimSpace(m[1]) != "[call_id]") {
						t.Errorf("request %q: Call-ID %q, want [call_id]", firstLine(body), m)
					}
				}
			}
			if sends == 0 {
				t.Errorf("no send step")
			}
			if tt.responses != nil && strings.Join(responses, " ") != strings.Join(tt.responses, " ") {
				t.Errorf("expected responses %v, want %v", responses, tt.responses)
			}
		})
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}

// TestQuickRunAgainstKamailio runs the harness end to end against the
// reference alone, briefly: it proves the scripts, configs and scenarios
// work together (figures from it mean nothing).
func TestQuickRunAgainstKamailio(t *testing.T) {
	// A benchmark run, however brief, stays out of the test command: it
	// loads both cores for a minute and shares sipp's ports with the e2e
	// tests. Run it after changing the harness.
	if !*quickRun {
		t.Skip("benchmark harness run: enable with go test ./bench -run QuickRun -args -bench.quickrun")
	}
	need(t, "bash", "kamailio", "sipp", "taskset", "ss")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	report := filepath.Join(t.TempDir(), "report.md")
	cmd := exec.CommandContext(ctx, "bash", "run.sh", "--quick", "--out", report)
	cmd.Env = append(os.Environ(), "SERVERS=kamailio", "LOAD_MAX=1000", "BASE_PORT=25160",
		"HELD_CALLS=20", "REG_RATES=200", "CALL_RATES=50", "REG_FIXED=200", "CALL_FIXED=50")
	// run.sh stops what it started on SIGTERM; the context sends it.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 20 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) || ctx.Err() != nil {
			t.Fatalf("run.sh: %v\n%s", err, stderr.String())
		}
		t.Fatal(err)
	}
	out, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| CPU µs per REGISTER at 200/s | ",
		"| kamailio | 200 |",
		"| kamailio | 50 |",
		"| memory per held call (KiB) |",
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	// At 200 REGISTER/s kamailio is clean even on a busy machine.
	if !regexp.MustCompile(`\| highest clean rate \(/s\) \| 200 \|`).Match(out) {
		t.Errorf("kamailio not clean at 200 REGISTER/s:\n%s\n%s", out, stderr.String())
	}
}
