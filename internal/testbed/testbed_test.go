package testbed

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	reach   = 5 * time.Second        // a working path answers well within this
	silence = 400 * time.Millisecond // a cut path stays unanswered this long
)

func mustReach(t *testing.T, b *Bed, from Node, to netip.Addr) {
	t.Helper()
	if err := b.PingWithin(from, to, reach); err != nil {
		t.Fatalf("%s should reach %s: %v", from, to, err)
	}
}

func mustNotReach(t *testing.T, b *Bed, from Node, to netip.Addr) {
	t.Helper()
	if err := b.PingWithin(from, to, silence); err == nil {
		t.Fatalf("%s reached %s through a cut link", from, to)
	}
}

func mustCarrier(t *testing.T, b *Bed, n Node, p Path, want bool) {
	t.Helper()
	got, err := b.Carrier(n, p)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("carrier of %s's %s = %v, want %v", n, p, got, want)
	}
}

func TestBedConnectivity(t *testing.T) {
	t.Parallel()
	b := New(t, Options{Phones: 2})
	for _, from := range b.Members() {
		for _, to := range b.Members() {
			if from != to {
				mustReach(t, b, from, b.Addr(to))
			}
		}
	}
	mustReach(t, b, A, b.CrossoverAddr(B))
	mustReach(t, b, B, b.CrossoverAddr(A))
	// The crossover is its own link: a phone cannot reach it.
	mustNotReach(t, b, Phone(0), b.CrossoverAddr(A))

	out, err := b.Exec(context.Background(), b.NS(A), "sysctl", "-n", "net.ipv4.ip_nonlocal_bind")
	if err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Errorf("ip_nonlocal_bind on A = %q, %v; want 1", out, err)
	}
}

func TestCuts(t *testing.T) {
	t.Parallel()
	b := New(t, Options{})
	ctx := context.Background()
	tests := []struct {
		name        string
		node        Node
		path        Path
		mode        CutMode
		from        Node
		to          netip.Addr
		carrierNode Node // whose carrier to check
		carrier     bool // during the cut
	}{
		{"silent LAN", A, LAN, Silent, Phone(0), b.Addr(A), A, true},
		{"silent LAN, from the node", B, LAN, Silent, B, b.Addr(Gateway), B, true},
		{"carrier LAN", A, LAN, Carrier, Phone(0), b.Addr(A), A, false},
		{"silent crossover", A, Crossover, Silent, B, b.CrossoverAddr(A), B, true},
		{"carrier crossover", A, Crossover, Carrier, B, b.CrossoverAddr(A), B, false},
		{"gateway LAN", Gateway, LAN, Carrier, A, b.Addr(Gateway), Gateway, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustReach(t, b, tt.from, tt.to)
			if err := b.CutLink(ctx, tt.node, tt.path, tt.mode); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.HealAll(ctx) })
			mustNotReach(t, b, tt.from, tt.to)
			mustCarrier(t, b, tt.carrierNode, tt.path, tt.carrier)
			if tt.path == LAN && tt.node != Gateway {
				// The rest of the LAN carries on.
				mustReach(t, b, Phone(0), b.Addr(tt.node.Twin()))
			}
			if err := b.Heal(ctx, tt.node, tt.path); err != nil {
				t.Fatal(err)
			}
			mustCarrier(t, b, tt.carrierNode, tt.path, true)
			mustReach(t, b, tt.from, tt.to)
		})
	}
}

func TestPowerOff(t *testing.T) {
	t.Parallel()
	b := New(t, Options{})
	ctx := context.Background()
	p, err := b.Start(A, "sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.PowerOff(ctx, A); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(reach):
		t.Fatal("the node's process survived the power-off")
	}
	mustNotReach(t, b, Phone(0), b.Addr(A))
	mustCarrier(t, b, B, Crossover, false)
	if err := b.PowerOn(ctx, A); err != nil {
		t.Fatal(err)
	}
	mustReach(t, b, Phone(0), b.Addr(A))
	mustReach(t, b, B, b.CrossoverAddr(A))
}

func TestCloseRemovesEverything(t *testing.T) {
	t.Parallel()
	if reason := Unavailable(); reason != "" {
		t.Skipf("SKIPPING network namespace test: %s", reason)
	}
	b, err := Build(context.Background(), Options{})
	if err != nil {
		if b != nil {
			_ = b.Close()
		}
		t.Fatal(err)
	}
	p, err := b.Start(B, "sleep", "600")
	if err != nil {
		_ = b.Close()
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	default:
		t.Error("a process of the bed survived Close")
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), b.Prefix+"-") {
		t.Errorf("namespaces of %s left after Close:\n%s", b.Prefix, out)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		ok   bool
	}{
		{"defaults", Options{}, true},
		{"given subnets", Options{LAN: netip.MustParsePrefix("10.77.0.0/24"), Crossover: netip.MustParsePrefix("10.78.0.0/30")}, true},
		{"LAN too small", Options{LAN: netip.MustParsePrefix("10.77.0.0/25")}, false},
		{"IPv6 LAN", Options{LAN: netip.MustParsePrefix("fd00::/64")}, false},
		{"overlap", Options{LAN: netip.MustParsePrefix("10.77.0.0/24"), Crossover: netip.MustParsePrefix("10.77.0.4/30")}, false},
		{"bad prefix", Options{Prefix: "a-b"}, false},
		{"too many phones", Options{Phones: 101}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			err := o.fill()
			if (err == nil) != tt.ok {
				t.Fatalf("fill() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil {
				return
			}
			if !netip.MustParsePrefix("10.64.0.0/10").Contains(o.LAN.Addr()) && tt.opts.LAN == (netip.Prefix{}) {
				t.Errorf("random LAN %s outside 10.64.0.0/10", o.LAN)
			}
			if o.LAN.Overlaps(o.Crossover) {
				t.Errorf("LAN %s overlaps crossover %s", o.LAN, o.Crossover)
			}
		})
	}
}

func TestAddresses(t *testing.T) {
	b := &Bed{Prefix: "tpx", Phones: 2, LAN: netip.MustParsePrefix("10.77.0.0/24"),
		Crossover: netip.MustParsePrefix("10.78.0.0/30"), LAN6: netip.MustParsePrefix("fd00:1::/64")}
	tests := []struct {
		got, want string
	}{
		{b.Addr(Gateway).String(), "10.77.0.1"},
		{b.Addr(A).String(), "10.77.0.11"},
		{b.Addr(B).String(), "10.77.0.12"},
		{b.Addr(Phone(0)).String(), "10.77.0.101"},
		{b.Addr(Phone(1)).String(), "10.77.0.102"},
		{b.Addr(Phone(2)).String(), "invalid IP"},
		{b.VIP().String(), "10.77.0.10/24"},
		{b.CrossoverAddr(A).String(), "10.78.0.1"},
		{b.CrossoverAddr(B).String(), "10.78.0.2"},
		{b.Addr6(Phone(0)).String(), "fd00:1::101"},
		{b.VIP6().String(), "fd00:1::10/64"},
		{b.NS(Phone(1)), "tpx-p2"},
	}
	for i, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%d: got %s, want %s", i, tt.got, tt.want)
		}
	}
}

func TestSignalFreezesANode(t *testing.T) {
	t.Parallel()
	b := New(t, Options{})
	p, err := b.Start(A, "sh", "-c", "while :; do echo x; sleep 0.01; done")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "output", func() bool { return p.Output() != "" })
	if err := b.Signal(A, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The group is frozen once none of its members runs or sleeps
	// interruptibly: a shell stopped in the middle of starting sleep waits
	// in D for its stopped vfork child, not in T.
	waitFor(t, "the process group to stop", func() bool { return groupFrozen(p.Pid()) })
	n := len(p.Output())
	time.Sleep(100 * time.Millisecond) // ten turns of the loop, were it running
	if m := len(p.Output()); m != n {
		t.Fatalf("the stopped group wrote %d more bytes", m-n)
	}
	if err := b.Signal(A, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	n = len(p.Output())
	waitFor(t, "more output after SIGCONT", func() bool { return len(p.Output()) > n })
}

// groupFrozen reports whether process group pgid has members and none
// of them is running (R) or in an interruptible sleep (S).
func groupFrozen(pgid int) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	members := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		// After the command: state, ppid, pgrp.
		f := strings.Fields(s[i+1:])
		if len(f) < 3 || f[2] != strconv.Itoa(pgid) {
			continue
		}
		members++
		if st := procState(pid); st == "R" || st == "S" {
			return false
		}
	}
	return members > 0
}

// procState is the state letter of a process in /proc.
func procState(pid int) string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+3 > len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

func TestLeftoversOfDeadBedsAreRemoved(t *testing.T) {
	if reason := Unavailable(); reason != "" {
		t.Skipf("SKIPPING network namespace test: %s", reason)
	}
	// A bed whose builder died, and one whose builder (we) lives.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, pid := range []int{dead.Process.Pid, os.Getpid()} {
		o := Options{}
		if err := o.fill(); err != nil {
			t.Fatal(err)
		}
		ns := o.Prefix + "-a"
		names = append(names, ns)
		if err := run(context.Background(), "ip", "netns", "add", ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = exec.Command("ip", "netns", "del", ns).Run()
			_ = os.Remove(pidFile(o.Prefix))
		})
		if err := os.MkdirAll(pidDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(pidFile(o.Prefix), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	New(t, Options{})
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), names[0]) {
		t.Errorf("the dead bed's namespace %s is still there", names[0])
	}
	if !strings.Contains(string(out), names[1]) {
		t.Errorf("the live bed's namespace %s was removed", names[1])
	}
}
