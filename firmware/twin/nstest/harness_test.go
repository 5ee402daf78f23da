package nstest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/testbed"
)

var (
	binary   string
	buildErr error
)

func TestMain(m *testing.M) {
	os.Exit(testbed.MainWithTwinpbx(m, "twin pair", &binary, &buildErr))
}

// Extensions of the pair's config.
var (
	alice = config.Extension{Number: "100", Name: "Alice", Secret: "alice-secret-1"}
	bob   = config.Extension{Number: "101", Name: "Bob", Secret: "bob-secret-22"}
)

const pairingKey = "nstest-pairing-key-0123456789"

// box is one twin of a pair under test.
type box struct {
	node    testbed.Node
	dir     string // data folder
	cfgPath string
	proc    *testbed.Process
}

// pair is a twin pair running in a test bed.
type pair struct {
	t     *testing.T
	bed   *testbed.Bed
	boxes map[testbed.Node]*box
	board string // profile file shared by both boxes (one relay)
	relay string // the shared relay state file
}

// newPair builds a bed, writes both boxes' configs and starts them.
func newPair(t *testing.T, phones int) *pair {
	t.Helper()
	p := idlePair(t, phones, nil)
	for _, n := range []testbed.Node{testbed.A, testbed.B} {
		p.start(n)
	}
	return p
}

// config is box n's config: the same extensions and pairing key for both,
// the addresses swapped.
func (p *pair) config(n testbed.Node) *config.Config {
	return p.bed.TwinConfig(n, pairingKey, alice, bob)
}

// start starts box n's twinpbx.
func (p *pair) start(n testbed.Node) {
	p.t.Helper()
	b := p.boxes[n]
	proc, err := p.bed.Start(n, binary, "run", "--config", b.cfgPath, "--data", b.dir, "--board", p.board, "--log-level", "debug")
	if err != nil {
		p.t.Fatalf("starting box %s: %v", n, err)
	}
	b.proc = proc
}

// status is the part of `twinpbx status` the tests read.
type status struct {
	Role          string `json:"role"`
	Node          string `json:"node"`
	Registrations []struct {
		AOR string `json:"aor"`
	} `json:"registrations"`
	Cluster struct {
		Term   uint64
		Alarms []struct{ Text string }
		Paths  []struct {
			Path string
			Up   bool
		}
		Replication struct {
			InSync bool `json:"in_sync"`
			Seq    uint64
		} `json:"replication"`
		Serving bool `json:"serving"`
	} `json:"cluster"`
}

// status asks box n's running twinpbx.
func (p *pair) status(n testbed.Node) (status, error) {
	out, err := exec.Command(binary, "status", "--data", p.boxes[n].dir).Output()
	if err != nil {
		return status{}, err
	}
	var s status
	if err := json.Unmarshal(out, &s); err != nil {
		return status{}, fmt.Errorf("reading the status of %s: %w\n%s", n, err, out)
	}
	return s, nil
}

// waitFor polls cond every 50 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, why := cond()
		if ok {
			return
		}
		last = why
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v (last: %s)", what, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitRoles waits until box active is ACTIVE and serving, and standby is
// STANDBY and in sync.
func (p *pair) waitRoles(active, standby testbed.Node, timeout time.Duration) {
	p.t.Helper()
	waitFor(p.t, timeout, fmt.Sprintf("%s active and %s standby", active, standby), func() (bool, string) {
		sa, err := p.status(active)
		if err != nil {
			return false, fmt.Sprintf("%s: %v", active, err)
		}
		ss, err := p.status(standby)
		if err != nil {
			return false, fmt.Sprintf("%s: %v", standby, err)
		}
		ok := sa.Role == "active" && sa.Cluster.Serving && ss.Role == "standby" && ss.Cluster.Replication.InSync
		return ok, fmt.Sprintf("%s %s serving=%v, %s %s in_sync=%v", active, sa.Role, sa.Cluster.Serving, standby, ss.Role, ss.Cluster.Replication.InSync)
	})
}

// waitActive waits until one box is active and returns it.
func (p *pair) waitSettled(timeout time.Duration) (active, standby testbed.Node) {
	p.t.Helper()
	waitFor(p.t, timeout, "one box active, the other standby", func() (bool, string) {
		var roles []string
		for _, n := range []testbed.Node{testbed.A, testbed.B} {
			s, err := p.status(n)
			if err != nil {
				return false, err.Error()
			}
			roles = append(roles, s.Role)
			if s.Role == "active" && s.Cluster.Serving {
				active = n
			}
		}
		if active == "" {
			return false, strings.Join(roles, ",")
		}
		s, err := p.status(active.Twin())
		if err != nil || s.Role != "standby" || !s.Cluster.Replication.InSync {
			return false, strings.Join(roles, ",")
		}
		return true, ""
	})
	return active, active.Twin()
}

// exec runs the binary with args and returns its output.
func (p *pair) exec(args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// probe starts the phone probe on the VIP.
func (p *pair) probe() *testbed.Probe {
	p.t.Helper()
	pr := p.bed.NewProbe(testbed.ProbeConfig{})
	if err := pr.Start(context.Background()); err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { pr.Stop() })
	return pr
}

// worker returns the pid of box n's worker: the child `twinpbx run` (the
// supervisor) started to do the work.
func (p *pair) worker(n testbed.Node) (int, error) {
	parent := p.boxes[n].proc.Pid()
	pid, err := testbed.ChildPID(parent)
	if err != nil {
		return 0, fmt.Errorf("box %s (supervisor %d) has no worker now: %w", n, parent, err)
	}
	return pid, nil
}

// waitWorker waits for box n's worker other than not (0: any).
func (p *pair) waitWorker(n testbed.Node, not int, timeout time.Duration) int {
	p.t.Helper()
	var pid int
	waitFor(p.t, timeout, fmt.Sprintf("a worker on %s other than %d", n, not), func() (bool, string) {
		var err error
		pid, err = p.worker(n)
		if err != nil {
			return false, err.Error()
		}
		return pid != not, fmt.Sprint("worker ", pid)
	})
	return pid
}

// signalBox sends sig to box n's supervisor and its worker (each runs in
// its own process group): SIGSTOP hangs the whole box's software.
func (p *pair) signalBox(n testbed.Node, sig syscall.Signal) error {
	pid, werr := p.worker(n)
	err := p.boxes[n].proc.Signal(sig)
	if werr == nil {
		err = errors.Join(err, syscall.Kill(-pid, sig))
	}
	return err
}

// hasVIP reports whether box n's LAN interface holds the VIP.
func (p *pair) hasVIP(n testbed.Node) (bool, error) {
	out, err := p.bed.Exec(context.Background(), p.bed.NS(n), "ip", "-o", "addr", "show", "dev", testbed.LANInterface)
	if err != nil {
		return false, err
	}
	return strings.Contains(string(out), " "+p.bed.VIP().Addr().String()+"/"), nil
}

// dropHeartbeats drops the pair's UDP heartbeats arriving on box n's LAN
// interface, and nothing else (the replication link is TCP on the same
// port). The rule goes with the namespace.
func (p *pair) dropHeartbeats(n testbed.Node) {
	p.t.Helper()
	port := fmt.Sprint(config.DefaultClusterPort)
	table := "tpbeats"
	ns := p.bed.NS(n)
	for _, cmd := range [][]string{
		{"nft", "add", "table", "netdev", table},
		{"nft", "add chain netdev " + table + ` in { type filter hook ingress device "` + testbed.LANInterface + `" priority -500; policy accept; }`},
		{"nft", "add", "rule", "netdev", table, "in", "meta", "protocol", "ip", "ip", "protocol", "udp", "udp", "dport", port, "drop"},
	} {
		if out, err := p.bed.Exec(context.Background(), ns, cmd...); err != nil {
			p.t.Fatalf("dropping heartbeats on %s: %v: %s", n, err, out)
		}
	}
}

// waitInSync waits until the standby says it is in sync with the active.
func (p *pair) waitInSync(standby testbed.Node, timeout time.Duration) {
	p.t.Helper()
	waitFor(p.t, timeout, "the standby in sync", func() (bool, string) {
		s, err := p.status(standby)
		return err == nil && s.Cluster.Replication.InSync, fmt.Sprint(err)
	})
}

// waitTakeover waits until box n is active and serving.
func (p *pair) waitTakeover(n testbed.Node, timeout time.Duration) {
	p.t.Helper()
	waitFor(p.t, timeout, "the standby takes over", func() (bool, string) {
		s, err := p.status(n)
		return err == nil && s.Role == "active" && s.Cluster.Serving, fmt.Sprint(s.Role, err)
	})
}

// killActive kills the active box's process (SIGKILL) and waits until
// the standby serves.
func (p *pair) killActive(active, standby testbed.Node, timeout time.Duration) {
	p.t.Helper()
	if err := p.boxes[active].proc.Signal(syscall.SIGKILL); err != nil {
		p.t.Fatal(err)
	}
	p.waitTakeover(standby, timeout)
}

// withTCP adds a TCP listener on the VIP beside the config's UDP one.
func withTCP(_ testbed.Node, c *config.Config) {
	c.SIP.Listen = append(c.SIP.Listen, strings.Replace(c.SIP.Listen[0], "udp:", "tcp:", 1))
}

// sippInE2E runs sipp on a phone from the e2e tests' folder, where the
// scenarios that stream audio find their pcap files; args follow sipp's
// own, after the phone's address and ports. It is killed when the test
// ends.
func (p *pair) sippInE2E(phone testbed.Node, scenario string, args ...string) *testbed.Process {
	p.t.Helper()
	e2e, err := filepath.Abs(filepath.Join(testbed.SippScenarios, "..", ".."))
	if err != nil {
		p.t.Fatal(err)
	}
	addr := p.bed.Addr(phone).String()
	full := append([]string{"env", "-C", e2e, "sipp", "-sf", filepath.Join("testdata", "sipp", scenario),
		"-i", addr, "-mi", addr, "-p", strconv.Itoa(testbed.SipPhonePort), "-mp", "6000",
		"-m", "1", "-nostdin", "-timeout_error"}, args...)
	proc, err := p.bed.Start(phone, full...)
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() {
		select {
		case <-proc.Done():
		default:
			proc.Kill()
		}
	})
	return proc
}
