//go:build linux

package boot

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestApplyStaticNamespace applies a static LAN setting for real, with
// netlink, to a veth in a network namespace of its own that already holds
// another address (as the kernel command line gives one): afterwards the
// wizard's address is the only one and the default route goes via its
// gateway.
func TestApplyStaticNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING the namespace test: it needs root to make a network namespace")
	}
	ipCmd, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("SKIPPING the namespace test: no `ip` command (iproute2)")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := "tp" + hex.EncodeToString(b)
	ip := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(ipCmd, append([]string{"-n", ns}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip -n %s %s: %v\n%s", ns, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out, err := exec.Command(ipCmd, "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(ipCmd, "netns", "del", ns).Run() })
	ip("link", "add", "lan0", "type", "veth", "peer", "name", "peer0")
	ip("link", "set", "peer0", "up")
	ip("addr", "add", "10.0.2.15/24", "dev", "lan0")

	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()

	plan := NetPlan{Set: true, Addr: netip.MustParsePrefix("192.168.7.21/24"), Gateway: netip.MustParseAddr("192.168.7.1")}
	for i := range 2 { // applying twice changes nothing more
		if err := applyStatic(nl, "lan0", plan); err != nil {
			t.Fatalf("apply %d: %v", i+1, err)
		}
	}
	addrs := ip("-4", "-o", "addr", "show", "dev", "lan0")
	if !strings.Contains(addrs, "inet 192.168.7.21/24") || strings.Contains(addrs, "10.0.2.15") || strings.Count(addrs, "inet ") != 1 {
		t.Errorf("addresses of lan0:\n%s", addrs)
	}
	if route := ip("-4", "route", "show", "default"); !strings.Contains(route, "default via 192.168.7.1 dev lan0") {
		t.Errorf("default route: %q", route)
	}
	if link := ip("link", "show", "lan0"); !strings.Contains(link, ",UP") {
		t.Errorf("lan0 not up: %s", link)
	}
}
