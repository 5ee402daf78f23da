package vip

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/twinpbx/twinpbx/internal/testbed"
	"github.com/twinpbx/twinpbx/internal/waitfor"

	"github.com/twinpbx/twinpbx/internal/announce"
)

const lan = testbed.LANInterface

// in runs fn in a node's namespace and fails the test on error.
func in(t testing.TB, b *testbed.Bed, n testbed.Node, fn func() error) {
	t.Helper()
	if err := b.InNS(b.NS(n), fn); err != nil {
		t.Fatalf("on %s: %v", n, err)
	}
}

func newVIP(t testing.TB, cfg Config) *VIP {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mac(t testing.TB, b *testbed.Bed, n testbed.Node) net.HardwareAddr {
	t.Helper()
	m, err := b.MAC(context.Background(), n, testbed.LAN)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// neighbour is the phone's neighbour table entry for ip (nil if none).
func neighbour(t testing.TB, b *testbed.Bed, phone testbed.Node, ip netip.Addr) net.HardwareAddr {
	t.Helper()
	var got net.HardwareAddr
	in(t, b, phone, func() error {
		link, err := netlink.LinkByName(lan)
		if err != nil {
			return err
		}
		family := netlink.FAMILY_V4
		if ip.Is6() {
			family = netlink.FAMILY_V6
		}
		neighs, err := netlink.NeighList(link.Attrs().Index, family)
		if err != nil {
			return err
		}
		for _, n := range neighs {
			if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == ip && n.State&(unix.NUD_INCOMPLETE|unix.NUD_FAILED) == 0 {
				got = n.HardwareAddr
			}
		}
		return nil
	})
	return got
}

// txPackets counts what a node's LAN interface has sent.
func txPackets(t testing.TB, b *testbed.Bed, n testbed.Node) uint64 {
	t.Helper()
	var tx uint64
	in(t, b, n, func() error {
		link, err := netlink.LinkByName(lan)
		if err != nil {
			return err
		}
		tx = link.Attrs().Statistics.TxPackets
		return nil
	})
	return tx
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitfor.Cond(t, 5*time.Second, what, cond)
}

func held(t testing.TB, b *testbed.Bed, n testbed.Node, v *VIP) bool {
	t.Helper()
	var h bool
	in(t, b, n, func() (err error) { h, err = v.Held(); return err })
	return h
}

// failover acquires the VIP on A, lets the phone learn it, releases it on
// A and acquires it on B: the phone's neighbour entry must flip to B's
// MAC from the announcement alone, without the phone sending anything.
func failover(t *testing.T, b *testbed.Bed, vipAddr netip.Prefix) {
	ctx := t.Context()
	cfg := Config{Interface: lan, Addr: vipAddr, GARPRefresh: -1}
	va, vb := newVIP(t, cfg), newVIP(t, cfg)
	phone := testbed.Phone(0)

	in(t, b, testbed.A, func() error { return va.Acquire(ctx) })
	if !held(t, b, testbed.A, va) {
		t.Fatal("A does not hold the VIP after Acquire")
	}
	if err := b.PingWithin(phone, vipAddr.Addr(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	macA, macB := mac(t, b, testbed.A), mac(t, b, testbed.B)
	if got := neighbour(t, b, phone, vipAddr.Addr()); !bytes.Equal(got, macA) {
		t.Fatalf("phone's entry for the VIP = %v, want A's %v", got, macA)
	}

	in(t, b, testbed.A, va.Release)
	if held(t, b, testbed.A, va) {
		t.Fatal("A still holds the VIP after Release")
	}
	before := txPackets(t, b, phone)
	in(t, b, testbed.B, func() error { return vb.Acquire(ctx) })
	waitFor(t, "the phone's entry to flip to B", func() bool {
		return bytes.Equal(neighbour(t, b, phone, vipAddr.Addr()), macB)
	})
	if after := txPackets(t, b, phone); after != before {
		t.Errorf("the phone sent %d packets while the VIP moved; the flip should come from the announcement alone", after-before)
	}
	in(t, b, testbed.B, vb.Release)
}

func TestFailoverIPv4(t *testing.T) {
	t.Parallel()
	b := testbed.New(t, testbed.Options{})
	failover(t, b, b.VIP())
}

func TestFailoverIPv6(t *testing.T) {
	t.Parallel()
	b := testbed.New(t, testbed.Options{IPv6: true})
	failover(t, b, b.VIP6())
}

func TestLabelAndRelease(t *testing.T) {
	t.Parallel()
	b := testbed.New(t, testbed.Options{})
	ctx := t.Context()
	tests := []struct {
		label, want string
	}{
		{"", "lan0:vip"},
		{"lan0:twin", "lan0:twin"},
	}
	for _, tt := range tests {
		v := newVIP(t, Config{Interface: lan, Addr: b.VIP(), Label: tt.label, GARPRefresh: -1})
		in(t, b, testbed.A, func() error { return v.Acquire(ctx) })
		var labels []string
		in(t, b, testbed.A, func() error {
			addrs, _, err := find(lan, b.VIP().Addr())
			for _, a := range addrs {
				labels = append(labels, a.Label)
			}
			return err
		})
		if len(labels) != 1 || labels[0] != tt.want {
			t.Errorf("label %q: the VIP has labels %q, want [%s]", tt.label, labels, tt.want)
		}
		// Acquiring again is harmless; releasing twice too.
		in(t, b, testbed.A, func() error { return v.Acquire(ctx) })
		in(t, b, testbed.A, v.Release)
		in(t, b, testbed.A, v.Release)
		if held(t, b, testbed.A, v) {
			t.Errorf("label %q: still held after Release", tt.label)
		}
		// The node's own address is untouched.
		if err := b.PingWithin(testbed.Phone(0), b.Addr(testbed.A), 5*time.Second); err != nil {
			t.Error(err)
		}
	}
}

func TestRemoveStale(t *testing.T) {
	t.Parallel()
	b := testbed.New(t, testbed.Options{})
	ctx := t.Context()
	// A previous life left the VIP with another label and prefix length.
	if _, err := b.Exec(ctx, b.NS(testbed.B), "ip", "addr", "add", b.VIP().Addr().String()+"/32", "dev", lan, "label", "lan0:old"); err != nil {
		t.Fatal(err)
	}
	var removed bool
	in(t, b, testbed.B, func() (err error) { removed, err = RemoveStale(lan, b.VIP()); return err })
	if !removed {
		t.Error("RemoveStale did not report the stale VIP")
	}
	v := newVIP(t, Config{Interface: lan, Addr: b.VIP()})
	if held(t, b, testbed.B, v) {
		t.Fatal("the stale VIP is still there")
	}
	in(t, b, testbed.B, func() (err error) { removed, err = RemoveStale(lan, b.VIP()); return err })
	if removed {
		t.Error("RemoveStale reported a VIP that was not there")
	}
	var err error
	_ = b.InNS(b.NS(testbed.B), func() error { _, err = RemoveStale("nosuch0", b.VIP()); return nil })
	if err == nil {
		t.Error("RemoveStale on a missing interface gave no error")
	}
}

func TestConflict(t *testing.T) {
	t.Parallel()
	b := testbed.New(t, testbed.Options{IPv6: true})
	for _, addr := range []netip.Prefix{b.VIP(), b.VIP6()} {
		t.Run(addr.String(), func(t *testing.T) {
			ctx := t.Context()
			v := newVIP(t, Config{Interface: lan, Addr: addr, GARPRefresh: -1})
			conflict := func() (net.HardwareAddr, bool) {
				var m net.HardwareAddr
				var found bool
				in(t, b, testbed.B, func() (err error) { m, found, err = v.Conflict(ctx); return err })
				return m, found
			}
			if m, found := conflict(); found {
				t.Fatalf("conflict with %v while nobody holds the VIP", m)
			}
			// A hung twin: its kernel still holds the VIP and answers.
			if _, err := b.Exec(ctx, b.NS(testbed.A), "ip", "addr", "add", addr.String(), "dev", lan, "nodad"); err != nil {
				t.Fatal(err)
			}
			in(t, b, testbed.B, func() error { return v.Acquire(ctx) })
			t.Cleanup(func() { _ = b.InNS(b.NS(testbed.B), v.Release) })
			m, found := conflict()
			if want := mac(t, b, testbed.A); !found || !bytes.Equal(m, want) {
				t.Errorf("Conflict = %v, %v; want A's MAC %v", m, found, want)
			}
			// Once the twin lets go, the conflict is gone.
			if _, err := b.Exec(ctx, b.NS(testbed.A), "ip", "addr", "del", addr.String(), "dev", lan); err != nil {
				t.Fatal(err)
			}
			if m, found := conflict(); found {
				t.Errorf("conflict with %v after the twin dropped the VIP", m)
			}
		})
	}
}

// TestRefresh counts the announcements a phone sees: the burst, the
// refreshes, and none after Release.
func TestRefresh(t *testing.T) {
	t.Parallel()
	b := testbed.New(t, testbed.Options{})
	ctx := t.Context()
	var frames atomic.Int64
	var conn *packet.Conn
	in(t, b, testbed.Phone(0), func() error {
		ifi, err := net.InterfaceByName(lan)
		if err != nil {
			return err
		}
		conn, err = packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), nil)
		return err
	})
	macB := mac(t, b, testbed.B)
	done := make(chan struct{})
	t.Cleanup(func() { conn.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 1514)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if m, ok := claims(buf[:n], b.VIP().Addr(), nil); ok && bytes.Equal(m, macB) {
				frames.Add(1)
			}
		}
	}()

	v := newVIP(t, Config{Interface: lan, Addr: b.VIP(), GARPCount: 2, GARPInterval: 20 * time.Millisecond, GARPRefresh: time.Hour})
	in(t, b, testbed.B, func() error { return v.Acquire(ctx) })
	waitFor(t, "the burst (2 requests, 2 replies)", func() bool { return frames.Load() >= 4 })
	waitFor(t, "two refreshes", func() bool { return frames.Load() >= 8 })
	in(t, b, testbed.B, v.Release)
	// Frames sent just before Release may still be on their way to the
	// phone's reader; after them, five refresh intervals must pass
	// without one. A refresher still running never lets the count rest.
	last, since := frames.Load(), time.Now()
	deadline := time.Now().Add(10 * time.Second)
	for time.Since(since) < 100*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("announcements went on after Release (%d seen)", frames.Load())
		}
		time.Sleep(5 * time.Millisecond)
		if got := frames.Load(); got != last {
			last, since = got, time.Now()
		}
	}
}

func TestNew(t *testing.T) {
	v4 := netip.MustParsePrefix("192.168.1.10/24")
	tests := []struct {
		name      string
		cfg       Config
		wantLabel string
		wantErr   bool
	}{
		{"defaults", Config{Interface: "eth0", Addr: v4}, "eth0:vip", false},
		{"long interface", Config{Interface: "enp0s31f6x", Addr: v4}, "enp0s31f6x:vip", false},
		{"longer interface", Config{Interface: "enp0s31f6xyz", Addr: v4}, "enp0s31f6xyz:v", false},
		{"longest interface", Config{Interface: "enp0s31f6xyzabc", Addr: v4}, "enp0s31f6xyzabc", false},
		{"own label", Config{Interface: "eth0", Addr: v4, Label: "eth0:twin"}, "eth0:twin", false},
		{"IPv6 has no label", Config{Interface: "eth0", Addr: netip.MustParsePrefix("fd00::10/64"), Label: "x"}, "", false},
		{"label too long", Config{Interface: "eth0", Addr: v4, Label: "eth0:0123456789ab"}, "", true},
		{"label of another interface", Config{Interface: "eth0", Addr: v4, Label: "eth1:vip"}, "", true},
		{"no interface", Config{Addr: v4}, "", true},
		{"no address", Config{Interface: "eth0"}, "", true},
		{"multicast", Config{Interface: "eth0", Addr: netip.MustParsePrefix("224.0.0.1/32")}, "", true},
		{"negative count", Config{Interface: "eth0", Addr: v4, GARPCount: -1}, "", true},
		{"negative interval", Config{Interface: "eth0", Addr: v4, GARPInterval: -time.Second}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := New(tt.cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("New = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			c := v.Config()
			if c.Label != tt.wantLabel || c.GARPCount != DefaultGARPCount || c.GARPInterval != DefaultGARPInterval || c.GARPRefresh != DefaultGARPRefresh {
				t.Errorf("config = %+v, want label %q and the GARP defaults", c, tt.wantLabel)
			}
		})
	}
}

func TestAcquireMissingInterface(t *testing.T) {
	if testbed.Unavailable() != "" {
		t.Skip("SKIPPING: needs a namespace:", testbed.Unavailable())
	}
	b := testbed.New(t, testbed.Options{})
	v := newVIP(t, Config{Interface: "nosuch0", Addr: b.VIP()})
	var err error
	_ = b.InNS(b.NS(testbed.A), func() error { err = v.Acquire(t.Context()); return nil })
	if err == nil || errors.Is(err, ErrAnnounce) {
		t.Errorf("Acquire on a missing interface = %v, want a plain error", err)
	}
}

// TestFrames: our own announcements are what the conflict detector
// takes as a claim of the address (from another box: not from us).
func TestFrames(t *testing.T) {
	m := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	ip := netip.MustParseAddr("10.0.0.10")
	frames, err := announce.GARPFrames(m, ip)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 2 {
		t.Fatalf("%d frames, want a request and a reply", len(frames))
	}
	for i, f := range frames {
		if got, ok := claims(f, ip, nil); !ok || !bytes.Equal(got, m) {
			t.Errorf("frame %d claims %v %v, want %v", i, got, ok, m)
		}
		if _, ok := claims(f, ip, m); ok {
			t.Errorf("frame %d counted as a conflict with ourselves", i)
		}
		if _, ok := claims(f, netip.MustParseAddr("10.0.0.11"), nil); ok {
			t.Errorf("frame %d claims another address", i)
		}
	}
}

func TestNDPMessages(t *testing.T) {
	m := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	ip := netip.MustParseAddr("fd00::12:3456")
	if got := solicitedNode(ip).String(); got != "ff02::1:ff12:3456" {
		t.Errorf("solicited-node address %s, want ff02::1:ff12:3456", got)
	}
	ns, err := nsMessage(m, ip)
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 32 || ns[0] != 135 || !bytes.Equal(ns[24:], []byte{1, 1, 2, 0, 0, 0, 0, 1}) {
		t.Errorf("neighbour solicitation % x", ns)
	}
	na, err := announce.NAMessage(m, ip)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		msg  []byte
		ip   netip.Addr
		ours net.HardwareAddr
		ok   bool
	}{
		{"another box", na, ip, nil, true},
		{"ourselves", na, ip, m, false},
		{"another address", na, netip.MustParseAddr("fd00::1"), nil, false},
		{"a solicitation", ns, ip, nil, false},
		{"no option", na[:24], ip, nil, false},
		{"zero-length option", append(append([]byte(nil), na[:24]...), 2, 0, 0, 0, 0, 0, 0, 0), ip, nil, false},
		{"short", na[:10], ip, nil, false},
	}
	for _, tt := range tests {
		got, ok := naClaims(tt.msg, tt.ip, tt.ours)
		if ok != tt.ok || (ok && !bytes.Equal(got, m)) {
			t.Errorf("%s: naClaims = %v %v, want ok=%v", tt.name, got, ok, tt.ok)
		}
	}
}

func FuzzNAClaims(f *testing.F) {
	ip := netip.MustParseAddr("fd00::10")
	na, _ := announce.NAMessage(net.HardwareAddr{2, 0, 0, 0, 0, 1}, ip)
	f.Add(na)
	f.Add([]byte{136, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, ok := naClaims(data, ip, net.HardwareAddr{2, 0, 0, 0, 0, 1})
		if ok && len(m) != 6 {
			t.Errorf("naClaims returned %v", m)
		}
	})
}

func FuzzClaims(f *testing.F) {
	frames, _ := announce.GARPFrames(net.HardwareAddr{2, 0, 0, 0, 0, 1}, netip.MustParseAddr("10.0.0.10"))
	for _, fr := range frames {
		f.Add(fr)
	}
	f.Add([]byte{})
	f.Add(make([]byte, 60))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, ok := claims(data, netip.MustParseAddr("10.0.0.10"), net.HardwareAddr{2, 0, 0, 0, 0, 1})
		if ok && (len(m) == 0 || bytes.Equal(m, net.HardwareAddr{2, 0, 0, 0, 0, 1})) {
			t.Errorf("claims returned %v", m)
		}
	})
}

// BenchmarkAcquire measures Acquire (address added, first burst sent)
// followed by Release, in a namespace.
func BenchmarkAcquire(b *testing.B) {
	bed := testbed.New(b, testbed.Options{})
	v := newVIP(b, Config{Interface: lan, Addr: bed.VIP(), GARPRefresh: -1})
	ctx := context.Background()
	err := bed.InNS(bed.NS(testbed.A), func() error {
		for b.Loop() {
			if err := v.Acquire(ctx); err != nil {
				return err
			}
			b.StopTimer()
			if err := v.Release(); err != nil {
				return err
			}
			b.StartTimer()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// countingAnnouncer counts announcements, for the refresh's own life.
type countingAnnouncer struct{ n atomic.Int64 }

func (a *countingAnnouncer) Announce() error { a.n.Add(1); return nil }
func (a *countingAnnouncer) Close() error    { return nil }

// TestReleaseEndsRefresh: once Release returns, the refresh has ended and
// announces nothing more (TestRefresh sees the same on the wire, where
// frames already sent may still arrive after Release).
func TestReleaseEndsRefresh(t *testing.T) {
	v, err := New(Config{Interface: "lo", Addr: netip.MustParsePrefix("192.0.2.77/32"),
		GARPInterval: time.Millisecond, GARPRefresh: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	an := &countingAnnouncer{}
	v.startRefresh(t.Context(), an)
	waitFor(t, "refreshes", func() bool { return an.n.Load() >= 3 })
	if err := v.Release(); err != nil {
		t.Fatal(err)
	}
	n := an.n.Load()
	time.Sleep(50 * time.Millisecond) // fifty refresh intervals
	if got := an.n.Load(); got != n {
		t.Errorf("%d announcements after Release returned", got-n)
	}
}
