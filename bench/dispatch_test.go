package bench

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The dispatcher series (dispatch.sh) has its own script, kamailio config
// and caller scenario; these keep them working.

func TestKamailioDispatcherConfigParses(t *testing.T) {
	need(t, "kamailio")
	list := filepath.Join(t.TempDir(), "ds.list")
	if err := os.WriteFile(list, []byte("1 sip:127.0.0.1:25991\n1 sip:127.0.0.1:25992\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, alg := range []string{"0", "4"} {
		out, err := exec.Command("kamailio", "-c", "-f", filepath.Join("kamailio", "dispatcher.cfg"),
			"-l", "udp:127.0.0.1:25999", "-A", `DS_LIST="`+list+`"`, "-A", `DS_ALG="`+alg+`"`).CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("config file ok")) {
			t.Fatalf("kamailio -c dispatcher.cfg (algorithm %s): %v\n%s", alg, err, out)
		}
	}
}

// TestDispatchScenarios: the caller writes [call_id] into every request
// (sipp drops the replies otherwise) and follows the route set; the
// backend scenario it runs against is well-formed.
func TestDispatchScenarios(t *testing.T) {
	for _, tc := range []struct {
		file   string
		client bool
	}{
		{"sipp/dispatch_uac.xml", true},
		{"../e2e/testdata/sipp/dispatch-backend.xml", false},
	} {
		raw, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		dec := xml.NewDecoder(bytes.NewReader(raw))
		dec.Strict = true
		dec.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
		var sc scenario
		if err := dec.Decode(&sc); err != nil {
			t.Fatalf("%s is not well-formed: %v", tc.file, err)
		}
		requests := 0
		for _, s := range sc.Steps {
			body := strings.TrimLeft(s.Body, " \t\n")
			if s.XMLName.Local != "send" || strings.HasPrefix(body, "SIP/2.0") {
				continue
			}
			requests++
			if m := callID.FindStringSubmatch(body); m == nil || strings.TrimSpace(m[1]) != "[call_id]" {
				t.Errorf("%s: request %q: Call-ID %q, want [call_id]", tc.file, firstLine(body), m)
			}
			if !strings.HasPrefix(body, "INVITE sip:[service]") && !strings.Contains(body, "[routes]") {
				t.Errorf("%s: in-dialog request %q does not follow the route set", tc.file, firstLine(body))
			}
		}
		if tc.client != (requests > 0) {
			t.Errorf("%s: %d requests sent", tc.file, requests)
		}
	}
}

// TestQuickDispatchRun runs dispatch.sh briefly against both dispatchers
// (figures from it mean nothing); enabled like TestQuickRunAgainstKamailio.
func TestQuickDispatchRun(t *testing.T) {
	if !*quickRun {
		t.Skip("benchmark harness run: enable with go test ./bench -run QuickDispatch -args -bench.quickrun")
	}
	need(t, "bash", "kamailio", "sipp", "taskset", "ss")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	report := filepath.Join(t.TempDir(), "report.md")
	cmd := exec.CommandContext(ctx, "bash", "dispatch.sh", "--quick", "--out", report)
	cmd.Env = append(os.Environ(), "LOAD_MAX=1000", "BASE_PORT=28160", "RATES=100", "FIXED=100")
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 20 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("dispatch.sh: %v\n%s", err, stderr.String())
	}
	out, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| kamailio | 100 |", "| twinpbx | 100 |", "| highest clean rate (calls/s) | 100 | 100 |"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("report lacks %q:\n%s\n%s", want, out, stderr.String())
		}
	}
}
