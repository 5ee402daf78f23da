//go:build linux

package boot

import (
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/twinpbx/twinpbx/board"
)

// TestSetupNetworkNamespace raises a board's NICs for real, in a network
// namespace of its own: each NIC is up with its address, the default
// route goes via the gateway, a NIC the board names but the machine
// lacks is no error, and the namespace's arp_notify is on, so that
// raising a NIC announces its address.
func TestSetupNetworkNamespace(t *testing.T) {
	inOwnNetns(t)

	for _, name := range []string{"lan0", "xo0"} {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}
		if err := netlink.LinkAdd(veth); err != nil {
			t.Fatalf("adding %s: %v", name, err)
		}
		peer, err := netlink.LinkByName(name + "p")
		if err == nil {
			err = netlink.LinkSetUp(peer)
		}
		if err != nil {
			t.Fatalf("raising %sp: %v", name, err)
		}
	}
	prof := board.Profile{NICs: []board.NIC{
		{Name: "lan0", Role: board.RoleLAN},
		{Name: "xo0", Role: board.RoleCrossover},
		{Name: "gone0", Role: board.RoleSpare},
	}}
	p := Params{
		Addr:      netip.MustParsePrefix("10.0.2.15/24"),
		Gateway:   netip.MustParseAddr("10.0.2.2"),
		CrossAddr: netip.MustParsePrefix("169.254.77.1/30"),
	}
	// An announcement left for later would run on another thread,
	// outside this namespace: recorded, and tested on its own below.
	defer func(f func(*slog.Logger, string, netip.Addr)) { announceLater = f }(announceLater)
	announceLater = func(*slog.Logger, string, netip.Addr) {}
	if err := setupNetwork(slog.New(slog.DiscardHandler), prof, p); err != nil {
		t.Fatalf("setupNetwork: %v", err)
	}

	b, err := os.ReadFile("/proc/sys/net/ipv4/conf/all/arp_notify")
	if err != nil || strings.TrimSpace(string(b)) != "1" {
		t.Errorf("arp_notify %q (%v), want 1", b, err)
	}
	for _, want := range []struct {
		name string
		addr netip.Prefix
	}{{"lo", netip.Prefix{}}, {"lan0", p.Addr}, {"xo0", p.CrossAddr}} {
		link, err := netlink.LinkByName(want.name)
		if err != nil {
			t.Fatal(err)
		}
		if link.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("%s is not up: %v", want.name, link.Attrs().Flags)
		}
		if !want.addr.IsValid() {
			continue
		}
		addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range addrs {
			got = append(got, a.IPNet.String())
		}
		if !slices.Contains(got, want.addr.String()) {
			t.Errorf("%s holds %v, want %s", want.name, got, want.addr)
		}
	}
	lan, err := netlink.LinkByName("lan0")
	if err != nil {
		t.Fatal(err)
	}
	routes, err := netlink.RouteList(lan, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(routes, func(r netlink.Route) bool {
		return (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw.Equal(p.Gateway.AsSlice())
	}) {
		t.Errorf("no default route via %s on lan0: %v", p.Gateway, routes)
	}
}

// TestAnnounceOnCarrier: a NIC whose link stays down gives up at the
// deadline; once its link is up, its address is announced (a gratuitous
// ARP request and reply) and heard on the other end.
func TestAnnounceOnCarrier(t *testing.T) {
	inOwnNetns(t)

	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "lan0"}, PeerName: "lan0p"}); err != nil {
		t.Fatal(err)
	}
	lan, err := netlink.LinkByName("lan0")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lan); err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("10.0.2.15")
	if hasCarrier("lan0") {
		t.Fatal("lan0 has a link while its peer is down")
	}
	announceOnCarrier(slog.New(slog.DiscardHandler), "lan0", ip, 200*time.Millisecond) // gives up

	peer, err := netlink.LinkByName("lan0p")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(peer); err != nil {
		t.Fatal(err)
	}
	ifi, err := net.InterfaceByName("lan0p")
	if err != nil {
		t.Fatal(err)
	}
	c, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	announceOnCarrier(slog.New(slog.DiscardHandler), "lan0", ip, 10*time.Second)
	var ops []arp.Operation
	buf := make([]byte, 1500)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(ops) < 2 {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("the peer heard %v, then: %v", ops, err)
		}
		var f ethernet.Frame
		var p arp.Packet
		if f.UnmarshalBinary(buf[:n]) != nil || p.UnmarshalBinary(f.Payload) != nil || p.SenderIP != ip || p.TargetIP != ip {
			continue // the kernel's own ARP, say
		}
		ops = append(ops, p.Operation)
	}
	if !slices.Equal(ops, []arp.Operation{arp.OperationRequest, arp.OperationReply}) {
		t.Errorf("announcements %v, want a request and a reply", ops)
	}
}

// inOwnNetns moves the test's goroutine, on a thread of its own, into a
// new network namespace until the test ends. The thread is never
// unlocked, so the runtime ends it with the test's goroutine, whatever
// happens; the namespace goes with its last reference. It skips, loudly,
// where namespaces cannot be made.
func inOwnNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING the namespace test: it needs root to make a network namespace")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.New()
	if err != nil {
		orig.Close()
		t.Skipf("SKIPPING the namespace test: no network namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = netns.Set(orig)
		ns.Close()
		orig.Close()
	})
}
