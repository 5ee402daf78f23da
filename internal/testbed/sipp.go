package testbed

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
)

// MainWithTwinpbx is the body of a namespace test package's TestMain: it
// builds the twinpbx binary into *binary (a failure goes to *buildErr,
// for the tests that need the binary to report), runs the tests and
// removes the binary. Where namespaces cannot be made it says so loudly
// and runs the tests, each of which then skips through New.
func MainWithTwinpbx(m *testing.M, what string, binary *string, buildErr *error) int {
	if why := Unavailable(); why != "" {
		fmt.Printf("SKIPPING every %s namespace test: %s\n", what, why)
		return m.Run()
	}
	bin, remove, err := BuildTwinpbx("twinpbx-" + strings.ReplaceAll(what, " ", "-") + "-")
	defer remove()
	*binary, *buildErr = bin, err
	return m.Run()
}

// SippScenarios is the folder of the end-to-end tests' sipp scenarios,
// from a test package three levels below the module's root.
var SippScenarios = filepath.Join("..", "..", "..", "e2e", "testdata", "sipp")

// SipPhonePort is the SIP port of the sipp phones in the namespaces.
const SipPhonePort = 5062

// StartSipp runs one sipp call (-m 1, 20 s at most) in node n against
// the SIP server at target (host:port): scenario is a file of
// SippScenarios, service sipp's -s, ext the digest credentials (none when
// its Number is empty). The process is killed when the test ends if it
// still runs.
func (b *Bed) StartSipp(t testing.TB, n Node, target, scenario string, ext config.Extension, service string, extra ...string) *Process {
	t.Helper()
	args := []string{"sipp", "-sf", filepath.Join(SippScenarios, scenario),
		"-i", b.Addr(n).String(), "-mi", b.Addr(n).String(),
		"-p", strconv.Itoa(SipPhonePort), "-mp", "6000",
		"-m", "1", "-nostdin", "-timeout", "20", "-timeout_error",
		"-s", service,
	}
	if ext.Number != "" {
		args = append(args, "-au", ext.Number, "-ap", ext.Secret)
	}
	args = append(args, extra...)
	args = append(args, target)
	p, err := b.Start(n, args...)
	if err != nil {
		t.Fatalf("starting sipp %s: %v", scenario, err)
	}
	t.Cleanup(func() {
		select {
		case <-p.Done():
		default:
			p.Kill()
		}
	})
	return p
}

// WaitSipp waits up to 25 s for a sipp process to end and fails the test
// with the end of its output unless it succeeded.
func WaitSipp(t testing.TB, p *Process, what string) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(25 * time.Second):
		p.Kill()
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("%s: sipp failed: %v\n%s", what, err, SippReport(p.Output()))
	}
}

// SippReport is what of sipp's output explains a failure: the lines
// naming an error (sipp logs them as they happen, long before the final
// screen) and the last 40 lines.
func SippReport(out string) string {
	ls := strings.Split(out, "\n")
	end := max(len(ls)-40, 0)
	var errs []string
	for _, l := range ls[:end] {
		low := strings.ToLower(l)
		if strings.Contains(low, "abort") || strings.Contains(low, "error") || strings.Contains(low, "unexpected") {
			errs = append(errs, l)
		}
	}
	if len(errs) > 10 {
		errs = errs[len(errs)-10:]
	}
	if len(errs) == 0 {
		return Tail(out, 40)
	}
	return strings.Join(errs, "\n") + "\n[…]\n" + Tail(out, 40)
}

// Tail returns the last lines of s.
func Tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}
